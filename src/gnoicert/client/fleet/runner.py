"""The fleet runner: one async operation over many targets, with rollout control.

Each target gets its own CertClient and runs the ordinary single-device workflow (preflight,
validation on a new connection, Finalize only if it passes: docs/behaviour.md §3); the runner
only decides when a target starts. Phases run one after the other: the canary targets alone,
then batches of the rest; within a phase at most `concurrency` targets are in flight. A stop
(the canary failed, the stop rule tripped, or `stop()` on SIGINT) starts no new target: those in
flight end on their own, and the rest end as `skipped`. A change interrupted after Finalize may
have been sent ends `unknown` and is resolved at the end with a GetCertificates where the target
answers (docs/operator-guide.md, "Fleet").
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from gnoicert.client.errors import (
    GnoiCertError,
    PreflightFailed,
    RotateAborted,
    RpcFailed,
    ValidationFailed,
)
from gnoicert.client.fleet.inventory import Target
from gnoicert.client.fleet.report import Outcome
from gnoicert.client.fleet.rollout import Rollout, phases
from gnoicert.common import exit_codes as codes

if TYPE_CHECKING:
    from gnoicert.client.workflows import CertClient

SUCCESS: frozenset[str] = frozenset({"committed", "ok"})
# A failure of the certificate itself: the target kept its old one and nothing else went wrong.
CERTIFICATE_FAILURES: frozenset[str] = frozenset({"validation_failed", "preflight_failed"})

# When several fleet exit codes apply, the first of EXIT_ORDER wins.
EXIT_ORDER = (
    codes.EXIT_USAGE,
    codes.EXIT_INTERRUPTED,
    codes.EXIT_STOPPED,
    codes.EXIT_FAILED,
    codes.EXIT_VALIDATION,
)

StopReason = Literal["canary", "max-failures", "interrupted"]
Operation = Callable[["CertClient", Target], Awaitable[Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Ended:
    """How one target ended: the operation's result or the error it raised."""

    target: Target
    outcome: Outcome
    result: Any = None
    error: BaseException | None = None
    old_fingerprint: str | None = None
    elapsed_s: float = 0.0
    resolved: bool = False  # an `unknown` settled by the GetCertificates at the end

    @property
    def failed(self) -> bool:
        return self.outcome not in SUCCESS


@dataclass(frozen=True, slots=True)
class RunResult:
    """Every target's last ending, in the order given, and why the run stopped early."""

    ended: tuple[Ended, ...]
    stopped_by: StopReason | None
    elapsed_s: float


_UNREACHABLE_KINDS = frozenset(
    {
        "connection-refused",
        "name-mismatch",
        "untrusted-server",
        "not-tls",
        "connection-closed",
        "no-answer",
        "unavailable",
        "deadline",
    }
)
# After the load, a broken stream may have carried Finalize or not: only the target knows.
_UNSETTLED_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN"})


def outcome_of_error(exc: BaseException, *, change: bool) -> Outcome:
    """The report outcome of a target whose operation raised `exc`."""
    if isinstance(exc, ValidationFailed):
        return "validation_failed"
    if isinstance(exc, PreflightFailed):
        return "preflight_failed"
    if isinstance(exc, RotateAborted):
        return "unknown" if change and exc.code.name in _UNSETTLED_CODES else "rolled_back"
    if isinstance(exc, RpcFailed):
        return "unreachable" if str(exc.kind) in _UNREACHABLE_KINDS else "refused"
    return "refused"


def outcome_of_result(result: Any, *, change: bool) -> Outcome:
    """`committed` for a change done, `ok` for an answer (and a dry run), `refused` for an
    answer that is a failure (a revocation with per-ID errors)."""
    if getattr(result, "ok", True) is not True:
        return "refused"
    if change and not getattr(result, "dry_run", False):
        return "committed"
    return "ok"


