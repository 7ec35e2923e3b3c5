"""Instructions per GetCertificates call under callgrind: gnoicertd against the grpcio ceiling.

Rates on a shared 2-core machine move by tens of percent with the other processes' load; the
number of instructions a server executes per call does not. Each server runs under
`valgrind --tool=callgrind` on 127.0.0.1; after a warm-up the counters are zeroed, certload
drives GetCertificates (8 callers, one connection, mutual TLS with password metadata) for
SECONDS, and the dump's total is divided by the calls certload counted. gnoicertd is set up
as in bench/peers.py (bundle, then gnoi-server installed) with the key pool off, so no
background key generation is counted, and its user's password hash at the lowest scrypt cost,
so the once-a-minute re-check is not either. Slow: each server starts under valgrind.

Run from the repository root: .venv/bin/python bench/instructions.py [--seconds 15] [--base REV]
--base REV also measures gnoicertd from that revision (its src/ from `git archive`; it must
know grpc.key_pool_depth).
Needs valgrind and the peer programs (../shared/peers or GNOICERT_PEERS); skips without them.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gnoicert.daemon.auth import hash_password
from tests.interop.peers import LOOPBACK, PEERS, free_port, peer, port_open
from tests.support.cli import LOCAL_SERVER, SERVER_ID
from tests.support.pki import TestCA, cert_pem, key_pem, rsa_key
from tests.support.target import PASSWORDS, password_hash, write_config

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
CALLGRIND = ["valgrind", "--tool=callgrind", "--dump-instr=no", "--collect-jumps=no"]


def wait(condition: Callable[[], object], what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)


def run(argv: list[str], timeout: float = 600) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout + done.stderr


def certload(address: str, files: Path, seconds: float) -> int:
    """Calls certload completed (it fails the bench on any error)."""
    out = run(
        [peer("certload"), "-addr", address, "-ca", str(files / "ca.pem"),
         "-cert", str(files / "client.pem"), "-key", str(files / "client.key"),
         "-user", "admin", "-pass", PASSWORDS["admin"], "-c", "8", "-conns", "1",
         "-d", f"{seconds}s"]
    )  # fmt: skip
    match = re.search(r"ok (\d+) errors (\d+)", out)
    if match is None or int(match.group(2)):
        raise SystemExit(f"certload: {out}")
    return int(match.group(1))


def bootstrap(address: str, directory: Path, files: Path) -> None:
    """Load the bundle with gnoic (the listener turns to mutual TLS), then install gnoi-server."""
    factory = directory / "state" / "factory" / "certificate.pem"
    gnoic = [peer("gnoic"), "-a", address, "-u", "admin", "-p", PASSWORDS["admin"],
             "--tls-ca", str(factory), "--timeout", "120s"]  # fmt: skip
    ca = ["--ca-cert", str(files / "ca.pem"), "--ca-key", str(files / "ca.key")]
    run([*gnoic, *ca, "cert", "load-ca", "--ca-certs", str(files / "ca.pem")])
    audit = directory / "audit.jsonl"
    wait(lambda: "mode_switch" in audit.read_text(), "the mode switch")
    client = ["--tls-cert", str(files / "client.pem"), "--tls-key", str(files / "client.key")]
    run([*gnoic, *client, *ca, "cert", "install", "--id", SERVER_ID,
         "--common-name", "localhost", "--ip-address", "127.0.0.1"])  # fmt: skip


def measure(
    argv: list[str],
    env: dict[str, str],
    address: Callable[[], str],
    setup: Callable[[str], None],
    files: Path,
    out: Path,
    seconds: float,
) -> float:
    """Instructions per call of the server started by argv, under callgrind."""
    server = subprocess.Popen(
        [*CALLGRIND, f"--callgrind-out-file={out}.%p", *argv], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        target = address()
        setup(target)
        certload(target, files, 3)  # warm-up: first handshake, caches, scrypt
        run(["callgrind_control", "-z", str(server.pid)])
        calls = certload(target, files, seconds)
        run(["callgrind_control", "-d", str(server.pid)])
        wait(lambda: glob.glob(f"{out}.*.1"), "the callgrind dump")
        time.sleep(1)  # the dump is written by the server; let it finish
        dump = glob.glob(f"{out}.*.1")[0]
        text = Path(dump).read_text(errors="replace")
        match = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
        if match is None:
            raise SystemExit(f"no total in {dump}")
        return int(match.group(1)) / calls
    finally:
        server.terminate()
        server.wait(timeout=300)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="certload run measured")
    parser.add_argument("--base", help="also measure gnoicertd from this git revision")
    args = parser.parse_args()
    absent = [name for name in ("gnoic", "certload") if not (PEERS / name).is_file()]
    if absent or shutil.which("valgrind") is None:
        what = f"the peer programs {', '.join(absent)}" if absent else "valgrind"
        print(f"skipped: {what} not found (peers: {PEERS.resolve()})")
        return 0
    with tempfile.TemporaryDirectory(prefix="gnoicert-instructions-") as temporary:
        root = Path(temporary)
        files = root / "files"
        files.mkdir()
        ca = TestCA(name="instructions bench root", key=rsa_key())
        chain, client_key = ca.client_credentials()
        (files / "ca.pem").write_bytes(ca.bundle_pem)
        (files / "ca.key").write_bytes(key_pem(ca.key))
        (files / "client.pem").write_bytes(chain)
        (files / "client.key").write_bytes(client_key)
        server_key = rsa_key()
        issued = ca.issue(server_key.public_key(), cn="localhost")
        (files / "server.pem").write_bytes(cert_pem(issued))
        (files / "server.key").write_bytes(key_pem(server_key, pkcs1=True))

        targets: dict[str, str | None] = {"gnoicertd": None}
        if args.base:
            tree = root / "base"
            tree.mkdir()
            archive = subprocess.run(["git", "-C", str(REPO), "archive", args.base, "src"],
                                     capture_output=True, check=True)  # fmt: skip
            subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
            targets[f"gnoicertd {args.base}"] = str(tree / "src")
        results: dict[str, float] = {}
        port = free_port()

        def ceiling_address() -> str:
            wait(lambda: port_open(port), "the ceiling servicer")
            return f"{LOOPBACK}:{port}"

        results["grpcio ceiling"] = measure(
            [sys.executable, str(BENCH / "peers_ceiling.py"), f"{LOOPBACK}:{port}", str(files)],
            dict(os.environ), ceiling_address, lambda _address: None,
            files, root / "ceiling", args.seconds,
        )  # fmt: skip
        for index, (name, pythonpath) in enumerate(targets.items()):
            directory = root / f"daemon{index}"
            directory.mkdir()
            config = write_config(directory, grpc_lines=[LOCAL_SERVER, "key_pool_depth = 0"])
            # A verified password is trusted for a minute, then scrypt runs again: about 150
            # million instructions at the default cost, which would swamp the per-call figure
            # whenever the minute ends inside the measured run. Natively that is about 0.1 %
            # of a loaded minute, so the bench's user has the cheapest scrypt cost instead.
            config.write_text(
                config.read_text().replace(
                    password_hash("admin"), hash_password(PASSWORDS["admin"], cost=2)
                )
            )
            ready = directory / "ready"
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            if pythonpath is not None:
                env["PYTHONPATH"] = pythonpath

            def address(ready: Path = ready) -> str:
                wait(lambda: ready.is_file() and ready.read_text().strip(), "the ready file")
                return ready.read_text().split()[0]

            def setup(target: str, directory: Path = directory) -> None:
                bootstrap(target, directory, files)

            results[name] = measure(
                [sys.executable, "-m", "gnoicert.daemon.main", "serve", "--config", str(config),
                 "--ready-file", str(ready)],
                env, address, setup, files, root / f"daemon{index}", args.seconds,
            )  # fmt: skip
    ceiling = results["grpcio ceiling"]
    print("GetCertificates, certload 8 callers on one connection, under callgrind")
    for name, per_call in results.items():
        print(f"  {name:24} {per_call / 1000:8.1f} k instructions/call  "
              f"ceiling/this {ceiling / per_call:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
