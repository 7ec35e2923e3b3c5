"""5,000 fuzzed messages against a real gnoicertd process (bench/fuzz.py runs 100,000):
no crash, no UNKNOWN, no INTERNAL, no store change, a small daemon log (docs/behaviour.md §7)."""

from __future__ import annotations

from pathlib import Path

from tests.support import fuzz


async def test_fuzz_5000_messages(tmp_path: Path) -> None:
    report = await fuzz.run(tmp_path, 5_000, seed=5000, first_checkpoint=1_000)
    assert report.sent == 5_000
    assert report.failures(check_rss=False) == [], (dict(report.codes), report.samples)
    assert report.codes["INVALID_ARGUMENT"] > 1_000  # the garbage reached the handlers
    assert report.codes["UNAUTHENTICATED"] > 1_000  # and callers without credentials
