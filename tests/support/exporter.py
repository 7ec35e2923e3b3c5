"""A running `gnoicert exporter` for tests: the real command as a subprocess, its `listening:`
address, and scrapes parsed with prometheus-client's own text parser.

    exporter = RunningExporter(inventory_path, interval=0.3)
    state = exporter.wait_for(lambda scrape: scrape.up("dev0001") == 1.0)
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from prometheus_client.parser import text_string_to_metric_families

from tests.support.lab import GNOICERT

START_TIMEOUT_S = 60.0
_NOT_AFTER = "gnoicert_target_certificate_not_after_seconds"
_LISTENING = re.compile(r"^listening: (\S+) ")


@dataclass(frozen=True, slots=True)
class Scrape:
    """One /metrics body: every sample as (name, sorted labels) -> value."""

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        return cls(samples)

    def up(self, target: str) -> float | None:
        return self.samples.get(("gnoicert_target_up", (("target", target),)))

    def duration(self, target: str) -> float | None:
        key = ("gnoicert_target_scrape_duration_seconds", (("target", target),))
        return self.samples.get(key)

    def not_after(self, target: str) -> dict[str, float]:
        """certificate_id -> notAfter of one target's certificate series."""
        found: dict[str, float] = {}
        for (name, labels), value in self.samples.items():
            fields = dict(labels)
            if name == _NOT_AFTER and fields["target"] == target:
                found[fields["certificate_id"]] = value
        return found


class RunningExporter:
    """One `gnoicert exporter` process listening on a free 127.0.0.1 port."""

    def __init__(self, inventory: Path, *, interval: float, extra: Sequence[str] = ()) -> None:
        self._stderr_path = inventory.parent / f"exporter-{time.monotonic_ns()}.stderr"
        self._stderr: IO[bytes] = self._stderr_path.open("ab")
        command = [
            str(GNOICERT),
            "exporter",
            "--inventory",
            str(inventory),
            "--listen",
            "127.0.0.1:0",
            "--interval",
            f"{interval:g}",
            *extra,
        ]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.first_line = self._first_line()
        match = _LISTENING.match(self.first_line)
        assert match, self.first_line
        self.address = match[1]
        self.url = f"http://{self.address}/metrics"

    def _first_line(self) -> str:
        """The first stdout line, read by a thread so a silent exporter fails within a time."""
        lines: list[str] = []
        assert self.process.stdout is not None
        stdout = self.process.stdout
        reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(START_TIMEOUT_S)
        if not lines or not lines[0]:
            raise AssertionError(f"no 'listening:' line; stderr: {self.stderr()[-2000:]}")
        return lines[0].rstrip("\n")

    def stderr(self) -> str:
        return self._stderr_path.read_text(encoding="utf-8", errors="replace")

    def scrape(self) -> Scrape:
        with urllib.request.urlopen(self.url, timeout=10) as response:  # noqa: S310 (loopback)
            assert response.status == 200
            return Scrape.parse(response.read().decode("utf-8"))

    def wait_for(self, condition: Callable[[Scrape], bool], timeout: float = 60.0) -> Scrape:
        """Scrape until condition holds (the exporter must stay up meanwhile)."""
        deadline = time.monotonic() + timeout
        last: Scrape | None = None
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the exporter exited: {self.stderr()[-2000:]}"
            last = self.scrape()
            if condition(last):
                return last
            time.sleep(0.05)  # a poll interval between scrapes, not a wait for a state
        raise AssertionError(f"not reached within {timeout:g} s; last scrape {last}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()
        return code
