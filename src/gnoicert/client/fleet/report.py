"""The fleet report (`--report FILE`): JSON Lines, one record per target, then a summary.

A target record is the command's own single-target document (what `--json` prints for that
target, passed in as a dict) with the fleet fields on top: `record: "target"`, `target` (the
inventory name), `address`, `outcome`, `code`, `reason`, the fingerprints, `not_after` and
`elapsed_s`. The summary record counts the outcomes. Each record is flushed and fsynced as it
is written, so a crash loses at most the line being written; the reader ignores such a
truncated last line and the writer cuts it off before appending (docs/operator-guide.md,
"Fleet").
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Literal, TypeAlias, get_args

from gnoicert.client.errors import InputError
from gnoicert.common.closeable import Closeable

Outcome: TypeAlias = Literal[
    "committed",
    "rolled_back",
    "refused",
    "validation_failed",
    "preflight_failed",
    "unreachable",
    "skipped",
    "unknown",
    "ok",
]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
SUCCESS_OUTCOMES: frozenset[Outcome] = frozenset({"committed", "ok"})
"""A target whose last record has one of these is done: `--resume` skips it."""

_FLEET_FIELDS = (
    "target",
    "address",
    "command",
    "outcome",
    "code",
    "reason",
    "old_fingerprint",
    "new_fingerprint",
    "not_after",
    "elapsed_s",
)


class ReportError(InputError):
    """A report file that cannot be read or merged (not a truncated last line: that is fine)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetRecord:
    """How one target ended. `code` and `reason` are the gRPC status code name and ErrorInfo
    reason of a failure ("" otherwise); `not_after` is the new certificate's, ISO 8601."""

    target: str
    address: str
    command: str
    outcome: Outcome
    code: str = ""
    reason: str = ""
    old_fingerprint: str | None = None
    new_fingerprint: str | None = None
    not_after: str | None = None
    elapsed_s: float = 0.0
    document: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}; one of {', '.join(OUTCOMES)}")

    def to_json(self) -> dict[str, Any]:
        fleet = {name: getattr(self, name) for name in _FLEET_FIELDS}
        return {"record": "target", **self.document, **fleet}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TargetRecord:
        document = {k: v for k, v in data.items() if k not in _FLEET_FIELDS and k != "record"}
        fleet = {name: data[name] for name in _FLEET_FIELDS if name in data}
        # The single-target document names the dialled address "target": keep it there too.
        if "address" in fleet:
            document.setdefault("target", fleet["address"])
        return cls(**fleet, document=MappingProxyType(document))


def not_after_text(value: dt.datetime | None) -> str | None:
    """A certificate's not-after as the report stores it."""
    return value.isoformat() if value is not None else None


