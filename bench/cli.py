"""What an operator waits for: `gnoicert rotate`, `time` and `get` end to end over loopback.

Starts gnoicertd (a subprocess, 127.0.0.1, temporary state directory), brings it to its usual
working state with the gnoicert command itself (a local CA, `gnoi-server` installed from a
target-generated CSR with the first CA bundle, served through local_certificate, mutual TLS),
then runs the installed console script N times per command and prints the median wall time
from process start to exit: interpreter start, imports, TLS, the RPCs and, for rotate, the
target's RSA-2048 key generation, the signing and the validation step before Finalize. `get`
is compared with the import floor (python -c FLOOR, interleaved), goal <= 1.3 (issue 13).

Bytecode: every process here (gnoicert and the floor alike) reads compiled bytecode from a cache
in the temporary directory, as an installed package does (pip compiles a wheel's modules at
install). Without it, an editable checkout under PYTHONDONTWRITEBYTECODE=1 compiles gnoicert's
own modules from source on every run while the floor's libraries load theirs from bytecode; that
run is printed too ("(no bytecode)"), so both figures are on record.

Run: .venv/bin/python bench/cli.py [-n 10] [--baseline SRC]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from gnoicert.daemon.auth import hash_password

USER, PASSWORD = "bench", "bench-password"
PASSWORD_ENV = "GNOICERT_BENCH_PASSWORD"
SERVER_ID = "gnoi-server"
GNOICERT = Path(sys.executable).with_name("gnoicert")
GNOICERTD = Path(sys.executable).with_name("gnoicertd")
FLOOR = "import grpc; from cryptography import x509"


def write_config(directory: Path) -> Path:
    path = directory / "gnoicertd.toml"
    path.write_text(
        f'state_dir = "{directory / "state"}"\n'
        f'audit_log = "{directory / "audit.jsonl"}"\n'
        "[grpc]\n"
        'listen = "127.0.0.1:0"\n'
        f'local_certificate = "{SERVER_ID}"\n'
        "[[users]]\n"
        f'name = "{USER}"\n'
        f'password_hash = "{hash_password(PASSWORD)}"\n'
        'role = "admin"\n'
    )
    return path


def start_daemon(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    ready = directory / "ready"
    log = (directory / "gnoicertd.log").open("ab")
    process = subprocess.Popen(
        [
            str(GNOICERTD),
            "serve",
            "--config",
            str(write_config(directory)),
            "--ready-file",
            str(ready),
        ],
        stdout=log,
        stderr=log,
    )
    log.close()
    deadline = time.monotonic() + 30
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"gnoicertd did not start; see {directory / 'gnoicertd.log'}")
        time.sleep(0.01)
    return process, ready.read_text().strip()


def environment(*, bytecode_cache: Path | None) -> dict[str, str]:
    """The environment of a measured process: bytecode from `bytecode_cache` (written on first
    use), or compiled from source every time when it is None."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPYCACHEPREFIX",)}
    env[PASSWORD_ENV] = PASSWORD
    if bytecode_cache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(bytecode_cache)
    return env


ENV: dict[str, str] = environment(bytecode_cache=None)  # main() points it at its cache


def gnoicert(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GNOICERT), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=ENV if env is None else env,
        timeout=120,
        check=False,
    )