def exit_code(
    ended: Sequence[Ended],
    *,
    stopped_by: StopReason | None,
    expiring: bool = False,
) -> int:
    """0 all succeeded; 1 a failure; 3 every failure was the certificate's (validation or
    preflight); 4 a finding (`get --expiring-within`); 5 stopped early by the canary or the stop
    rule; 130 interrupted. The first of 130, 5, 1, 3, 4 that applies wins."""
    failures = [e for e in ended if e.failed and e.outcome != "skipped"]
    if stopped_by == "interrupted":
        return codes.EXIT_INTERRUPTED
    if stopped_by is not None:
        return codes.EXIT_STOPPED
    if any(e.outcome not in CERTIFICATE_FAILURES for e in failures):
        return codes.EXIT_FAILED
    if failures:
        return codes.EXIT_VALIDATION
    if any(e.outcome == "skipped" for e in ended):
        return codes.EXIT_FAILED
    return codes.EXIT_EXPIRING if expiring else codes.EXIT_OK


class FleetRunner:
    """Runs `operation` over `targets`; `on_start` and `on_end` are called as each target
    starts and ends (the report is written from `on_end`, so it is true at every moment).

    `watch_id(target)` names the certificate ID a change replaces: its fingerprint is read
    before the change (the report's old fingerprint) and settles an `unknown` ending.
    """

    def __init__(
        self,
        targets: Sequence[Target],
        operation: Operation,
        rollout: Rollout,
        *,
        change: bool,
        watch_id: Callable[[Target], str | None] | None = None,
        on_start: Callable[[Target], None] | None = None,
        on_end: Callable[[Ended], None] | None = None,
    ) -> None:
        self.targets = tuple(targets)
        self.operation = operation
        self.rollout = rollout
        self.change = change
        self.watch_id = watch_id
        self.on_start = on_start or (lambda target: None)
        self.on_end = on_end or (lambda ended: None)
        self._ended: dict[str, Ended] = {}
        self._failures = 0
        self._stopped_by: StopReason | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    def stop(self) -> None:
        """Start no new target (SIGINT); a second call cancels the targets in flight too, each
        ending `unknown` (a change) or `unreachable` and resolved at the end."""
        if self._stopped_by == "interrupted":
            for task in self._in_flight:
                task.cancel()
        self._stopped_by = "interrupted"
        self._wake.set()

    @property
    def failures(self) -> int:
        return self._failures

    def _limit(self) -> int | None:
        if self.rollout.max_failures is None:
            return None
        return self.rollout.max_failures.of(len(self.targets))

    async def run(self) -> RunResult:
        started = time.monotonic()
        slots = asyncio.Semaphore(max(1, self.rollout.concurrency))
        plan = phases(self.targets, self.rollout)
        for number, phase in enumerate(plan):
            if self._stopped_by is not None:
                break
            if number > 0 and self.rollout.pause_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.rollout.pause_s)
                if self._stopped_by is not None:
                    break
            await self._run_phase(phase, slots)
            is_canary = number == 0 and self.rollout.canary > 0
            if is_canary and any(
                self._ended[t.name].failed for t in phase if t.name in self._ended
            ):
                self._stopped_by = self._stopped_by or "canary"
        for target in self.targets:
            if target.name not in self._ended:
                self._finish(Ended(target=target, outcome="skipped"))
        await self._resolve_unknown()
        ended = tuple(self._ended[t.name] for t in self.targets)
        return RunResult(ended, self._stopped_by, time.monotonic() - started)

    async def _run_phase(self, phase: Sequence[Target], slots: asyncio.Semaphore) -> None:
        tasks: list[asyncio.Task[None]] = []
        for target in phase:
            await slots.acquire()
            if self._stopped_by is not None:
                slots.release()
                break
            task = asyncio.create_task(self._one(target))
            self._in_flight.add(task)
            task.add_done_callback(self._released(slots))
            tasks.append(task)
        await asyncio.gather(*tasks, return_exceptions=True)

    def _released(self, slots: asyncio.Semaphore) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            slots.release()
            self._in_flight.discard(task)

        return done

    def _finish(self, ended: Ended) -> None:
        self._ended[ended.target.name] = ended
        if ended.failed and ended.outcome != "skipped" and not ended.resolved:
            self._failures += 1
            limit = self._limit()
            if limit is not None and self._failures > limit and self._stopped_by is None:
                self._stopped_by = "max-failures"
        self.on_end(ended)

    async def _one(self, target: Target) -> None:
        from gnoicert.client.workflows import CertClient

        self.on_start(target)
        started = time.monotonic()
        old: str | None = None
        watched = self.watch_id(target) if self.watch_id is not None else None
        try:
            async with asyncio.timeout(self.rollout.target_timeout_s) as deadline:
                options = target.channel_options(password=target.password())
                async with await CertClient.connect(options) as client:
                    if watched:
                        old = await _fingerprint(client, watched)
                    result = await self.operation(client, target)
        except asyncio.CancelledError as exc:  # a second Ctrl-C
            outcome: Outcome = "unknown" if self.change else "unreachable"
            self._finish(self._ended_with(target, outcome, exc, old, started))
            return
        except TimeoutError as exc:
            if not deadline.expired():
                self._finish(self._error(target, exc, old, started))
                return
            outcome = "unknown" if self.change else "unreachable"
            timed_out = RpcFailed(
                code=_deadline_code(),
                details=f"the target did not finish within {self.rollout.target_timeout_s:g} s",
                target=target.address,
            )
            self._finish(self._ended_with(target, outcome, timed_out, old, started))
            return
        except (GnoiCertError, OSError, ValueError) as exc:
            self._finish(self._error(target, exc, old, started))
            return
        self._finish(
            Ended(
                target=target,
                outcome=outcome_of_result(result, change=self.change),
                result=result,
                old_fingerprint=old,
                elapsed_s=time.monotonic() - started,
            )
        )

    def _error(self, target: Target, exc: BaseException, old: str | None, started: float) -> Ended:
        outcome = outcome_of_error(exc, change=self.change)
        return self._ended_with(target, outcome, exc, old, started)

    @staticmethod
    def _ended_with(
        target: Target, outcome: Outcome, exc: BaseException, old: str | None, started: float
    ) -> Ended:
        return Ended(
            target=target,
            outcome=outcome,
            error=exc,
            old_fingerprint=old,
            elapsed_s=time.monotonic() - started,
        )

    async def _resolve_unknown(self) -> None:
        """Ask each `unknown` target what it holds now: the watched ID's fingerprint changed
        (or appeared) means committed, else rolled back. No answer leaves it unknown."""
        from gnoicert.client.workflows import CertClient

        async def settle(ended: Ended) -> None:
            watched = self.watch_id(ended.target) if self.watch_id is not None else None
            if not watched:
                return
            try:
                async with asyncio.timeout(self.rollout.target_timeout_s):
                    options = ended.target.channel_options(password=ended.target.password())
                    async with await CertClient.connect(options, fresh=True) as client:
                        now = await _fingerprint(client, watched)
            except (GnoiCertError, OSError, ValueError, TimeoutError):
                return
            outcome: Outcome = (
                "committed" if now is not None and now != ended.old_fingerprint else "rolled_back"
            )
            self._finish(replace(ended, outcome=outcome, resolved=True))

        unknown = [e for e in self._ended.values() if e.outcome == "unknown"]
        await asyncio.gather(*(settle(e) for e in unknown))


async def _fingerprint(client: CertClient, certificate_id: str) -> str | None:
    listing = await client.get_certificates()
    return next((c.fingerprint for c in listing if c.certificate_id == certificate_id), None)


def _deadline_code() -> Any:
    import grpc

    return grpc.StatusCode.DEADLINE_EXCEEDED
