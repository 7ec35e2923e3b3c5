"""Fuzz a real gnoicertd with 100,000 messages (docs/behaviour.md §7); the engine is
tests/support/fuzz.py, which the test suite runs with 5,000.

Run from the repository root: .venv/bin/python bench/fuzz.py [--messages N] [--seed S]
Prints the counts per status code, crashes, UNKNOWN and INTERNAL, whether the store changed, the
daemon log size and the daemon's RSS over the run; exits 1 if a goal is missed: 0 crashes, 0
UNKNOWN, 0 INTERNAL, no store change, daemon log under 1 MiB, final RSS within 20 % of the RSS
after the first 10,000 messages.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import fuzz


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=48)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gnoicert-fuzz-") as tmp:
        report = asyncio.run(
            fuzz.run(
                Path(tmp),
                args.messages,
                seed=args.seed,
                channels=args.channels,
                concurrency=args.concurrency,
                progress=print,
            )
        )
    print(f"\n{report.sent} messages in {report.seconds:.1f} s")
    for code, count in report.codes.most_common():
        print(f"  {code:<20} {count:>7}")
    print(f"crashes: {int(report.crashed)}  UNKNOWN: {report.unknown}  INTERNAL: {report.internal}")
    print(f"store changed: {report.store_changed}  daemon log: {report.log_bytes} bytes")
    print(
        "daemon RSS: "
        + ", ".join(f"{n}: {kib / 1024:.1f} MiB" for n, kib in report.rss_kib.items())
    )
    for sample in report.samples:
        print("  sample:", sample)
    missed = report.failures(check_rss=True)
    for goal in missed:
        print("MISSED:", goal)
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