def must(completed: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    if completed.returncode != 0:
        raise SystemExit(
            f"{' '.join(map(str, completed.args))} exited {completed.returncode}:\n"
            f"{completed.stderr}"
        )
    return completed


def bootstrap(workdir: Path, address: str) -> list[str]:
    """The working state, made with the CLI; returns the mutual-TLS connection options."""
    credentials = ["-u", USER, "--password-env", PASSWORD_ENV]
    factory = workdir / "state" / "factory" / "certificate.pem"
    must(gnoicert("ca", "init", "ca", "--intermediate", "--key-type", "ecdsa", cwd=workdir))
    must(
        gnoicert(
            "ca", "issue", "ca", "operator", "--out-cert", "operator.pem",
            "--out-key", "operator.key", cwd=workdir,
        )
    )  # fmt: skip
    must(
        gnoicert(
            "install", SERVER_ID, "--ca-dir", "ca", "--cn", "localhost", "--ip", "127.0.0.1",
            "--ca-bundle", "ca/bundle.pem", "--target", address, "--ca-file", str(factory),
            *credentials, cwd=workdir,
        )
    )  # fmt: skip
    mutual = [
        "--target", address, "--ca-file", "ca/ca.pem", "--cert", "operator.pem",
        "--key", "operator.key", *credentials,
    ]  # fmt: skip
    deadline = time.monotonic() + 15
    while gnoicert("time", *mutual, cwd=workdir).returncode != 0:
        if time.monotonic() > deadline:
            raise SystemExit("the daemon did not switch to mutual TLS")
    return mutual


def timed(
    argv: Sequence[str], workdir: Path, runs: int, env: dict[str, str] | None = None
) -> tuple[list[float], list[str]]:
    walls, outputs = [], []
    for _ in range(runs):
        started = time.perf_counter()
        completed = must(gnoicert(*argv, cwd=workdir, env=env))
        walls.append(time.perf_counter() - started)
        outputs.append(completed.stdout)
    return walls, outputs


def summary(name: str, walls: list[float]) -> str:
    return (
        f"{name:<18} median {statistics.median(walls) * 1000:7.1f} ms   "
        f"min {min(walls) * 1000:7.1f} ms   max {max(walls) * 1000:7.1f} ms   (n={len(walls)})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=10, help="runs per command")
    parser.add_argument(
        "--baseline",
        metavar="SRC",
        type=Path,
        help="another version's src directory (e.g. `git archive main` unpacked): its `get` is "
        "timed too, interleaved with this one's, against the same daemon (PYTHONPATH=SRC)",
    )
    args = parser.parse_args(argv)
    global ENV
    with tempfile.TemporaryDirectory(prefix="gnoicert-bench-") as temporary:
        workdir = Path(temporary)
        ENV = environment(bytecode_cache=workdir / "pycache")
        uncached = environment(bytecode_cache=None)
        baseline = {**ENV, "PYTHONPATH": str(args.baseline.resolve())} if args.baseline else None
        subprocess.run([sys.executable, "-c", FLOOR], check=True, env=ENV)  # fills the cache
        process, address = start_daemon(workdir)
        try:
            mutual = bootstrap(workdir, address)
            rotate = [
                "rotate", SERVER_ID, "--ca-dir", "ca", "--cn", "localhost",
                "--ip", "127.0.0.1", *mutual, "--json",
            ]  # fmt: skip
            rotate_walls, outputs = timed(rotate, workdir, args.runs)
            results = [json.loads(output) for output in outputs]
            assert all(r["finalized"] for r in results)
            assert all(c["status"] == "pass" for r in results for c in r["validation"])
            in_process = [r["elapsed_s"] for r in results]
            time_walls, _ = timed(["time", *mutual], workdir, args.runs)
            get_walls, floor_walls, uncached_walls, baseline_walls = [], [], [], []
            for _ in range(args.runs):  # interleaved: the machine's load hits all alike
                get_walls += timed(["get", *mutual], workdir, 1)[0]
                started = time.perf_counter()
                subprocess.run([sys.executable, "-c", FLOOR], check=True, env=ENV)
                floor_walls.append(time.perf_counter() - started)
                uncached_walls += timed(["get", *mutual], workdir, 1, env=uncached)[0]
                if baseline is not None:
                    baseline_walls += timed(["get", *mutual], workdir, 1, env=baseline)[0]
            version_walls, _ = timed(["--version"], workdir, args.runs)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    print(f"gnoicert over loopback ({address}), mutual TLS, wall time of the whole process:")
    print(summary("gnoicert rotate", rotate_walls))
    print(summary("  (workflow)", in_process) + "  <- RotateResult.elapsed_s, inside the process")
    print(summary("gnoicert time", time_walls))
    print(summary("gnoicert --version", version_walls) + "  <- interpreter start and the parser")
    print(summary("gnoicert get", get_walls))
    print(summary("import floor", floor_walls) + f"  <- python -c {FLOOR!r}")
    print(summary("  (no bytecode)", uncached_walls) + "  <- get, gnoicert compiled every run")
    ratio = statistics.median(get_walls) / statistics.median(floor_walls)
    uncached_ratio = statistics.median(uncached_walls) / statistics.median(floor_walls)
    print(
        f"gnoicert get / import floor: {ratio:.2f} (goal <= 1.3); "
        f"without a bytecode cache {uncached_ratio:.2f}"
    )
    if baseline_walls:
        print(summary("  (baseline)", baseline_walls) + f"  <- get from {args.baseline}")
        before = statistics.median(baseline_walls) / statistics.median(floor_walls)
        print(f"baseline get / import floor: {before:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
