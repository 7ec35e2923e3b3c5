"""The fleet expiry exporter: every target's GetCertificates on an interval, as Prometheus metrics.

A round asks every target at once (at most `concurrency` in flight, each bounded by the
target's own timeout) and keeps the last result per target. `FleetCollector` turns the last
results into gauges when Prometheus scrapes, so a scrape never waits on a device and a slow or
dead device never blocks the others. A target that did not answer is `up` 0 and has no
certificate series until it answers again (docs/operator-guide.md, "Fleet expiry exporter").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gnoicert.client.fleet import DEFAULT_CONCURRENCY
from gnoicert.client.fleet.inventory import Target
from gnoicert.client.workflows import CertClient
from gnoicert.common.address import format_host_port, parse_host_port
from gnoicert.common.constants import EXPORTER_INTERVAL_S

LISTEN_HOSTS = frozenset({"localhost"})  # names we bind without resolving; any IP is fine

_log = logging.getLogger("gnoicert.exporter")


@dataclass(frozen=True, slots=True)
class TargetResult:
    """One target's last answer: whether it answered, how long it took, and each certificate's
    notAfter as Unix time (empty when it did not answer)."""

    name: str
    up: bool
    duration_s: float
    not_after: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    error: str = ""


async def probe(target: Target, *, environ: Mapping[str, str] | None = None) -> TargetResult:
    """GetCertificates on one target over a fresh channel, never raising: any failure (an
    unreadable password file, a refused handshake, a timeout) is the target being down."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(target.timeout):
            options = target.channel_options(password=target.password(environ))
            # A fresh channel each round: grpcio's shared subchannels would otherwise keep a
            # dead device's reconnect backoff and report a recovered device late.
            async with await CertClient.connect(options, fresh=True) as client:
                certificates = await client.get_certificates()
    except TimeoutError:
        error = f"no answer within {target.timeout:g} s"
    except Exception as exc:  # one target's failure must never stop the exporter
        error = str(exc) or type(exc).__name__
    else:
        not_after = {
            info.certificate_id: info.not_after.timestamp()
            for info in certificates
            if info.not_after is not None
        }
        return TargetResult(
            target.name, True, time.monotonic() - started, MappingProxyType(not_after)
        )
    return TargetResult(target.name, False, time.monotonic() - started, error=error)


class FleetCollector(Collector):
    """The three gauges, built at scrape time from each target's last result."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # update() runs on the event loop, collect() on HTTP's
        self._results: dict[str, TargetResult] = {}

    def update(self, result: TargetResult) -> None:
        with self._lock:
            previous = self._results.get(result.name)
            self._results[result.name] = result
        if result.up and previous is not None and not previous.up:
            _log.info("%s answers again", result.name)
        elif not result.up and (previous is None or previous.up):
            _log.info("%s is down: %s", result.name, result.error)

    def results(self) -> dict[str, TargetResult]:
        with self._lock:
            return dict(self._results)

    def collect(self) -> Iterator[Metric]:
        results = sorted(self.results().values(), key=lambda result: result.name)
        up = GaugeMetricFamily(
            "gnoicert_target_up",
            "1 when the target answered GetCertificates in the last round, else 0",
            labels=["target"],
        )
        duration = GaugeMetricFamily(
            "gnoicert_target_scrape_duration_seconds",
            "How long the last GetCertificates of the target took (to the failure when down)",
            labels=["target"],
        )
        not_after = GaugeMetricFamily(
            "gnoicert_target_certificate_not_after_seconds",
            "notAfter of each certificate the target holds, as Unix time",
            labels=["target", "certificate_id"],
        )
        for result in results:
            up.add_metric([result.name], 1.0 if result.up else 0.0)
            duration.add_metric([result.name], result.duration_s)
            for certificate_id, seconds in sorted(result.not_after.items()):
                not_after.add_metric([result.name, certificate_id], seconds)
        yield up
        yield duration
        yield not_after


class FleetExporter:
    """Rounds of probes over a fixed set of targets, feeding a FleetCollector."""

    def __init__(
        self,
        targets: Sequence[Target],
        *,
        interval: float = EXPORTER_INTERVAL_S,
        concurrency: int = DEFAULT_CONCURRENCY,
        environ: Mapping[str, str] | None = None,
        collector: FleetCollector | None = None,
    ) -> None:
        if interval <= 0 or concurrency < 1:
            raise ValueError("the interval must be positive and the concurrency at least 1")
        self.targets = tuple(targets)
        self.interval = interval
        self.concurrency = concurrency
        self.environ = environ
        self.collector = collector or FleetCollector()

    async def run_round(self) -> None:
        """Probe every target once; each result is published as soon as it is known."""
        bound = asyncio.Semaphore(self.concurrency)

        async def one(target: Target) -> None:
            async with bound:
                self.collector.update(await probe(target, environ=self.environ))

        await asyncio.gather(*(one(target) for target in self.targets))

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds until `stop` is set; a round starts `interval` after the previous one started
        (or at once, when a round took longer than the interval)."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            started = loop.time()
            if not await _until_stopped(self.run_round(), stop):
                return
            remaining = self.interval - (loop.time() - started)
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), remaining)


async def _until_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run `work` unless `stop` is set first (then cancel it); True when it finished."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        task.cancel()  # a no-op when it finished
        with contextlib.suppress(asyncio.CancelledError):
            await task  # re-raises what it raised, if anything
    return not stop.is_set()


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT (an IP address or localhost; port 0 picks a free one), or a bare PORT on
    127.0.0.1; ValueError says what is wrong."""
    if text.isdigit():
        text = f"127.0.0.1:{text}"
    return parse_host_port(text, min_port=0, host_names=LISTEN_HOSTS)


def serve(
    targets: Sequence[Target],
    *,
    listen: tuple[str, int],
    interval: float = EXPORTER_INTERVAL_S,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Listen for scrapes, then run rounds until SIGINT or SIGTERM; returns once stopped."""
    exporter = FleetExporter(targets, interval=interval, concurrency=concurrency)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(exporter.collector)
    host, port = listen
    server, thread = start_http_server(port, addr=host, registry=registry)
    try:
        bound_port = server.server_address[1]
        if on_listening is not None:
            on_listening(format_host_port(host, bound_port))
        asyncio.run(_run_until_signalled(exporter))
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def _run_until_signalled(exporter: FleetExporter) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    try:
        await exporter.run(stop)
    finally:
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(number)
