"""The daemon's per-call costs against a base revision, the grpcio ceiling and gnxi, in one run.

Run from the repository root: .venv/bin/python bench/daemon_costs.py [--base REV] [--rounds N]
[--rotations N] [--no-reads] (--no-reads: the Rotate and memory rows only)

Targets, all on 127.0.0.1, each its own process:
  this      gnoicertd from this tree (key pool on, its default depth)
  nopool    the same with grpc.key_pool_depth = 0 (Rotate rows only)
  base      gnoicertd from REV (default: the merge base with main), from `git archive`
  ceiling   a minimal grpcio asyncio servicer returning a prebuilt GetCertificates answer
  gnxi      gnxi gnoi_target (from ../shared/peers)
The gnoicertd targets serve their factory certificate (server-only TLS, password metadata).
Rows, interleaved round by round so load drift hits every target alike:
  GetCertificates calls/s with certload, 8 callers on one connection (one certificate listed);
  `gnoic cert rotate --min-key-size 2048` wall median (a fresh key per CSR on gnoicertd), one
  rotation per target in turn, then "b2b": a run of them back to back on one target (the key
  pool drains when the run outlasts it);
  resident memory of each gnoicertd idle and after the runs, against the import floor.
Skips (exit 0, with the reason) when ../shared/peers is absent.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.interop.peers import PEERS, free_port, missing_peers, peer
from tests.support.pki import TestCA, cert_pem, key_pem, rsa_key
from tests.support.target import PASSWORDS, TargetProcess, spawn_target, write_config

REPO = Path(__file__).resolve().parents[1]
FLOOR = (
    "import grpc; from cryptography import x509; "
    "from cryptography.hazmat.primitives.asymmetric import rsa; import sys; "
    "print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]); sys.stdout.flush()"
)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def certload(
    port: int, ca: Path, seconds: float, *, user: str | None, client: Path | None
) -> float:
    argv = [peer("certload"), "-addr", f"127.0.0.1:{port}", "-ca", str(ca), "-c", "8"]
    argv += ["-conns", "1", "-d", f"{seconds}s"]
    if user is not None:
        argv += ["-user", user, "-pass", PASSWORDS[user]]
    if client:
        argv += ["-cert", str(client / "client.pem"), "-key", str(client / "client.key")]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"certload failed against port {port}: {out.stdout}{out.stderr}")
    fields = out.stdout.split()
    errors = int(fields[fields.index("errors") + 1])
    if errors:
        raise RuntimeError(f"certload errors against port {port}: {out.stdout}")
    return float(fields[fields.index("calls/s") + 1])


def gnoic(port: int, files: Path, *args: str, mutual: bool, tls_ca: Path) -> None:
    argv = [peer("gnoic"), "-a", f"127.0.0.1:{port}", "-u", "admin", "-p", PASSWORDS["admin"]]
    argv += ["--tls-ca", str(tls_ca), "--timeout", "30s"]
    if mutual:
        argv += ["--tls-cert", str(files / "client.pem"), "--tls-key", str(files / "client.key")]
    if tls_ca == files / "ca.pem":
        argv += ["--skip-verify"]  # gnxi serves what gnoic signed, without an IP SAN
    argv += ["--ca-cert", str(files / "ca.pem"), "--ca-key", str(files / "ca.key"), "cert", *args]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if run.returncode != 0 or "rpc error" in run.stdout + run.stderr:
        raise RuntimeError(f"gnoic {' '.join(args)} failed:\n{run.stdout}{run.stderr}")


def timed_rotate(port: int, files: Path, cert_id: str, *, mutual: bool, tls_ca: Path) -> float:
    started = time.perf_counter()
    rotate = ("rotate", "--id", cert_id, "--common-name", cert_id, "--min-key-size", "2048")
    gnoic(port, files, *rotate, "--ip-address", "127.0.0.1", mutual=mutual, tls_ca=tls_ca)
    return time.perf_counter() - started


CEILING = """
import asyncio, sys
import grpc
from gnoicert.proto import cert_pb2, cert_pb2_grpc
cert, key, port_file, listed = sys.argv[1:5]
answer = cert_pb2.GetCertificatesResponse(certificate_info=[cert_pb2.CertificateInfo(
    certificate_id="srv", certificate=cert_pb2.Certificate(type=cert_pb2.CT_X509,
    certificate=open(listed, "rb").read()), modification_time=1)])
class Servicer(cert_pb2_grpc.CertificateManagementServicer):
    async def GetCertificates(self, request, context):
        return answer
