"""A running `gnoicert lab` for tests: the real command as a subprocess, its stdout lines, and
the inventory it wrote, read back into per-device connection options.

    with start_lab(tmp_path / "lab", devices=20) as lab:
        async with await CertClient.connect(lab.options("dev0001")) as client: ...

or, in a test module, the `lab_starter` fixture (import it into the module or a conftest):
`lab = lab_starter(20)`; every lab it started is stopped (SIGTERM, exit 0 checked) at teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from gnoicert.client.channel import ChannelOptions

GNOICERT = Path(sys.executable).with_name("gnoicert")
READY_TIMEOUT_S = 120.0  # 1,000 devices take about 20 s on an idle 2-core machine
STOP_TIMEOUT_S = 60.0

# The lab's inventory is flow mappings of JSON strings (src/gnoicert/lab/inventory.py).
_PAIR = re.compile(r'(\w+): ("(?:[^"\\]|\\.)*")')
_TARGET = re.compile(r"^  (dev\d{4}): \{(.*)\}$")
_DEFAULT = re.compile(r'^  (\w+): ("(?:[^"\\]|\\.)*")$')


@dataclass(frozen=True, slots=True)
class Inventory:
    """What DIR/inventory.yaml says: the defaults and each device's own keys (paths absolute)."""

    defaults: dict[str, str]
    targets: dict[str, dict[str, str]]

    def setting(self, name: str, key: str) -> str:
        return self.targets[name].get(key) or self.defaults[key]


def read_inventory(path: Path) -> Inventory:
    defaults: dict[str, str] = {}
    targets: dict[str, dict[str, str]] = {}
    section = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith((" ", "#")):
            section = line.split(":", 1)[0]
        elif section == "defaults" and (match := _DEFAULT.match(line)):
            defaults[match[1]] = json.loads(match[2])
        elif section == "targets" and (match := _TARGET.match(line)):
            targets[match[1]] = {key: json.loads(value) for key, value in _PAIR.findall(match[2])}
    for key in ("password_file", "ca_file", "cert", "key"):
        if key in defaults:
            defaults[key] = str(path.parent / defaults[key])
    for keys in targets.values():
        if "ca_file" in keys:
            keys["ca_file"] = str(path.parent / keys["ca_file"])
    return Inventory(defaults, targets)


class RunningLab:
    """One `gnoicert lab` process; its stdout lines are collected by a thread."""

    def __init__(self, workdir: Path, devices: int, *, factory: bool = False) -> None:
        self.workdir = workdir
        self.devices = devices
        command = [str(GNOICERT), "lab", "--devices", str(devices), "--workdir", str(workdir)]
        if factory:
            command.append("--factory")
        workdir.parent.mkdir(parents=True, exist_ok=True)
        self._stderr_path = workdir.parent / f"{workdir.name}.stderr"
        self._stderr: IO[bytes] = self._stderr_path.open("ab")
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.ready_line = self.wait_line("ready:", READY_TIMEOUT_S)
        self.inventory = read_inventory(workdir / "inventory.yaml")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_line(self, prefix: str, timeout: float = 30.0) -> str:
        """The next stdout line starting with prefix (earlier lines are kept in self.lines)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(remaining, 0.001))
            except queue.Empty:
                raise AssertionError(
                    f"no {prefix!r} line from the lab within {timeout:g} s; "
                    f"stdout so far {self.lines}; stderr: {self.stderr()[-2000:]}"
                ) from None
            if line is None:
                raise AssertionError(
                    f"the lab exited ({self.process.wait()}) before a {prefix!r} line; "
                    f"stderr: {self.stderr()[-2000:]}"
                )
            self.lines.append(line)
            if line.startswith(prefix):
                return line

    def stderr(self) -> str:
        return self._stderr_path.read_text(encoding="utf-8", errors="replace")

    @property
    def password(self) -> str:
        return Path(self.inventory.defaults["password_file"]).read_text().splitlines()[0]

    def address(self, name: str) -> str:
        return self.inventory.targets[name]["address"]

    def options(self, name: str, **overrides: object) -> ChannelOptions:
        """Connection options for one device, from the inventory's files alone."""
        inv = self.inventory
        settings: dict[str, object] = {
            "ca_file": inv.setting(name, "ca_file"),
            "cert_file": inv.defaults["cert"],
            "key_file": inv.defaults["key"],
            "username": inv.defaults["username"],
            "password": self.password,
        }
        settings.update(overrides)
        return ChannelOptions.from_files(self.address(name), **settings)  # type: ignore[arg-type]

    def hold(self, *names: str) -> None:
        """Take devices out of the lab (DIR/held, SIGHUP) so a test can run them alone."""
        held = self.workdir / "held"
        current = set(held.read_text().split()) if held.exists() else set()
        self._reload(held, current | set(names))

    def release(self, *names: str) -> None:
        """Hand held devices back to the lab, which serves them again at the same address."""
        held = self.workdir / "held"
        current = set(held.read_text().split()) if held.exists() else set()
        self._reload(held, current - set(names))

    def _reload(self, held: Path, names: set[str]) -> None:
        held.write_text("".join(f"{name}\n" for name in sorted(names)))
        self.process.send_signal(signal.SIGHUP)
        self.wait_line("reloaded:")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the lab and wait for it; returns its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(timeout=5)
        self._stderr.close()
        if self.process.stdout is not None:
            self.process.stdout.close()
        while not self._queue.empty():
            line = self._queue.get_nowait()
            if line is not None:
                self.lines.append(line)
        return code


@contextlib.contextmanager
def start_lab(workdir: Path, devices: int, *, factory: bool = False) -> Iterator[RunningLab]:
    """A running lab, stopped on exit (killed if it does not stop)."""
    lab = RunningLab(workdir, devices, factory=factory)
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def lab_starter(tmp_path: Path) -> Iterator[Callable[..., RunningLab]]:
    """lab_starter(devices, factory=False, workdir=None) -> RunningLab; all stop at teardown,
    and each must have exited 0."""
    started: list[RunningLab] = []

    def start(devices: int, *, factory: bool = False, workdir: Path | None = None) -> RunningLab:
        lab = RunningLab(workdir or tmp_path / f"lab{len(started)}", devices, factory=factory)
        started.append(lab)
        return lab

    yield start
    codes = [lab.stop() for lab in started]
    assert all(code == 0 for code in codes), codes


def file_mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777
