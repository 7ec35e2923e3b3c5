"""The JSON Lines report: records, the fsyncing writer, the tolerant reader, resume and merge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gnoicert.client.fleet.report import (
    OUTCOMES,
    ReportError,
    ReportWriter,
    SummaryRecord,
    TargetRecord,
    done_targets,
    last_outcomes,
    merge,
    read_report,
    write_report,
)

DOCUMENT = {
    "schema": 1,
    "command": "rotate",
    "ok": True,
    "exit_code": 0,
    "target": "10.0.0.1:9339",
    "certificate_id": "gnoi-server",
    "fingerprint": "ab" * 32,
    "finalized": True,
}


def record(name: str, outcome: str = "committed", command: str = "rotate") -> TargetRecord:
    return TargetRecord(
        target=name,
        address=f"{name}.example.net:9339",
        command=command,
        outcome=outcome,  # type: ignore[arg-type]
        code="" if outcome in ("committed", "ok") else "FAILED_PRECONDITION",
        old_fingerprint="cd" * 32,
        new_fingerprint="ab" * 32,
        not_after="2027-01-01T00:00:00+00:00",
        elapsed_s=1.5,
        document={**DOCUMENT, "command": command},
    )


def test_a_target_record_is_the_document_plus_the_fleet_fields(tmp_path: Path) -> None:
    path = tmp_path / "report.jsonl"
    with ReportWriter(path) as writer:
        writer.write(record("r1"))
        writer.write(SummaryRecord.of([record("r1")], command="rotate", elapsed_s=2.0))
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first["record"] == "target"
    assert (first["target"], first["address"]) == ("r1", "r1.example.net:9339")
    assert (first["certificate_id"], first["finalized"], first["schema"]) == (
        "gnoi-server",
        True,
        1,
    )
    assert (first["outcome"], first["new_fingerprint"], first["elapsed_s"]) == (
        "committed",
        "ab" * 32,
        1.5,
    )
    assert second == {
        "record": "summary",
        "command": "rotate",
        "total": 1,
        "counts": {**dict.fromkeys(OUTCOMES, 0), "committed": 1},
        "elapsed_s": 2.0,
    }
    report = read_report(path)
    assert report.targets[0].to_json() == record("r1").to_json()
    assert report.targets[0].document["certificate_id"] == "gnoi-server"
    assert report.summaries[0].counts["committed"] == 1
    assert not report.truncated


def test_unknown_outcomes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown outcome"):
        record("r1", outcome="done")


def test_each_record_is_on_disk_when_write_returns(tmp_path: Path) -> None:
    path = tmp_path / "report.jsonl"
    writer = ReportWriter(path)
    writer.write(record("r1"))
    # Another reader sees it at once: flushed, not sitting in a buffer.
    assert [r.target for r in read_report(path).targets] == ["r1"]
    writer.write(record("r2"))
    assert [r.target for r in read_report(path).targets] == ["r1", "r2"]
    writer.close()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)
@given(cut=st.integers(min_value=1, max_value=400))
def test_a_truncated_last_line_is_ignored_and_cut_before_appending(
    tmp_path: Path, cut: int
) -> None:
    path = tmp_path / f"report-{cut}.jsonl"
    path.unlink(missing_ok=True)
    with ReportWriter(path) as writer:
        writer.write(record("r1"))
    whole = path.read_bytes()
    line = json.dumps(record("r2").to_json()).encode() + b"\n"
    partial = line[: min(cut, len(line) - 2)]  # a crash mid-write: no newline
    path.write_bytes(whole + partial)
    report = read_report(path)
    assert [r.target for r in report.targets] == ["r1"]
    assert report.truncated
    with ReportWriter(path) as writer:  # resuming appends after the last whole line
        writer.write(record("r3"))
    assert path.read_bytes() == whole + json.dumps(record("r3").to_json()).encode() + b"\n"
    assert [r.target for r in read_report(path).targets] == ["r1", "r3"]


def test_a_whole_last_record_without_its_newline_counts(tmp_path: Path) -> None:
    path = tmp_path / "report.jsonl"
    path.write_text(json.dumps(record("r1").to_json()))
    report = read_report(path)
    assert [r.target for r in report.targets] == ["r1"]
    assert not report.truncated


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"record": "target"\n{}\n', ":1: not a report record"),
        ('{"a": 1}\n', ':1: not a report record (no "record"'),
        ("[1]\n", ":1: not a report record"),
        ('\n{"record": "target", "target": "r1"}\n', ":2: not a report record"),
    ],
)
def test_a_damaged_line_before_the_last_is_an_error(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "report.jsonl"
    path.write_text(content)
    with pytest.raises(ReportError) as caught:
        read_report(path)
    assert expected in str(caught.value)


def test_last_outcomes_and_the_targets_resume_skips(tmp_path: Path) -> None:
    path = tmp_path / "report.jsonl"
    with ReportWriter(path) as writer:
        for name, outcome in [
            ("r1", "committed"),
            ("r2", "rolled_back"),
            ("r3", "unreachable"),
            ("r4", "skipped"),
        ]:
            writer.write(record(name, outcome))
        writer.write(SummaryRecord.of([], command="rotate"))
        writer.write(record("r2", "committed"))  # the resumed run
        writer.write(record("r3", "unknown"))
    last = last_outcomes(path)
    assert {name: r.outcome for name, r in last.items()} == {
        "r1": "committed",
        "r2": "committed",
        "r3": "unknown",
        "r4": "skipped",
    }
    assert done_targets(path) == {"r1", "r2"}
    with pytest.raises(ReportError, match="cannot read"):
        last_outcomes(tmp_path / "absent.jsonl")


def test_merge_takes_the_last_record_of_each_target(tmp_path: Path) -> None:
    shard1, shard2, rerun = (tmp_path / f"{n}.jsonl" for n in ("s1", "s2", "rerun"))
    with ReportWriter(shard1) as writer:
        writer.write(record("r1"))
        writer.write(record("r2", "validation_failed"))
        writer.write(SummaryRecord.of([], command="rotate", elapsed_s=12.0))
    with ReportWriter(shard2) as writer:
        writer.write(record("r3", "unreachable"))
        writer.write(SummaryRecord.of([], command="rotate", elapsed_s=20.0))
    with ReportWriter(rerun) as writer:
        writer.write(record("r2"))
    records, summary = merge([shard1, shard2, rerun])
    assert [(r.target, r.outcome) for r in records] == [
        ("r1", "committed"),
        ("r2", "committed"),
        ("r3", "unreachable"),
    ]
    assert (summary.total, summary.counts["committed"], summary.counts["unreachable"]) == (3, 2, 1)
    assert summary.elapsed_s == 20.0
    out = tmp_path / "merged.jsonl"
    write_report(out, records, summary)
    again = read_report(out)
    assert again.targets == records
    assert again.summaries == (summary,)


def test_merge_refuses_reports_of_different_commands(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    with ReportWriter(a) as writer:
        writer.write(record("r1", "ok", command="get"))
    with ReportWriter(b) as writer:
        writer.write(record("r2", command="rotate"))
    with pytest.raises(ReportError, match="different commands"):
        merge([a, b])
    with pytest.raises(ReportError, match="no report"):
        merge([])