@dataclass(frozen=True, slots=True, kw_only=True)
class SummaryRecord:
    """The last line of a run: how many targets ended in each outcome."""

    command: str
    counts: Mapping[str, int]
    total: int
    elapsed_s: float = 0.0

    @classmethod
    def of(
        cls, records: Iterable[TargetRecord], *, command: str, elapsed_s: float = 0.0
    ) -> SummaryRecord:
        counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        for record in records:
            counts[record.outcome] += 1
        return cls(
            command=command,
            counts=MappingProxyType(counts),
            total=sum(counts.values()),
            elapsed_s=elapsed_s,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "record": "summary",
            "command": self.command,
            "total": self.total,
            "counts": dict(self.counts),
            "elapsed_s": self.elapsed_s,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SummaryRecord:
        return cls(
            command=str(data.get("command", "")),
            counts=MappingProxyType({str(k): int(v) for k, v in data.get("counts", {}).items()}),
            total=int(data.get("total", 0)),
            elapsed_s=float(data.get("elapsed_s", 0.0)),
        )


Record: TypeAlias = TargetRecord | SummaryRecord


class ReportWriter(Closeable):
    """Appends records to a report file, each flushed and fsynced before `write` returns.

    Opening cuts off an unterminated last line (a crash mid-write), so what follows starts on
    a line of its own. Safe to call from several threads.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        _drop_partial_line(self.path)
        self._file: IO[str] = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, record: Record) -> None:
        line = json.dumps(record.to_json(), ensure_ascii=False, default=_jsonable) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            self._file.close()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _drop_partial_line(path: Path) -> None:
    try:
        with path.open("rb+") as file:
            size = file.seek(0, os.SEEK_END)
            if size == 0:
                return
            file.seek(size - 1)
            if file.read(1) == b"\n":
                return
            # Find the end of the last complete line, reading backwards in blocks.
            end = size
            while end > 0:
                start = max(0, end - 65536)
                file.seek(start)
                block = file.read(end - start)
                newline = block.rfind(b"\n")
                if newline >= 0:
                    file.truncate(start + newline + 1)
                    return
                end = start
            file.truncate(0)
    except FileNotFoundError:
        return


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True, slots=True)
class Report:
    """A report as read: every target record and summary in file order; `truncated` when an
    unterminated last line was ignored."""

    targets: tuple[TargetRecord, ...]
    summaries: tuple[SummaryRecord, ...]
    truncated: bool = False


def read_report(path: str | Path) -> Report:
    """Read a report; ReportError names the line of anything that is not a record."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReportError(
            f"cannot read the report {path}: {exc.strerror or exc}",
            field="report",
            check="unreadable",
            path=str(path),
        ) from None
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    truncated = bool(tail.strip())
    targets: list[TargetRecord] = []
    summaries: list[SummaryRecord] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        record = _parse_line(path, number, raw)
        if isinstance(record, TargetRecord):
            targets.append(record)
        else:
            summaries.append(record)
    if truncated:
        try:  # a complete record whose newline was not written yet is still a record
            record = _parse_line(path, len(lines) + 1, tail)
        except ReportError:
            pass
        else:
            truncated = False
            if isinstance(record, TargetRecord):
                targets.append(record)
            else:
                summaries.append(record)
    return Report(tuple(targets), tuple(summaries), truncated)


def _parse_line(path: Path, number: int, raw: bytes) -> Record:
    try:
        data = json.loads(raw)
        kind = data.get("record") if isinstance(data, dict) else None
        if kind == "target":
            return TargetRecord.from_json(data)
        if kind == "summary":
            return SummaryRecord.from_json(data)
        problem = 'not a report record (no "record": "target" or "summary")'
    except (ValueError, TypeError, KeyError) as exc:
        problem = f"not a report record: {exc}"
    raise ReportError(
        f"{path}:{number}: {problem}", field="report", check="bad-record", path=str(path)
    )


def last_outcomes(path: str | Path) -> dict[str, TargetRecord]:
    """The last record of each target in a report (what `--resume` decides from)."""
    return {record.target: record for record in read_report(path).targets}


def done_targets(path: str | Path) -> frozenset[str]:
    """The targets `--resume` skips: those whose last record is committed (or ok)."""
    return frozenset(
        name for name, record in last_outcomes(path).items() if record.outcome in SUCCESS_OUTCOMES
    )


def merge(paths: Sequence[str | Path]) -> tuple[tuple[TargetRecord, ...], SummaryRecord]:
    """Several reports (shards, or runs resumed) as one: the last record of each target, in
    the order targets first appear, and a summary of those. The files must be of one command."""
    if not paths:
        raise ReportError("no report to merge", field="report", check="missing")
    latest: dict[str, TargetRecord] = {}  # insertion order: first appearance
    commands: dict[str, str] = {}
    elapsed = 0.0
    for path in paths:
        report = read_report(path)
        for record in report.targets:
            commands.setdefault(record.command, str(path))
            latest[record.target] = record
        elapsed = max([elapsed, *(summary.elapsed_s for summary in report.summaries)])
    if len(commands) > 1:
        seen = ", ".join(f"{command} ({path})" for command, path in commands.items())
        raise ReportError(
            f"the reports are of different commands: {seen}", field="report", check="mixed"
        )
    records = tuple(latest.values())
    command = next(iter(commands), "")
    return records, SummaryRecord.of(records, command=command, elapsed_s=elapsed)


def write_report(path: str | Path, records: Iterable[TargetRecord], summary: SummaryRecord) -> None:
    """Write a whole report (a merge's output) to a new file, replacing it atomically."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    with ReportWriter(temporary) as writer:
        for record in records:
            writer.write(record)
        writer.write(summary)
    os.replace(temporary, path)
