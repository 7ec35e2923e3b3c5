"""How long a 20,000-certificate CA bundle takes to load, to verify an Install against, and to
take effect for new mutual-TLS connections.

Run from the repository root: .venv/bin/python bench/bundle.py [--count N] [--skip-handshake]
Starts its own in-process gnoicertd on 127.0.0.1 (real TLS, temporary state directory) in its
working state (mutual TLS, the test CA as bundle), loads a bundle of the test CA plus N-1
generated CAs through LoadCertificateAuthorityBundle, installs a certificate signed by the last
CA of the bundle, then opens new connections until one gets through.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc

from gnoicert.proto import cert_pb2
from tests.support.bundle import make_bundle
from tests.support.gnoi import Launcher, Operator, certificate, ins, load
from tests.support.pki import TestCA, ec_key, key_pem

_HANDSHAKE_LIMIT_S = 300.0


async def first_new_connection(operator: Operator) -> tuple[float, int]:
    """Seconds until a brand-new connection completes a call, and the attempts it took."""
    started = time.perf_counter()
    attempts = 0
    while time.perf_counter() - started < _HANDSHAKE_LIMIT_S:
        attempts += 1
        channel = operator.new_channel()
        try:
            await operator.stub_on(channel).GetCertificates(
                cert_pb2.GetCertificatesRequest(), metadata=operator.metadata, timeout=30
            )
            return time.perf_counter() - started, attempts
        except grpc.aio.AioRpcError:
            continue
        finally:
            await channel.close()
    return float("inf"), attempts


async def run(count: int, *, handshake: bool) -> None:
    started = time.perf_counter()
    bundle = make_bundle(count - 1)
    print(f"generated {count - 1} CA certificates: {time.perf_counter() - started:.2f} s")
    ca = TestCA()
    with tempfile.TemporaryDirectory() as directory:
        launcher = Launcher(Path(directory), ca)
        try:
            operator = await launcher.provision()
            request = cert_pb2.LoadCertificateAuthorityBundleRequest(
                ca_certificates=[certificate(pem) for pem in (ca.bundle_pem, *bundle.pems)]
            )
            mib = request.ByteSize() / 2**20
            started = time.perf_counter()
            await operator.stub.LoadCertificateAuthorityBundle(request, metadata=operator.metadata)
            elapsed = time.perf_counter() - started
            print(f"LoadCertificateAuthorityBundle, {count} CAs ({mib:.1f} MiB): {elapsed:.2f} s")

            key = ec_key()
            signed = bundle.issue_under_last(key.public_key())
            started = time.perf_counter()
            call = operator.stub.Install(metadata=operator.metadata)
            await call.write(ins(load(signed, "bundle-leaf", private_key=key_pem(key))))
            await call.read()
            assert await call.code() == grpc.StatusCode.OK
            elapsed = time.perf_counter() - started
            print(f"Install verified against the last of {count} CAs: {elapsed:.3f} s")

            if handshake:
                elapsed, attempts = await first_new_connection(operator)
                print(
                    f"first new mutual-TLS connection after the load: {elapsed:.1f} s "
                    f"({attempts} attempt(s), 30 s client deadline each)"
                )
                elapsed, _ = await first_new_connection(operator)
                print(f"next new connection: {elapsed * 1000:.1f} ms")
        finally:
            await launcher.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="CAs in the bundle")
    parser.add_argument(
        "--skip-handshake", action="store_true", help="do not wait for a new connection"
    )
    args = parser.parse_args()
    asyncio.run(run(args.count, handshake=not args.skip_handshake))


if __name__ == "__main__":
    main()
