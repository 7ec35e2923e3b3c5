"""The command runs in-process here: the caller's own gnoicert settings must not reach it."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_caller_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith("GNOICERT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", "/nonexistent-gnoicert-config")
