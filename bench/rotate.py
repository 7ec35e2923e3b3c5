"""End-to-end Rotate latency over loopback, and the GetCertificates rate with 100 certificates.

Run from the repository root: .venv/bin/python bench/rotate.py [--runs N]
Starts its own in-process gnoicertd on 127.0.0.1 (real TLS, mutual TLS with username/password
metadata, temporary state directory) and rotates the certificate the server presents, as a
client does: open the stream, [generate_csr, sign the CSR], load_certificate, [test the new
certificate on a new connection], finalize_rotation, read the OK status. The client's key pairs
and certificates for the client-key case are made before the clock starts.

Target-key rotations run on two daemons in turn: one with the key pool (its default depth; the
clock starts once the pool has refilled, as between an operator's rotations), and one with
`key_pool_depth = 0` (every key made on the spot); then a burst on the pooled daemon without
waiting, which drains the pool and shows the fallback.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc

from gnoicert.proto import cert_pb2
from tests.support.gnoi import FINALIZE, SERVER_ID, Launcher, Operator, gen, load, rot
from tests.support.pki import TestCA, cert_pem, ec_key, key_pem, rsa_key


async def rotate_target_key(operator: Operator, *, validate: bool) -> None:
    call = operator.stub.Rotate(metadata=operator.metadata)
    await call.write(rot(gen(SERVER_ID, bits=2048)))
    reply = await call.read()
    signed = operator.ca.sign_csr(reply.generated_csr.csr.csr)
    await call.write(rot(load(signed)))
    await call.read()
    if validate:
        channel = operator.new_channel()
        await operator.time(channel)
        await channel.close()
    await call.write(FINALIZE)
    assert await call.code() == grpc.StatusCode.OK


def client_key_rotation(operator: Operator, rsa: bool) -> Callable[[], Awaitable[None]]:
    key = rsa_key(2048) if rsa else ec_key()
    request = load(
        cert_pem(operator.ca.issue(key.public_key())), SERVER_ID, private_key=key_pem(key)
    )

    async def rotate() -> None:
        call = operator.stub.Rotate(metadata=operator.metadata)
        await call.write(rot(request))
        await call.read()
        await call.write(FINALIZE)
        assert await call.code() == grpc.StatusCode.OK

    return rotate


def report(label: str, seconds: list[float]) -> None:
    ms = sorted(s * 1000 for s in seconds)
    p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
    print(
        f"{label}: median {statistics.median(ms):.1f} ms "
        f"(min {ms[0]:.1f}, p90 {p90:.1f}, {len(ms)} runs)"
    )


async def timed(step: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await step()
    return time.perf_counter() - started


async def get_rate(operator: Operator, *, concurrency: int, seconds: float = 2.0) -> float:
    request = cert_pb2.GetCertificatesRequest()
    stub = operator.stub
    calls = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal calls
        while time.perf_counter() < deadline:
            reply = await stub.GetCertificates(request, metadata=operator.metadata)
            assert len(reply.certificate_info) == 100
            calls += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return calls / (time.perf_counter() - started)


async def run(runs: int) -> None:
    ca = TestCA()
    with tempfile.TemporaryDirectory() as directory:
        launcher = Launcher(Path(directory), ca)
        try:
            operator = await launcher.provision()
            unpooled = await launcher.provision("nopool", grpc_lines=["key_pool_depth = 0"])
            await rotate_target_key(operator, validate=False)  # warm-up
            await rotate_target_key(unpooled, validate=False)

            pool = operator.target.daemon.key_pool
            depth = dict(operator.target.daemon.config.grpc.key_pool_depths)[2048]
            pooled: list[float] = []
            on_the_spot: list[float] = []
            for _ in range(runs):
                while pool.ready(2048) < depth:
                    await asyncio.sleep(0.01)
                pooled.append(await timed(lambda: rotate_target_key(operator, validate=False)))
                on_the_spot.append(await timed(lambda: rotate_target_key(unpooled, validate=False)))
            hits = pool.hits
            report("Rotate, target-generated RSA-2048 key, pool ready", pooled)
            report("Rotate, target-generated RSA-2048 key, no pool", on_the_spot)
            burst = [
                await timed(lambda: rotate_target_key(operator, validate=False))
                for _ in range(runs)
            ]
            report(
                f"Rotate, back to back with the pool ({pool.hits - hits} of {runs} from the pool)",
                burst,
            )
            report(
                "Rotate, target-generated RSA-2048 key, with the test connection",
                [
                    await timed(lambda: rotate_target_key(operator, validate=True))
                    for _ in range(runs)
                ],
            )
            for rsa, label in ((True, "RSA-2048"), (False, "EC P-256")):
                steps = [client_key_rotation(operator, rsa) for _ in range(runs)]
                report(
                    f"Rotate, client-supplied {label} key",
                    [await timed(step) for step in steps],
                )

            for index in range(100 - len(await operator.listing())):
                key = ec_key()
                request = load(
                    cert_pem(ca.issue(key.public_key())),
                    f"cert-{index:03d}",
                    private_key=key_pem(key),
                )
                await operator.stub.LoadCertificate(request, metadata=operator.metadata)
            assert len(await operator.listing()) == 100
            for concurrency in (1, 8):
                rate = await get_rate(operator, concurrency=concurrency)
                print(
                    f"GetCertificates with 100 certificates, {concurrency} in flight: "
                    f"{rate:.0f} calls/s"
                )
        finally:
            await launcher.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    asyncio.run(run(parser.parse_args().runs))


if __name__ == "__main__":
    main()