async def main():
    server = grpc.aio.server()
    cert_pb2_grpc.add_CertificateManagementServicer_to_server(Servicer(), server)
    creds = grpc.ssl_server_credentials([(open(key, "rb").read(), open(cert, "rb").read())])
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    open(port_file, "w").write(str(port))
    await server.wait_for_termination()
asyncio.run(main())
"""


@contextmanager
def process(
    argv: list[str], *, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        yield child
    finally:
        child.terminate()
        child.wait(timeout=20)


def fail() -> None:
    raise RuntimeError("not yet")


def retried(step: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            step()
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.05)


def bootstrap(daemon: TargetProcess, port: int, files: Path, factory: Path) -> None:
    """Load the CA bundle (the listener turns to mutual TLS), then install `bench`."""
    gnoic(port, files, "load-ca", "--ca-certs", str(files / "ca.pem"), mutual=False, tls_ca=factory)
    retried(lambda: None if "mode_switch" in daemon.audit_path.read_text() else fail())
    install = ("install", "--id", "bench", "--common-name", "bench", "--min-key-size", "2048")
    retried(lambda: gnoic(port, files, *install, mutual=True, tls_ca=factory))


def start_gnoicertd(directory: Path, *, pythonpath: str | None, pool: bool) -> TargetProcess:
    directory.mkdir(parents=True)
    lines = [] if pool else ["key_pool_depth = 0"]
    config = write_config(directory, grpc_lines=lines)
    saved = os.environ.get("PYTHONPATH")
    if pythonpath is not None:
        os.environ["PYTHONPATH"] = pythonpath
    try:
        return spawn_target(config, timeout=60)
    finally:
        if pythonpath is not None:
            if saved is None:
                del os.environ["PYTHONPATH"]
            else:
                os.environ["PYTHONPATH"] = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--base", default=None, help="git revision to compare with (default: merge base with main)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="per certload run")
    parser.add_argument("--rotations", type=int, default=5, help="per target and round")
    parser.add_argument("--no-reads", action="store_true", help="skip the GetCertificates rows")
    args = parser.parse_args()
    if (reason := missing_peers()) is not None or not (PEERS / "certload").is_file():
        print(f"skipped: {reason or 'certload is not in ' + str(PEERS)}")
        return
    if args.base is None:
        args.base = subprocess.run(
            ["git", "-C", str(REPO), "merge-base", "HEAD", "main"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    print(f"base {args.base}; load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as temp:
        run(Path(temp), args)
    print(f"load average at end: {os.getloadavg()}")


def run(root: Path, args: argparse.Namespace) -> None:
    base_tree = root / "base"
    base_tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", args.base, "src"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(base_tree)], input=archive.stdout, check=True)

    files = root / "files"
    files.mkdir()
    ca = TestCA(name="bench root", key=rsa_key())
    (files / "ca.pem").write_bytes(ca.bundle_pem)
    (files / "ca.key").write_bytes(key_pem(ca.key))
    chain, client_key = ca.client_credentials()
    (files / "client.pem").write_bytes(chain)
    (files / "client.key").write_bytes(client_key)
    server_key = rsa_key()
    (files / "server.pem").write_bytes(cert_pem(ca.issue(server_key.public_key())))
    (files / "server.key").write_bytes(key_pem(server_key, pkcs1=True))

    floor = subprocess.run([sys.executable, "-c", FLOOR], capture_output=True, text=True)
    floor_kib = int(floor.stdout.split()[0])

    daemons = {
        "this": start_gnoicertd(root / "this", pythonpath=None, pool=True),
        "nopool": start_gnoicertd(root / "nopool", pythonpath=None, pool=False),
        "base": start_gnoicertd(root / "base-d", pythonpath=str(base_tree / "src"), pool=True),
    }
    # base does not know key_pool_depth; its config has none (pool=True writes no line).
    rates: dict[str, list[float]] = {name: [] for name in ("this", "base", "ceiling", "gnxi")}
    rotations: dict[str, list[float]] = {
        name: [] for name in ("this", "nopool", "base", "gnxi", "this b2b", "base b2b")
    }
    idle = {name: rss_kib(d.process.pid) for name, d in daemons.items()}
    gnxi_port = free_port()
    ceiling_port = root / "ceiling.port"
    gnxi_argv = [peer("gnoi_target"), "-bind_address", f"127.0.0.1:{gnxi_port}"]
    gnxi_argv += ["-ca", str(files / "ca.pem"), "-cert", str(files / "server.pem")]
    gnxi_argv += ["-key", str(files / "server.key"), "-cert_id", "gnxi"]
    gnxi_reader_port = free_port()
    gnxi_reader_argv = [*gnxi_argv[:2], f"127.0.0.1:{gnxi_reader_port}", *gnxi_argv[3:]]
    ceiling_argv = [sys.executable, "-c", CEILING, str(files / "server.pem")]
    ceiling_argv += [str(files / "server.key"), str(ceiling_port), str(files / "server.pem")]
    try:
        # Two gnxi targets: the one gnoic rotates serves a certificate without an IP SAN
        # afterwards (gnxi's CSR carries none), which certload would refuse.
        with (
            process(gnxi_argv) as gnxi,
            process(gnxi_reader_argv) as gnxi_reader,
            process(ceiling_argv) as ceiling,
        ):
            wait_for(ceiling_port)
            factory = {
                name: d.directory / "state" / "factory" / "certificate.pem"
                for name, d in daemons.items()
            }
            ports = {name: int(d.address.rsplit(":", 1)[1]) for name, d in daemons.items()}
            for name, daemon in daemons.items():
                bootstrap(daemon, ports[name], files, factory[name])
            retried(  # gnxi may still be binding
                lambda: timed_rotate(gnxi_port, files, "gnxi", mutual=True, tls_ca=files / "ca.pem")
            )
            for round_no in range(args.rounds):
                for _ in range(args.rotations):
                    for name in ("this", "nopool", "base"):
                        rotations[name].append(
                            timed_rotate(
                                ports[name], files, "bench", mutual=True, tls_ca=factory[name]
                            )
                        )
                    rotations["gnxi"].append(
                        timed_rotate(gnxi_port, files, "gnxi", mutual=True, tls_ca=files / "ca.pem")
                    )
                # Back to back, as bench/peers.py rotates: more than the pool holds.
                for name in ("this", "base"):
                    rotations[f"{name} b2b"] += [
                        timed_rotate(ports[name], files, "bench", mutual=True, tls_ca=factory[name])
                        for _ in range(args.rotations)
                    ]
                if args.no_reads:
                    print(f"round {round_no + 1} done, load average {os.getloadavg()[0]:.1f}")
                    continue
                for name in ("this", "base"):
                    rates[name].append(
                        certload(
                            ports[name], factory[name], args.seconds, user="reader", client=files
                        )
                    )
                rates["ceiling"].append(
                    certload(
                        int(ceiling_port.read_text()),
                        files / "ca.pem",
                        args.seconds,
                        user=None,
                        client=None,
                    )
                )
                rates["gnxi"].append(
                    certload(
                        gnxi_reader_port, files / "ca.pem", args.seconds, user=None, client=files
                    )
                )
                print(f"round {round_no + 1} done, load average {os.getloadavg()[0]:.1f}")
            after = {name: rss_kib(d.process.pid) for name, d in daemons.items()}
            gnxi_rss = max(rss_kib(gnxi.pid), rss_kib(gnxi_reader.pid))
            ceiling_rss = rss_kib(ceiling.pid)
    finally:
        for d in daemons.values():
            d.terminate()

    if not args.no_reads:
        print_rates(rates)
    print_rotations(rotations)
    print_memory(daemons, idle, after, floor_kib, gnxi_rss, ceiling_rss)


def print_rates(rates: dict[str, list[float]]) -> None:
    print("\nGetCertificates, certload 8 callers on one connection (median calls/s)")
    ceiling_rate = statistics.median(rates["ceiling"])
    for name, values in rates.items():
        median = statistics.median(values)
        runs = [round(v) for v in values]
        print(f"  {name:8} {median:8.0f}/s  {median / ceiling_rate:5.2f} of ceiling  {runs}")


def print_rotations(rotations: dict[str, list[float]]) -> None:
    print("\ngnoic cert rotate --min-key-size 2048, wall (ms)")
    gnxi_ms = statistics.median(rotations["gnxi"]) * 1000
    for name, values in rotations.items():
        ms = sorted(v * 1000 for v in values)
        med = statistics.median(ms)
        print(
            f"  {name:8} median {med:6.1f}  min {ms[0]:6.1f}  "
            f"{med / gnxi_ms:4.2f} of gnxi  ({len(ms)} runs)"
        )


def print_memory(
    daemons: dict[str, TargetProcess],
    idle: dict[str, int],
    after: dict[str, int],
    floor_kib: int,
    gnxi_rss: int,
    ceiling_rss: int,
) -> None:
    print(f"\nResident memory (MiB): import floor {floor_kib / 1024:.1f}")
    for name in daemons:
        print(
            f"  {name:8} idle {idle[name] / 1024:5.1f}  after {after[name] / 1024:5.1f}  "
            f"{after[name] / floor_kib:4.2f} of floor"
        )
    print(
        f"  gnxi     after {gnxi_rss / 1024:5.1f}; ceiling servicer after {ceiling_rss / 1024:5.1f}"
    )


if __name__ == "__main__":
    main()
