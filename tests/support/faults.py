"""Storage faults for the in-process target: it runs in the test's own process, so patching
os.fsync reaches the store's commit (a real disk failure cannot be forced as root)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

_STUCK_LIMIT_S = 10.0


class Fsync:
    """os.fsync that fails (mode "fail") or waits to be released (mode "hold") while armed."""

    def __init__(self) -> None:
        self.mode = "off"
        self.calls = 0
        self.holding = threading.Event()  # set when a held fsync is waiting
        self._release = threading.Event()
        self._real = os.fsync

    def fail(self) -> None:
        self.mode = "fail"

    def hold(self) -> None:
        self._release.clear()
        self.holding.clear()
        self.mode = "hold"

    def release(self) -> None:
        self.mode = "off"
        self._release.set()

    def __call__(self, fd: int) -> None:
        mode = self.mode
        if mode == "fail":
            self.calls += 1
            raise OSError(5, "Input/output error (injected by the test)")
        if mode == "hold":
            self.calls += 1
            self.holding.set()
            if not self._release.wait(_STUCK_LIMIT_S):
                raise OSError(5, "held fsync never released (test bug)")
        self._real(fd)


@pytest.fixture
def fsync(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fsync]:
    patched = Fsync()
    monkeypatch.setattr(os, "fsync", patched)
    try:
        yield patched
    finally:
        patched.release()
