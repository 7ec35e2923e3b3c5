"""Issue 13's table in one run: gnoicertd against gnxi's gnoi_target, the grpcio stack ceiling
and the Python import floor, each figure printed with its reference, the ratio and the goal.

Run from the repository root: .venv/bin/python bench/peers.py [--runs N] [--skip-bundle]
Needs the peer programs (gnoic, gnoi_target, certload) in ../shared/peers (GNOICERT_PEERS names
another directory); without them it says so and exits 0. Everything listens on 127.0.0.1.
The large-bundle and `gnoicert get` rows come from bench/bundle.py and bench/cli.py, run as
subprocesses so their numbers are the same ones those benches print.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.interop.labs import factory_lab, write
from tests.interop.peers import LOOPBACK, PEERS, free_port, peer, start_gnxi_target
from tests.support.cli import SERVER_ID, Lab, wait_until
from tests.support.pki import TestCA, cert_pem, key_pem, rsa_key
from tests.support.target import PASSWORDS

BENCH = Path(__file__).resolve().parent
NEEDED = ("gnoic", "gnoi_target", "certload")
FLOOR = "import grpc; from cryptography import x509"
MEMORY_FLOOR = FLOOR + "; from cryptography.hazmat.primitives.asymmetric import rsa"
GNXI_ID = "gnxi-server"


def row(name: str, ours: float, reference: float, unit: str, goal: str, ref_name: str) -> None:
    ratio = ours / reference if reference else float("nan")
    print(
        f"| {name} | {ours:,.1f} {unit} | {ref_name} {reference:,.1f} {unit} | "
        f"{ratio:.2f} | {goal} |"
    )


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def floor_rss_mib() -> float:
    ready = "; import sys; sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.read()"
    code = MEMORY_FLOOR + ready
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    assert process.stdin is not None
    process.stdout.readline()
    try:
        return rss_mib(process.pid)
    finally:
        process.stdin.close()
        process.wait(timeout=10)


def median_walls(
    first: Callable[[], object], second: Callable[[], object], runs: int
) -> tuple[float, float]:
    """Median walls of two steps run in turn, so load drift on a shared machine hits both."""
    walls: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for step, out in ((first, walls[0]), (second, walls[1])):
            started = time.perf_counter()
            step()
            out.append(time.perf_counter() - started)
    return statistics.median(walls[0]), statistics.median(walls[1])


def checked(argv: list[str], *, cwd: Path | None = None, timeout: float = 120) -> str:
    done = subprocess.run(
        argv, capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout + done.stderr


def certload(address: str, files: Path, *extra: str) -> float:
    """calls/s from certload's one-line report."""
    out = checked(
        [peer("certload"), "-addr", address, "-ca", str(files / "ca.pem"),
         "-cert", str(files / "client.pem"), "-key", str(files / "client.key"),
         "-user", "admin", "-pass", PASSWORDS["admin"], "-d", "5s", *extra]
    )  # fmt: skip
    match = re.search(r"calls/s ([\d.]+) ok (\d+) errors (\d+)", out)
    if match is None or int(match.group(3)):
        raise SystemExit(f"certload: {out}")
    return float(match.group(1))


def gnoic(address: str, files: Path, *args: str, skip_verify: bool = False) -> str:
    # gnxi's CSRs carry no SAN, so after one rotation it serves a certificate without
    # 127.0.0.1: gnoic then needs --skip-verify (../shared/peers README).
    verify = ["--skip-verify"] if skip_verify else []
    return checked(
        [peer("gnoic"), "-a", address, "-u", "admin", "-p", PASSWORDS["admin"], *verify,
         "--tls-ca", str(files / "ca.pem"), "--tls-cert", str(files / "client.pem"),
         "--tls-key", str(files / "client.key"), "--ca-cert", str(files / "ca.pem"),
         "--ca-key", str(files / "ca.key"), "--timeout", "30s", "cert", *args]
    )  # fmt: skip


@contextmanager
def gnoicertd(directory: Path, files: Path) -> Iterator[Lab]:
    """gnoicertd bootstrapped with gnoic (bundle, then gnoi-server installed): mutual TLS."""
    with factory_lab(directory) as lab:
        argv = [peer("gnoic"), "-a", lab.address, "-u", "admin", "-p", PASSWORDS["admin"],
                "--tls-ca", str(lab.factory_pem), "--timeout", "30s"]  # fmt: skip
        ca = ["--ca-cert", str(files / "ca.pem"), "--ca-key", str(files / "ca.key")]
        checked([*argv, *ca, "cert", "load-ca", "--ca-certs", str(files / "ca.pem")])
        wait_until(lambda: bool(lab.audit(event="mode_switch")), what="the mode switch")
        client = ["--tls-cert", str(files / "client.pem"), "--tls-key", str(files / "client.key")]
        checked([*argv, *client, *ca, "cert", "install", "--id", SERVER_ID,
                 "--common-name", "localhost", "--ip-address", "127.0.0.1"])  # fmt: skip
        yield lab


