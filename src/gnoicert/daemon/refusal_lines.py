"""Rate-limited daemon-log lines for refused requests (docs/behaviour.md §7).

Each refusal has its audit record; the daemon log shows the first few of each minute one by one
and then one summary line per minute ("refused N more requests in the last 60 s ..."), so a
stream of hostile requests costs the daemon log a bounded number of lines.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping

WINDOW_S = 60.0
LINES_PER_WINDOW = 10


def _timer(delay: float, flush: Callable[[], None]) -> None:
    timer = threading.Timer(delay, flush)
    timer.daemon = True
    timer.start()


class RefusalLines:
    """Logs refusal lines on logger, at most `per_window` of them per window, then a summary."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        window_s: float = WINDOW_S,
        per_window: int = LINES_PER_WINDOW,
        clock: Callable[[], float] = time.monotonic,
        schedule: Callable[[float, Callable[[], None]], None] = _timer,
    ) -> None:
        self._logger = logger
        self._window_s = window_s
        self._per_window = per_window
        self._clock = clock
        self._schedule = schedule
        self._lock = threading.Lock()
        self._window_end: float | None = None
        self._window = 0  # which window a scheduled flush belongs to
        self._shown = 0
        self._held: collections.Counter[str] = collections.Counter()

    def refused(self, line: str, reason: str, extra: Mapping[str, object] | None = None) -> None:
        """One refusal: its line now (extra: LogRecord attributes), or counted into the
        window's summary."""
        with self._lock:
            now = self._clock()
            if self._window_end is not None and now >= self._window_end:
                self._summarize_locked()
            if self._window_end is None:
                self._window_end = now + self._window_s
                self._window += 1
                self._shown = 0
                window = self._window
                self._schedule(self._window_s, lambda: self._end_window(window))
            if self._shown < self._per_window:
                self._shown += 1
                self._logger.info("%s", line, extra=extra)
                return
            self._held[reason or "unknown"] += 1

    def flush(self) -> None:
        """Log the summary of the current window now, if it held any line back."""
        with self._lock:
            self._summarize_locked()

    def _end_window(self, window: int) -> None:
        with self._lock:
            if window == self._window and self._window_end is not None:
                self._summarize_locked()

    def _summarize_locked(self) -> None:
        self._window_end = None
        if not self._held:
            return
        total = sum(self._held.values())
        reasons = ", ".join(f"{reason} {count}" for reason, count in self._held.most_common())
        self._logger.warning(
            "refused %d more request%s in the last %g s (%s); each has its audit record",
            total,
            "" if total == 1 else "s",
            self._window_s,
            reasons,
        )
        self._held.clear()
