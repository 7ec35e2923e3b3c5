"""The audit log: a JSON object per line for each state change and refusal (docs/behaviour.md §8).

The file is append-only, 0600, written per record, size-capped with rotation (audit_file.py),
and reopened on SIGHUP for an external log rotation.
Each record is also logged, in one short human line, on the `gnoicert.audit` logger. No record
may carry key material: any field that looks like a PEM private key is replaced, defensively.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gnoicert.common.closeable import Closeable
from gnoicert.daemon import audit_file
from gnoicert.daemon.refusal_lines import RefusalLines

logger = logging.getLogger("gnoicert.audit")

REDACTED = "[redacted]"
# The attribute of a logging.LogRecord that holds the audit record's fields.
AUDIT_FIELDS = "audit_fields"


class Event(enum.StrEnum):
    """What a record is about (docs/behaviour.md §8)."""

    INSTALL = "install"
    ROTATE = "rotate"
    LOAD = "load"
    GENERATE_CSR = "generate_csr"
    REVOKE = "revoke"
    BUNDLE_LOAD = "bundle_load"
    COMMIT = "commit"
    ROLLBACK = "rollback"
    MODE_SWITCH = "mode_switch"
    REFUSED = "refused"
    AUTH_FAILED = "auth_failed"
    FACTORY_RESET = "factory_reset"
    CONFIG_RELOAD = "config_reload"
    CREDENTIALS = "credentials"


class Outcome(enum.StrEnum):
    """How it ended. APPLIED is a Rotate in effect but not yet finalized (docs/behaviour.md §3);
    INTENT is any other change about to commit (§8). Each is closed by a later COMMITTED or
    ROLLED_BACK record of the same change, written at restart if a crash came first."""

    OK = "ok"
    APPLIED = "applied"
    INTENT = "intent"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled_back"
    REFUSED = "refused"
    FAILED = "failed"


_SENSITIVE_MARKER = "PRIVATE KEY"


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    """One audit line. An event or outcome outside the vocabularies is a programming error."""

    event: Event
    rpc: str
    outcome: Outcome
    peer: str = ""
    identity: str = ""
    certificate_id: str = ""
    old_fingerprint: str = ""
    new_fingerprint: str = ""
    reason: str = ""
    detail: str = ""
    time_ns: int = field(default_factory=time.time_ns)

    def __post_init__(self) -> None:
        # Raises ValueError for a value outside the vocabulary; a known plain string becomes
        # its member, so every record carries the enums the writer checks.
        object.__setattr__(self, "event", Event(self.event))
        object.__setattr__(self, "outcome", Outcome(self.outcome))


def format_time(time_ns: int) -> str:
    """RFC 3339 UTC with nanoseconds: 2025-01-31T12:00:00.123456789Z."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    moment = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z"


def record_to_dict(rec: AuditRecord) -> dict[str, Any]:
    """The JSON object written for rec: "time" first, every field, scrubbed."""
    out: dict[str, Any] = {"time": format_time(rec.time_ns)}
    for f in dataclasses.fields(rec):
        out[f.name] = _scrub(getattr(rec, f.name))
    return out


def _scrub(value: object) -> object:
    if isinstance(value, str) and _SENSITIVE_MARKER in value.upper():
        return REDACTED
    return value


def _human(entry: dict[str, Any]) -> str:
    """event rpc outcome key=value ... on one line (values with odd characters are quoted)."""
    words = [_quote(str(entry[key])) for key in ("event", "rpc", "outcome")]
    for key in _HUMAN_KEYS:
        words.extend(_pair(key, entry[key]))
    return " ".join(words)


_HUMAN_KEYS = (
    "certificate_id",
    "identity",
    "peer",
    "old_fingerprint",
    "new_fingerprint",
    "reason",
    "detail",
)


def _pair(key: str, value: object) -> list[str]:
    if value in ("", None):
        return []
    return [f"{key}={_quote(str(value))}"]


def _quote(text: str) -> str:
    if text and text.isprintable() and not any(c in text for c in ' "='):
        return text
    return json.dumps(text)


