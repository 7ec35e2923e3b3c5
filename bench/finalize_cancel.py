"""Rotations ended the way a common Go client ends them: write Finalize, await the write, cancel
at once (docs/behaviour.md §9). Prints how many committed and how many rolled back.

Run from the repository root: .venv/bin/python bench/finalize_cancel.py [--rounds N]
Starts gnoicertd as its own process on 127.0.0.1 (real mutual TLS, hot reloading, temporary
state directory), rotates `srv` with a fresh client EC key each round over one connection, and
reads each round's outcome from the daemon's audit log. Every round should commit.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.finalize_cancel import client_key_loads, provisioned_process, run_rounds
from tests.support.pki import TestCA


async def run(rounds: int) -> int:
    ca = TestCA()
    loads = client_key_loads(ca, rounds)
    with tempfile.TemporaryDirectory() as directory:
        async with provisioned_process(Path(directory), ca) as target:
            started = time.perf_counter()
            tally = await run_rounds(target.channel, target.metadata, target.audit_path, loads)
            elapsed = time.perf_counter() - started
    print(
        f"finalize then cancel: {tally.commits} commits, {tally.rollbacks} rollbacks "
        f"in {rounds} rounds ({elapsed:.1f} s)"
    )
    return 0 if tally.rollbacks == 0 else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000)
    sys.exit(asyncio.run(run(parser.parse_args().rounds)))


if __name__ == "__main__":
    main()
