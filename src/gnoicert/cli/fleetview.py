"""What a fleet run shows: progress on stderr while it runs, the result on stdout at the end.

On a terminal the progress is a live rich display (done / failed / in flight / rate / ETA) and
the result a table per target and a summary line; otherwise one line per target as it ends
(stderr) and tab-separated rows (stdout). `--json`/`--output yaml` print the fleet document.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Self

from gnoicert.cli.documents import AUTO, is_structured
from gnoicert.common.closeable import Closeable

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from gnoicert.client.fleet.inventory import Target
    from gnoicert.client.fleet.report import SummaryRecord, TargetRecord
    from gnoicert.client.fleet.runner import Ended, RunResult

_STOP_WORDS = {
    "canary": "stopped early: a canary target failed",
    "max-failures": "stopped early: more targets failed than --max-failures allows",
    "interrupted": "interrupted: no new target was started",
}


class FleetView(Closeable):
    """Progress while the run goes, then the result in the format asked for."""

    def __init__(self, fmt: str, *, total: int, command: str, already: int = 0) -> None:
        self.fmt = fmt
        self.total = total
        self.command = command
        self.already = already
        self.done = 0
        self.failed = 0
        self.in_flight = 0
        self.live = not is_structured(fmt) and sys.stderr.isatty()
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> Self:
        if self.live:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn(f"{self.command}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("done · {task.fields[failed]} failed · {task.fields[flight]} in flight"),
                TextColumn("· {task.fields[rate]}/s · ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                self.command, total=self.total, failed=0, flight=0, rate="0.0"
            )
        return self

    def close(self) -> None:
        """Stop the progress display (leaving the `with` block does it)."""
        if self._progress is not None:
            self._progress.stop()

    def started(self, target: Target) -> None:
        self.in_flight += 1
        self._update()

    def ended(self, end: Ended, record: TargetRecord) -> None:
        if end.resolved:  # an `unknown` settled at the end: counted once, when it ended
            self.failed -= 1 if not end.failed else 0
        elif end.outcome != "skipped":
            self.in_flight -= 1
            self.done += 1
            self.failed += 1 if end.failed else 0
        if not self.live and not is_structured(self.fmt):
            detail = record.code or record.new_fingerprint or ""
            print(
                f"{record.target}\t{record.address}\t{record.outcome}\t{detail}\t"
                f"{record.elapsed_s:.1f}s",
                file=sys.stderr,
                flush=True,
            )
        self._update()

    def _update(self) -> None:
        if self._progress is None or self._task is None:
            return
        task = self._progress.tasks[0]
        elapsed = task.elapsed or 0.0
        rate = f"{self.done / elapsed:.1f}" if elapsed > 0 else "0.0"
        self._progress.update(
            self._task, completed=self.done, failed=self.failed, flight=self.in_flight, rate=rate
        )

    def finish(
        self,
        run: RunResult,
        records: list[TargetRecord],
        summary: SummaryRecord,
        code: int,
        *,
        expiring: list[tuple[str, Any]],
        already: list[str],
    ) -> None:
        from gnoicert.cli.output import format_document, make_console

        extra = {"stopped_by": run.stopped_by, "already_done": already}
        if is_structured(self.fmt):
            from gnoicert.cli.fleet import fleet_document

            print(format_document(fleet_document(records, summary, code, extra), self.fmt))
            return
        console = make_console()
        plain = self.fmt == "tsv" or (self.fmt == AUTO and not console.is_terminal)
        counts = ", ".join(f"{n} {name}" for name, n in summary.counts.items() if n)
        line = f"{summary.total} targets in {summary.elapsed_s:.1f} s: {counts or 'none'}"
        if already:
            line += f"; {len(already)} already done (--resume)"
        if run.stopped_by:
            line += f"; {_STOP_WORDS[run.stopped_by]}"
        if plain:
            rows = (
                _expiring_rows(expiring)
                if self.command == "get" and _survey(records)
                else _target_rows(records)
            )
            for row in rows:
                print("\t".join(row))
            print(line, file=sys.stderr)
            return
        from rich.table import Table

        table = Table(title=f"{self.command} over {summary.total} targets")
        for column in ("target", "address", "outcome", "code", "new fingerprint", "elapsed"):
            table.add_column(column)
        for row in _target_rows(records)[1:]:
            table.add_row(row[0], row[1], _styled(row[2]), row[3], row[5][:23], row[7])
        console.print(table)
        if expiring:
            survey = Table(title="certificates expiring")
            for column in ("target", "certificate", "not after", "days left"):
                survey.add_column(column)
            for row in _expiring_rows(expiring)[1:]:
                survey.add_row(*row)
            console.print(survey)
        console.print(line, markup=False)


def _survey(records: list[TargetRecord]) -> bool:
    return any(r.document.get("expiring_within_days") is not None for r in records)


def _styled(outcome: str) -> str:
    colour = {"committed": "green", "ok": "green", "skipped": "yellow"}.get(outcome, "red")
    return f"[{colour}]{outcome}[/{colour}]"


def _target_rows(records: list[TargetRecord]) -> list[list[str]]:
    header = [
        "target",
        "address",
        "outcome",
        "code",
        "reason",
        "new_fingerprint",
        "not_after",
        "elapsed_s",
    ]
    rows = [
        [
            r.target,
            r.address,
            r.outcome,
            r.code,
            r.reason,
            r.new_fingerprint or "",
            r.not_after or "",
            f"{r.elapsed_s:.1f}",
        ]
        for r in records
    ]
    return [header, *rows]


def _expiring_rows(expiring: list[tuple[str, Any]]) -> list[list[str]]:
    rows = [
        [
            name,
            info.certificate_id,
            info.not_after.isoformat() if info.not_after else "",
            "" if info.days_left is None else str(info.days_left),
        ]
        for name, info in expiring
    ]
    return [["target", "certificate_id", "not_after", "days_left"], *rows]
