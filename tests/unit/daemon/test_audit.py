"""daemon/audit.py: JSON lines, file modes, scrubbing, reopen, threads, the human log line."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import stat
import threading
from pathlib import Path

import pytest

from gnoicert.daemon.audit import (
    REDACTED,
    AuditLog,
    AuditRecord,
    Event,
    Outcome,
    format_time,
    read_records,
    record_to_dict,
)

FIELDS = [
    "event",
    "rpc",
    "outcome",
    "peer",
    "identity",
    "certificate_id",
    "old_fingerprint",
    "new_fingerprint",
    "reason",
    "detail",
    "time_ns",
]
ROTATE = "/gnoi.certificate.CertificateManagement/Rotate"
KEY_PEM = (
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
)


def sample(**overrides: str) -> AuditRecord:
    values: dict[str, str] = {
        "event": "rotate",
        "rpc": ROTATE,
        "outcome": "committed",
        "peer": "ipv4:127.0.0.1:5555",
        "identity": "user ops (CN=client1)",
        "certificate_id": "gnoi-server",
        "old_fingerprint": "aa" * 32,
        "new_fingerprint": "bb" * 32,
        "reason": "",
        "detail": "finalized",
    }
    values.update(overrides)
    return AuditRecord(**values)  # type: ignore[arg-type]  # str fields only; time_ns defaults


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "audit.jsonl"


class TestRecord:
    def test_defaults_and_time(self) -> None:
        before = dt.datetime.now(dt.UTC).timestamp() * 1e9
        rec = AuditRecord(event=Event.REFUSED, rpc=ROTATE, outcome=Outcome.REFUSED)
        assert rec.peer == rec.identity == rec.certificate_id == rec.detail == ""
        assert abs(rec.time_ns - before) < 60e9
        with pytest.raises(AttributeError):
            rec.event = Event.ROTATE  # type: ignore[misc]
        with pytest.raises(TypeError):
            AuditRecord(Event.REFUSED, ROTATE, Outcome.REFUSED)  # type: ignore[call-arg]

    def test_format_time(self) -> None:
        assert format_time(0) == "1970-01-01T00:00:00.000000000Z"
        assert format_time(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"
        assert format_time(1_700_000_000_000_000_001).endswith(":20.000000001Z")

    def test_vocabularies(self) -> None:
        events = set(Event)
        assert {"install", "rotate", "commit", "rollback", "refused", "auth_failed"} <= events
        assert len(events) == 14
        assert {"ok", "applied", "intent", "committed", "rolled_back", "refused", "failed"} == set(
            Outcome
        )

    def test_known_strings_become_members(self) -> None:
        rec = sample(event="rotate", outcome="applied")
        assert rec.event is Event.ROTATE
        assert rec.outcome is Outcome.APPLIED

    @pytest.mark.parametrize(
        ("field_name", "value"), [("event", "rotated"), ("outcome", "done"), ("event", "")]
    )
    def test_unknown_event_or_outcome_is_a_programming_error(
        self, field_name: str, value: str
    ) -> None:
        with pytest.raises(ValueError, match=repr(value)):
            sample(**{field_name: value})

    def test_writer_refuses_a_record_that_bypassed_the_check(self, log_path: Path) -> None:
        rec = sample()
        object.__setattr__(rec, "outcome", "done")  # what a careless caller could do
        with AuditLog(log_path) as log, pytest.raises(TypeError, match="Outcome"):
            log.record(rec)
        assert not log_path.read_bytes()

    def test_dict_has_every_field_and_time(self) -> None:
        rec = sample()
        entry = record_to_dict(rec)
        assert list(entry) == ["time", *FIELDS]
        assert entry["time_ns"] == rec.time_ns
        assert entry["time"] == format_time(rec.time_ns)


class TestAuditLog:
    def test_json_lines(self, log_path: Path) -> None:
        with AuditLog(log_path) as log:
            recs = [
                sample(),
                sample(event="rollback", outcome="rolled_back", reason="NOT_FINALIZED"),
            ]
            for rec in recs:
                log.record(rec)
            # Flushed after every line: readable while the log is still open.
            lines = log_path.read_text().splitlines()
        assert len(lines) == 2
        first = json.loads(lines[0])
        assert first["event"] == "rotate"
        assert first["old_fingerprint"] == "aa" * 32
        assert first["time_ns"] == recs[0].time_ns
        assert first["time"] == format_time(recs[0].time_ns)
        assert dt.datetime.fromisoformat(first["time"][:26] + "+00:00")
        assert read_records(log_path)[1]["reason"] == "NOT_FINALIZED"

    def test_newlines_in_fields_stay_on_one_line(self, log_path: Path) -> None:
        with AuditLog(log_path) as log:
            log.record(sample(detail="line one\nline two\r\n\u2028end", identity='quote " me'))
        lines = log_path.read_bytes().split(b"\n")
        assert lines[-1] == b""
        assert len(lines) == 2
        assert read_records(log_path)[0]["detail"] == "line one\nline two\r\n\u2028end"

    def test_permissions(self, log_path: Path) -> None:
        old_umask = os.umask(0)
        try:
            AuditLog(log_path).close()
        finally:
            os.umask(old_umask)
        assert stat.S_IMODE(log_path.stat().st_mode) == 0o600
        assert stat.S_IMODE(log_path.parent.stat().st_mode) == 0o700

    def test_existing_file_is_appended(self, log_path: Path) -> None:
        with AuditLog(log_path) as log:
            log.record(sample(detail="one"))
        with AuditLog(log_path) as log:
            log.record(sample(detail="two"))
        assert [r["detail"] for r in read_records(log_path)] == ["one", "two"]

    def test_existing_parent_not_touched(self, tmp_path: Path) -> None:
        tmp_path.chmod(0o755)
        with AuditLog(tmp_path / "a.jsonl") as log:
            log.record(sample())
        assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755

    # event and outcome are enums (an unknown value raises), so only the free-text fields remain.
    @pytest.mark.parametrize(
        "field_name", ["rpc", "peer", "identity", "certificate_id", "reason", "detail"]
    )
    def test_private_key_material_scrubbed(
        self, field_name: str, log_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="gnoicert.audit")
        with AuditLog(log_path) as log:
            log.record(sample(**{field_name: "bad input: " + KEY_PEM}))
            log.record(sample(**{field_name: "-----BEGIN RSA PRIVATE KEY-----\nMIIC"}))
            log.record(sample(**{field_name: "begin ec private key"}))
        text = log_path.read_text()
        assert "MIIEvQ" not in text
        assert "MIIC" not in text
        assert "PRIVATE KEY" not in text.upper()
        for entry in read_records(log_path):
            assert entry[field_name] == REDACTED
        assert "MIIEvQ" not in caplog.text
        assert "PRIVATE KEY" not in caplog.text.upper()

    def test_certificates_are_not_scrubbed(self, log_path: Path) -> None:
        with AuditLog(log_path) as log:
            log.record(sample(detail="-----BEGIN CERTIFICATE-----"))
        assert read_records(log_path)[0]["detail"] == "-----BEGIN CERTIFICATE-----"

    def test_human_log_line(self, log_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, logger="gnoicert.audit")
        with AuditLog(log_path) as log:
            log.record(sample(detail="two words"))
        [rec] = [r for r in caplog.records if r.name == "gnoicert.audit"]
        assert rec.levelno == logging.INFO
        line = rec.getMessage()
        assert "\n" not in line
        assert line.startswith(f"rotate {ROTATE} committed certificate_id=gnoi-server ")
        assert 'identity="user ops (CN=client1)"' in line
        assert 'detail="two words"' in line
        assert "reason=" not in line  # empty fields are left out

    def test_human_line_escapes_newlines(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, logger="gnoicert.audit")
        AuditLog(None).record(sample(detail="x\nFAKE 2025 admin login ok"))
        [rec] = [r for r in caplog.records if r.name == "gnoicert.audit"]
        assert "\n" not in rec.getMessage()
        assert r'detail="x\nFAKE' in rec.getMessage()

    def test_no_path_logs_only(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, logger="gnoicert.audit")
        log = AuditLog(None)
        assert log.path is None
        log.record(sample())
        log.reopen()
        log.close()
        assert "rotate" in caplog.text
        assert list(tmp_path.iterdir()) == []

    def test_reopen_after_rotation(self, log_path: Path) -> None:
        log = AuditLog(log_path)
        log.record(sample(detail="before"))
        rotated = log_path.with_name("audit.jsonl.1")
        log_path.rename(rotated)
        log.record(sample(detail="still old file"))
        log.reopen()
        log.record(sample(detail="after"))
        log.close()
        assert [r["detail"] for r in read_records(rotated)] == ["before", "still old file"]
        assert [r["detail"] for r in read_records(log_path)] == ["after"]
        assert stat.S_IMODE(log_path.stat().st_mode) == 0o600

    def test_record_after_close_reopens(self, log_path: Path) -> None:
        log = AuditLog(log_path)
        log.close()
        log.close()  # idempotent
        log.record(sample(detail="late rollback"))
        log.close()
        assert [r["detail"] for r in read_records(log_path)] == ["late rollback"]

    def test_open_failure_at_start_raises(self, tmp_path: Path) -> None:
        blocker = tmp_path / "file"
        blocker.write_text("")
        with pytest.raises(NotADirectoryError):
            AuditLog(blocker / "audit.jsonl")

    def test_write_failure_is_logged_not_raised(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        path = tmp_path / "logs" / "audit.jsonl"
        log = AuditLog(path)
        log.close()
        (tmp_path / "logs").rename(tmp_path / "gone")
        (tmp_path / "logs").write_text("")  # now the parent is a file
        with caplog.at_level(logging.ERROR, logger="gnoicert.audit"):
            log.record(sample())
        assert any(
            r.levelno == logging.ERROR and "cannot write audit log" in r.getMessage()
            for r in caplog.records
        )
        (tmp_path / "logs").unlink()
        (tmp_path / "gone").rename(tmp_path / "logs")
        log.record(sample(detail="recovered"))
        log.close()
        assert [r["detail"] for r in read_records(path)] == ["recovered"]

    def test_many_threads(self, log_path: Path) -> None:
        log = AuditLog(log_path)
        big = "x" * 5000  # longer than a pipe buffer line, to catch interleaving
        errors: list[BaseException] = []

        def writer(i: int) -> None:
            try:
                for j in range(50):
                    log.record(sample(certificate_id=f"id-{i}", detail=f"{j}:{big}"))
                    if i == 0 and j % 10 == 0:
                        log.reopen()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        log.close()
        assert not errors
        lines = log_path.read_text().splitlines()
        assert len(lines) == 16 * 50
        entries = [json.loads(line) for line in lines]  # every line is whole JSON
        for i in range(16):
            mine = [
                int(e["detail"].split(":")[0]) for e in entries if e["certificate_id"] == f"id-{i}"
            ]
            assert mine == list(range(50))  # each thread's records in its order

    def test_read_records_skips_blank_lines(self, tmp_path: Path) -> None:
        path = tmp_path / "a.jsonl"
        path.write_text('{"event": "x"}\n\n{"event": "y"}\n')
        assert read_records(path) == [{"event": "x"}, {"event": "y"}]