def stack_ceiling(files: Path) -> float:
    """certload against a minimal grpcio asyncio servicer returning a prebuilt response."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(BENCH / "peers_ceiling.py"), f"{LOOPBACK}:{port}", str(files)]
    )
    try:
        wait_until(lambda: _open(port), timeout=30, what="the ceiling servicer")
        return certload(f"{LOOPBACK}:{port}", files, "-c", "8", "-conns", "1")
    finally:
        server.terminate()
        server.wait(timeout=10)


def _open(port: int) -> bool:
    import socket

    try:
        with socket.create_connection((LOOPBACK, port), timeout=1):
            return True
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="rotations per target")
    parser.add_argument("--skip-bundle", action="store_true", help="no 20,000-CA row")
    args = parser.parse_args()
    absent = [name for name in NEEDED if not (PEERS / name).is_file()]
    if absent:
        print(f"skipped: the peer programs {', '.join(absent)} are not in {PEERS.resolve()}")
        return 0
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="gnoicert-peers-") as temporary, ExitStack() as ours:
        root = Path(temporary)
        files = root / "files"
        files.mkdir()
        ca = TestCA(name="peers bench root", key=rsa_key())
        chain, client_key = ca.client_credentials()
        write(files / "ca.pem", ca.bundle_pem)
        write(files / "ca.key", key_pem(ca.key))
        write(files / "client.pem", chain)
        write(files / "client.key", client_key)
        server_key = rsa_key()
        write(files / "server.pem", cert_pem(ca.issue(server_key.public_key(), cn="localhost")))
        write(files / "server.key", key_pem(server_key, pkcs1=True))

        # gnoicertd starts first, so that its key pool has filled (at idle priority) by the time
        # it rotates, as on a device that has been up a while. Its rotations and gnxi's run in
        # turn (bench/daemon_costs.py also shows a pool drained, and none at all).
        lab = ours.enter_context(gnoicertd(root / "gnoicertd", files))
        gnxi = start_gnxi_target(
            root / "gnxi", "-ca", str(files / "ca.pem"), "-cert", str(files / "server.pem"),
            "-key", str(files / "server.key"), "-cert_id", GNXI_ID,
        )  # fmt: skip
        try:
            gnxi_idle = rss_mib(gnxi.process.pid)
            # Before the rotations: they leave gnxi serving a certificate without an IP SAN.
            gnxi_rate = certload(gnxi.address, files, "-c", "8", "-conns", "1")
            gnxi_newconn = certload(gnxi.address, files, "-c", "8", "-newconn")
            rotate = ("rotate", "--id", GNXI_ID, "--common-name", "localhost",
                      "--min-key-size", "2048")  # fmt: skip
            idle = rss_mib(lab.process.process.pid)
            gnxi_rotate, ours_rotate = median_walls(
                lambda: gnoic(gnxi.address, files, *rotate, skip_verify=True),
                lambda: gnoic(lab.address, files, "rotate", "--id", SERVER_ID,
                              "--common-name", "localhost", "--ip-address", "127.0.0.1",
                              "--min-key-size", "2048"),
                args.runs,
            )  # fmt: skip
            gnxi_after = rss_mib(gnxi.process.pid)
        finally:
            gnxi.stop()
        ceiling = stack_ceiling(files)

        with ours:  # stopped after its rows (and on any error before them)
            pid = lab.process.process.pid
            ours_rate = certload(lab.address, files, "-c", "8", "-conns", "1")
            ours_newconn = certload(lab.address, files, "-c", "8", "-newconn")
            after = rss_mib(pid)
        floor = floor_rss_mib()

    print(f"load average after the peer rows: {os.getloadavg()}")
    print("| Figure | gnoicertd | reference | ratio | goal |")
    print("|---|---|---|---|---|")
    row("gnoic rotate --min-key-size 2048, wall median", ours_rotate * 1000,
        gnxi_rotate * 1000, "ms", "<= 1.0", "gnxi")  # fmt: skip
    row("GetCertificates, 8 callers, one connection", ours_rate, ceiling, "calls/s",
        ">= 0.9 of stack", "grpcio stack")  # fmt: skip
    print(f"|   (gnxi for the same) | | gnxi {gnxi_rate:,.0f} calls/s | "
          f"{ours_rate / gnxi_rate:.2f} | - |")  # fmt: skip
    row("GetCertificates, new TLS connection per call", ours_newconn, gnxi_newconn, "calls/s",
        ">= 1.0", "gnxi")  # fmt: skip
    row("Resident memory after the runs", after, floor, "MiB", "<= 1.25 of floor",
        "import floor")  # fmt: skip
    print(
        f"|   (idle {idle:.0f} MiB; gnxi idle/after {gnxi_idle:.0f}/{gnxi_after:.0f} MiB) | | | | |"
    )
    sys.stdout.flush()
    subprocess.run([sys.executable, str(BENCH / "cli.py"), "-n", "15"], check=True)
    if not args.skip_bundle:
        subprocess.run([sys.executable, str(BENCH / "bundle.py")], check=True)
    print(f"load average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
