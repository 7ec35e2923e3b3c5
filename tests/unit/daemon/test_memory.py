"""daemon/memory.py: the malloc arena limit that bounds the daemon's RSS under load."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gnoicert.daemon import memory

_PROBE = (
    "import os, threading\n"
    "from gnoicert.daemon import memory\n"
    "print(memory.limit_malloc_arenas())\n"
)


def _run(env_extra: dict[str, str]) -> str:
    import os

    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env_extra
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_arenas_are_limited_on_glibc() -> None:
    assert _run({}) == "True"


def test_an_operators_own_setting_is_kept() -> None:
    assert _run({"MALLOC_ARENA_MAX": "8"}) == "False"


def test_debug_report_is_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(memory.ENV, raising=False)
    assert memory.interval() is None
    monkeypatch.setenv(memory.ENV, "30")
    assert memory.interval() == 30.0
    monkeypatch.setenv(memory.ENV, "soon")
    assert memory.interval() is None
