"""daemon/audit_file.py: the audit log's size cap with rotation (docs/behaviour.md §7)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gnoicert.daemon.audit import AuditLog, AuditRecord, Event, Outcome, read_records
from gnoicert.daemon.audit_file import RotatingAppendFile, read_tail, rotated


def lines(n: int, width: int = 99) -> list[bytes]:
    return [f"{i:0{width}d}\n".encode() for i in range(n)]


def test_rotates_at_the_cap_and_keeps_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    f = RotatingAppendFile(path, max_bytes=1000, files=3)
    for line in lines(95):  # 9,500 bytes: 9 rotations
        f.write(line)
    f.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "audit.jsonl",
        "audit.jsonl.1",
        "audit.jsonl.2",
    ]
    assert path.stat().st_size == 500
    assert rotated(path, 1).stat().st_size == rotated(path, 2).stat().st_size == 1000
    # Newest last: .2, .1, current hold the last 25 records, in order.
    tail = rotated(path, 2).read_bytes() + rotated(path, 1).read_bytes() + path.read_bytes()
    assert tail == b"".join(lines(95)[-25:])
    for p in tmp_path.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600


def test_reopen_continues_the_size(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = RotatingAppendFile(path, max_bytes=1000, files=2)
    for line in lines(6):
        first.write(line)
    first.close()
    second = RotatingAppendFile(path, max_bytes=1000, files=2)
    for line in lines(4):
        second.write(line)
    second.close()
    assert rotated(path, 1).stat().st_size == 1000
    assert path.stat().st_size == 0


@settings(max_examples=50, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 300), max_size=60),
    max_bytes=st.integers(50, 800),
    files=st.integers(1, 4),
)
def test_never_more_than_files_times_cap(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], max_bytes: int, files: int
) -> None:
    directory = tmp_path_factory.mktemp("rot")
    path = directory / "a.log"
    f = RotatingAppendFile(path, max_bytes=max_bytes, files=files)
    written = [b"x" * (n - 1) + b"\n" for n in sizes]
    for line in written:
        f.write(line)
    f.close()
    kept = sorted(directory.iterdir())
    assert len(kept) <= files
    for p in kept:
        assert p.stat().st_size < max_bytes + 300  # a file ends at the record that filled it
    # What is kept is a suffix of what was written, whole records only.
    parts = [rotated(path, n) for n in range(files - 1, 0, -1)] + [path]
    data = b"".join(p.read_bytes() for p in parts if p.exists())
    assert b"".join(written).endswith(data)


def test_read_tail_spans_the_rotated_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    f = RotatingAppendFile(path, max_bytes=1000, files=2)
    for line in lines(15):
        f.write(line)
    f.close()
    assert read_tail(path, 10_000) == b"".join(lines(15)[-15:])
    assert read_tail(path, 350) == b"".join(lines(15)[-3:])  # a partial first line is dropped
    assert read_tail(tmp_path / "missing", 100) == b""


def test_audit_log_rotates_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, max_bytes=4096, files=2) as log:
        for n in range(200):
            log.record(AuditRecord(event=Event.REFUSED, rpc=f"/x/{n}", outcome=Outcome.REFUSED))
    records = read_records(rotated(path, 1)) + read_records(path)
    assert records[-1]["rpc"] == "/x/199"
    assert 10 < len(records) < 200
    assert os.path.getsize(path) < 4096