class AuditLog(Closeable):
    """Appends AuditRecords to path (None: the logger only). Thread-safe.

    The file is size-capped with rotation (audit_file.py). Refusals reach the daemon log
    rate-limited (refusal_lines.py); every one of them is in the file. A failed write is logged
    at ERROR and does not raise: the state change it describes has already happened, and an RPC
    must not report failure for it.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        max_bytes: int = audit_file.DEFAULT_MAX_MIB << 20,
        files: int = audit_file.DEFAULT_FILES,
    ) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._refusal_lines = RefusalLines(logger)
        self._file: audit_file.RotatingAppendFile | None = None
        self._observers: list[Callable[[AuditRecord], None]] = []
        if path is not None:
            # Fail at start-up, not at the first record.
            self._file = audit_file.RotatingAppendFile(path, max_bytes=max_bytes, files=files)

    @property
    def path(self) -> Path | None:
        return self._path

    def observe(self, callback: Callable[[AuditRecord], None]) -> None:
        """Call callback with every record (the metrics counters: one home for outcomes)."""
        self._observers.append(callback)

    def record(self, rec: AuditRecord) -> None:
        """Append rec; TypeError for anything but a record with an Event and an Outcome."""
        if not (
            isinstance(rec, AuditRecord)
            and isinstance(rec.event, Event)
            and isinstance(rec.outcome, Outcome)
        ):
            raise TypeError(f"not an audit record with an Event and an Outcome: {rec!r}")
        entry = record_to_dict(rec)
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode("utf-8")
        for observer in self._observers:
            observer(rec)
        # The fields ride along for the JSON log format (log_setup.py).
        fields = {AUDIT_FIELDS: entry}
        if rec.outcome is Outcome.REFUSED:
            self._refusal_lines.refused(_human(entry), rec.reason, fields)
        else:
            logger.info("%s", _human(entry), extra=fields)
        if self._file is None:
            return
        with self._lock:
            try:
                self._file.write(line)
            except OSError as exc:
                logger.error("cannot write audit log %s: %s", self._path, exc)
                self._file.close()  # try a fresh open next time

    def reopen(self, *, max_bytes: int | None = None, files: int | None = None) -> None:
        """Close and reopen the file (after logrotate moved it away), with new caps if given."""
        if self._file is None:
            return
        with self._lock:
            self._file.close()
            self._file.max_bytes = max_bytes or self._file.max_bytes
            self._file.files = files or self._file.files
            self._file.open()

    def close(self) -> None:
        """Release the file; a later record opens it again."""
        self._refusal_lines.flush()
        if self._file is None:
            return
        with self._lock:
            self._file.close()


def open_changes(path: Path, *, tail_bytes: int = 16 * 1024 * 1024) -> list[dict[str, Any]]:
    """The changes the log opened and never closed, oldest first (docs/behaviour.md §8).

    A change opens with "applied" (a Rotate) or "intent" (every other change, just before its
    commit) and closes with "committed" or "rolled_back" for the same certificate ID and the
    same old and new fingerprints. A crash between the two leaves it open: the audit log is the
    one place that remembers it. Only the tail of the file is read (a change closes within
    seconds, a Rotate within its finalize deadline); a torn last line from the crash is skipped.
    """
    data = audit_file.read_tail(path, tail_bytes)  # the newest rotated file too
    opened: dict[tuple[str, str, str], dict[str, Any]] = {}
    for line in data.splitlines():
        if not any(marker in line for marker in _MARKERS):
            continue  # cheap filter before parsing
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        cert_id = entry.get("certificate_id")
        if not isinstance(cert_id, str) or not cert_id:
            continue
        change = (
            cert_id,
            str(entry.get("old_fingerprint") or ""),
            str(entry.get("new_fingerprint") or ""),
        )
        if entry.get("outcome") in _OPENING:
            opened[change] = entry
        elif entry.get("outcome") in _CLOSING:
            opened.pop(change, None)
    return list(opened.values())


_OPENING = frozenset({Outcome.APPLIED, Outcome.INTENT})
_CLOSING = frozenset({Outcome.COMMITTED, Outcome.ROLLED_BACK})
_MARKERS = tuple(f'"{outcome}"'.encode() for outcome in _OPENING | _CLOSING)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every record in an audit log file, oldest first (for tests and the CLI)."""
    records: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                records.append(json.loads(line))
    return records
