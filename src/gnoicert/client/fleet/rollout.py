"""Rollout settings of a fleet run (`--concurrency`, `--canary`, `--batch-size`,
`--max-failures`, `--pause`, `--target-timeout`) and the order targets start in.

Standard library only: the command line parses these before anything heavy loads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from gnoicert.client.fleet import DEFAULT_CONCURRENCY, DEFAULT_TARGET_TIMEOUT_S

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Size:
    """`--batch-size` / `--max-failures`: a count, or a percentage of the targets run."""

    value: float
    percent: bool = False

    def of(self, total: int) -> int:
        if not self.percent:
            return int(self.value)
        return math.floor(total * self.value / 100)

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.percent else str(int(self.value))


def parse_size(text: str, *, allow_zero: bool = False) -> Size:
    """ "N" or "P%" (0 < P <= 100); ValueError says what is wrong."""
    raw = text.strip()
    if raw.endswith("%"):
        try:
            value = float(raw[:-1])
        except ValueError:
            raise ValueError(
                f"{text!r} is not a number or a percentage (such as 10 or 25%)"
            ) from None
        if not (0 <= value <= 100) or (value == 0 and not allow_zero) or math.isnan(value):
            raise ValueError(f"{text!r}: a percentage must be more than 0 and at most 100")
        return Size(value, percent=True)
    try:
        count = int(raw)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a whole number or a percentage (such as 10 or 25%)"
        ) from None
    if count < 0 or (count == 0 and not allow_zero):
        raise ValueError(f"{text!r}: must be {'0' if allow_zero else '1'} or more")
    return Size(count)


@dataclass(frozen=True, slots=True, kw_only=True)
class Rollout:
    """How targets are started. `max_failures` None: no stop rule (every target is tried)."""

    concurrency: int = DEFAULT_CONCURRENCY
    canary: int = 0
    batch_size: Size | None = None
    max_failures: Size | None = None
    pause_s: float = 0.0
    target_timeout_s: float = DEFAULT_TARGET_TIMEOUT_S


def phases(targets: Sequence[_T], rollout: Rollout) -> list[list[_T]]:
    """The canary targets, then batches of the rest (one batch without a batch size)."""
    canary = list(targets[: rollout.canary])
    rest = list(targets[rollout.canary :])
    result = [canary] if canary else []
    size = rollout.batch_size.of(len(rest)) if rollout.batch_size is not None else len(rest)
    size = max(size, 1)
    result += [rest[i : i + size] for i in range(0, len(rest), size)]
    return result
