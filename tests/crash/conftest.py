"""The `crash` marker, and a terminal summary line with the crash test's kill count."""

from __future__ import annotations

import pytest

CRASH_SUMMARY = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "crash: SIGKILLs a real store writer and checks what recovery finds"
    )
    config.stash[CRASH_SUMMARY] = []


@pytest.fixture
def crash_summary(request: pytest.FixtureRequest) -> list[str]:
    """Lines appended here are printed in pytest's terminal summary."""
    return request.config.stash[CRASH_SUMMARY]


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    lines = config.stash.get(CRASH_SUMMARY, [])
    if lines:
        terminalreporter.section("store crash test")
        for line in lines:
            terminalreporter.write_line(line)
