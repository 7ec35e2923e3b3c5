"""The command runs in-process here: the caller's own gnoicert settings must not reach it."""

from __future__ import annotations

import pytest

from gnoicert.cli.config import VARIABLES


@pytest.fixture(autouse=True)
def _no_caller_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", "/nonexistent-gnoicert-config")
