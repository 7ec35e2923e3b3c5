"""Fleet bench: a lab of N devices (default 1,000) on this machine, rotated from one client
process with client-made ECDSA P-256 keys and with target-made RSA-2048 keys, and `get` over
all of them. Prints wall times, devices per second, the lab's resident memory and the load
average (the machine may be shared).

    .venv/bin/python bench/fleet.py [--devices 1000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's tests package

from tests.support.cli import cli_environment, gnoicert_command
from tests.support.lab import start_lab


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (the lab runs in one process or a few)."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    total = 0
    for each in pids:
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def timed(inventory: Path, concurrency: int, *args: str) -> tuple[float, dict[str, object]]:
    command = [*gnoicert_command(), "--inventory", str(inventory), "--json"]
    command += ["--concurrency", str(concurrency), *args]
    started = time.monotonic()
    done = subprocess.run(
        command, capture_output=True, text=True, env=cli_environment(), check=False
    )
    elapsed = time.monotonic() - started
    document = json.loads(done.stdout)
    summary = document["summary"]
    if done.returncode != 0:
        print(f"  exit {done.returncode}: {summary['counts']}", file=sys.stderr)
    return elapsed, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    options = parser.parse_args()
    print(f"load average before: {os.getloadavg()}  cores: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as scratch:
        started = time.monotonic()
        with start_lab(Path(scratch) / "lab", options.devices) as lab:
            print(
                f"lab of {options.devices}: ready in {time.monotonic() - started:.1f} s, "
                f"RSS {rss_mib(lab.process.pid):.0f} MiB"
            )
            inventory = lab.workdir / "inventory.yaml"
            ca = str(lab.workdir / "ca")
            elapsed, summary = timed(inventory, options.concurrency, "get")
            print(
                f"get: {elapsed:.1f} s wall, {options.devices / elapsed:.0f} devices/s, "
                f"{summary['counts']['ok']} ok"
            )
            elapsed, summary = timed(
                inventory, options.concurrency, "rotate", "--ca-dir", ca, "--key-type", "ecdsa"
            )
            print(
                f"rotate, client-made ECDSA P-256: {elapsed:.1f} s wall "
                f"({summary['counts']['committed']} committed; goal <= 60 s)"
            )
            elapsed, summary = timed(
                inventory,
                options.concurrency,
                "rotate",
                "--ca-dir",
                ca,
                "--key-source",
                "target",
                "--key-size",
                "2048",
            )
            print(
                f"rotate, target-made RSA-2048: {elapsed:.1f} s wall "
                f"({summary['counts']['committed']} committed)"
            )
            print(f"lab RSS after: {rss_mib(lab.process.pid):.0f} MiB")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
