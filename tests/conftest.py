"""Fixtures every test package shares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.target import TargetProcess


@pytest.fixture
def processes() -> Iterator[list[TargetProcess]]:
    """Spawned daemons (tests append theirs), killed at the end if a test left one running."""
    started: list[TargetProcess] = []
    yield started
    for proc in started:
        if proc.process.poll() is None:
            proc.kill()
