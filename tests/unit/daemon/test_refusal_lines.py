"""daemon/refusal_lines.py: refusals reach the daemon log rate-limited (docs/behaviour.md §7)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from gnoicert.daemon.refusal_lines import RefusalLines


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.scheduled: list[tuple[float, Callable[[], None]]] = []

    def __call__(self) -> float:
        return self.now

    def schedule(self, delay: float, run: Callable[[], None]) -> None:
        self.scheduled.append((self.now + delay, run))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [run for at, run in self.scheduled if at <= self.now]
        self.scheduled = [(at, run) for at, run in self.scheduled if at > self.now]
        for run in due:
            run()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def limiter(clock: Clock) -> RefusalLines:
    return RefusalLines(
        logging.getLogger("test.refusals"),
        window_s=60,
        per_window=3,
        clock=clock,
        schedule=clock.schedule,
    )


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.refusals"]


def test_first_lines_then_one_summary_per_window(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="test.refusals")
    lines = limiter(clock)
    for n in range(1000):
        lines.refused(f"refused {n}", "MALFORMED_REQUEST" if n % 2 else "BAD_CREDENTIALS")
        clock.advance(0.01)
    assert messages(caplog) == ["refused 0", "refused 1", "refused 2"]
    clock.advance(60)
    assert messages(caplog)[3:] == [
        "refused 997 more requests in the last 60 s (MALFORMED_REQUEST 499, "
        "BAD_CREDENTIALS 498); each has its audit record"
    ]
    lines.refused("refused again", "X")  # a new window shows lines again
    assert messages(caplog)[-1] == "refused again"


def test_a_window_that_held_nothing_back_says_nothing(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="test.refusals")
    lines = limiter(clock)
    lines.refused("one", "X")
    clock.advance(61)
    lines.flush()
    assert messages(caplog) == ["one"]


def test_flush_reports_at_once(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="test.refusals")
    lines = limiter(clock)
    for _ in range(5):
        lines.refused("r", "X")
    lines.flush()
    assert messages(caplog)[-1].startswith("refused 2 more requests")
    clock.advance(61)  # the stale timer of the flushed window adds nothing
    assert len(messages(caplog)) == 4
