"""Run a lab: every device a Daemon in this process's event loop, until SIGINT or SIGTERM.

Devices whose state another process holds (`gnoicertd serve --config DIR/devices/NAME/...`
run alone) are left to it. DIR/held names devices the lab must not serve; on SIGHUP the lab
reads it again, stops the devices newly listed and starts the ones no longer listed, so a test
can take one device out, run it alone (kill it, restart it) and hand it back. Each change is a
line on stdout; docs/operator-guide.md, "Lab", documents the lines.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import resource
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

from gnoicert.client.errors import GnoiCertError, InputError
from gnoicert.daemon.config import Config, ConfigError, load_config
from gnoicert.daemon.server import Daemon
from gnoicert.lab import provision
from gnoicert.lab.inventory import InventoryEntry, write_inventory
from gnoicert.lab.layout import MAX_DEVICES, DevicePaths, LabLayout
from gnoicert.pki.errors import PkiError, StoreInUse

log = logging.getLogger("gnoicert.lab")

# Daemons are built on the loop thread (their constructors are blocking but short); this many
# start at once so binding (TLS contexts are built in threads) overlaps with building.
_START_CONCURRENCY = 16


class LabError(GnoiCertError):
    """A device could not be started (its configuration or state is broken)."""


@dataclasses.dataclass(slots=True)
class _Device:
    paths: DevicePaths
    port: int = 0
    daemon: Daemon | None = None
    elsewhere: bool = False  # its state is held by another process


class Lab:
    """The devices of one work directory and the daemons serving them."""

    def __init__(self, layout: LabLayout, count: int, *, factory: bool, out: TextIO) -> None:
        self.layout = layout
        self.factory = factory
        self._out = out
        self.devices = [_Device(paths) for paths in layout.devices(count)]

    @property
    def serving(self) -> int:
        return sum(1 for device in self.devices if device.daemon is not None)

    def say(self, line: str) -> None:
        print(line, file=self._out, flush=True)

    def held(self) -> set[str]:
        try:
            text = self.layout.held.read_text(encoding="utf-8")
        except FileNotFoundError:
            return set()
        return {line.strip() for line in text.splitlines() if line.strip()}

    async def reconcile(self) -> None:
        """Serve every device not held here or elsewhere; stop the held ones."""
        held = self.held()
        stopping = [d for d in self.devices if d.daemon is not None and d.paths.name in held]
        await asyncio.gather(*(self._stop(device) for device in stopping))
        for device in stopping:
            self.say(f"held: {device.paths.name}")
        for device in self.devices:
            if not device.port and device.paths.name in held:
                device.port = self._config(device).grpc.listen_port
        starting = [d for d in self.devices if d.daemon is None and d.paths.name not in held]
        gate = asyncio.Semaphore(_START_CONCURRENCY)

        async def start(device: _Device) -> None:
            async with gate:
                await self._start(device)

        await asyncio.gather(*(start(device) for device in starting))
        write_inventory(self.layout, self._entries(), factory=self.factory)

    def _entries(self) -> list[InventoryEntry]:
        # A device never bound has no address yet: it is left out until it has one.
        return [InventoryEntry(d.paths, d.port) for d in self.devices if d.port]

    def _config(self, device: _Device) -> Config:
        try:
            config = load_config(device.paths.config)
        except ConfigError as exc:
            raise LabError(f"{device.paths.name}: {exc}") from None
        # No key pool per device: a thousand devices would each keep a filler thread and keys
        # for CSRs a lab rarely asks for (the device run alone keeps its configured pool).
        return dataclasses.replace(
            config, grpc=dataclasses.replace(config.grpc, key_pool_depths=())
        )

    async def _start(self, device: _Device) -> None:
        name = device.paths.name
        config = self._config(device)
        device.port = config.grpc.listen_port
        try:
            daemon = Daemon(config)
        except StoreInUse:
            if not device.elsewhere:
                self.say(f"elsewhere: {name}")
            device.elsewhere = True
            return
        except (ConfigError, PkiError, OSError) as exc:
            raise LabError(f"{name}: cannot start: {exc}") from None
        device.elsewhere = False
        try:
            port = await daemon.start()
        except OSError:
            await daemon.stop(grace=0)
            if config.grpc.listen_port == 0:
                raise
            # Its recorded port was taken while it was down: any free one, then record it.
            fresh = dataclasses.replace(config.grpc, listen_port=0)
            daemon = Daemon(dataclasses.replace(config, grpc=fresh))
            port = await daemon.start()
        if self.factory:
            factory = daemon.store.factory_credentials()
            if factory is not None:
                await asyncio.to_thread(
                    provision.export_factory_certificate, device.paths, factory[0]
                )
        if port != device.port:
            # In a thread: an atomic rewrite waits for two fsyncs, and devices start together.
            await asyncio.to_thread(provision.record_port, device.paths, port)
            device.port = port
        device.daemon = daemon

    async def _stop(self, device: _Device) -> None:
        daemon, device.daemon = device.daemon, None
        if daemon is not None:
            await daemon.stop()

    async def stop(self) -> None:
        await asyncio.gather(*(self._stop(device) for device in self.devices))


async def _serve(lab: Lab, started: float) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reload = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    try:
        await lab.reconcile()
        lab.say(
            f"ready: {lab.serving} of {len(lab.devices)} devices serving "
            f"in {time.monotonic() - started:.1f} s; inventory {lab.layout.inventory}"
        )
        while not stop.is_set():
            stop_wait = asyncio.ensure_future(stop.wait())
            reload_wait = asyncio.ensure_future(reload.wait())
            await asyncio.wait({stop_wait, reload_wait}, return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            reload_wait.cancel()
            if reload.is_set() and not stop.is_set():
                reload.clear()
                await lab.reconcile()
                lab.say(f"reloaded: {lab.serving} of {len(lab.devices)} devices serving")
    finally:
        await lab.stop()
    lab.say("stopped")
    return 0


def _log_devices(verbose: int) -> None:
    """The devices' own log lines (logger gnoicertd) on stderr: warnings, or all with -v.

    The lab's own logger (gnoicert.lab) is the command's, set up by the CLI."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    daemon_log = logging.getLogger("gnoicertd")
    daemon_log.addHandler(handler)
    daemon_log.setLevel(logging.INFO if verbose else logging.WARNING)


def _raise_file_limit() -> None:
    """Each device holds a listener, its store lock and its audit log open."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_lab(
    devices: int,
    workdir: str | Path,
    *,
    factory: bool = False,
    verbose: int = 0,
    out: TextIO | None = None,
) -> int:
    """Provision (or reuse) and serve a lab until SIGINT/SIGTERM; returns the exit status 0.

    Raises InputError for a bad count or a work directory of the other kind, LabError when a
    device cannot start.
    """
    if not 1 <= devices <= MAX_DEVICES:
        raise InputError(f"--devices must be 1 to {MAX_DEVICES}, got {devices}", field="devices")
    started = time.monotonic()
    _log_devices(verbose)
    _raise_file_limit()
    layout = LabLayout.at(workdir)
    secrets = provision.prepare_lab(layout, factory=factory)
    made = provision.provision_devices(layout.devices(devices), secrets, factory=factory)
    if made:
        log.info("provisioned %d devices in %.1f s", made, time.monotonic() - started)
    lab = Lab(layout, devices, factory=factory, out=out or sys.stdout)
    return asyncio.run(_serve(lab, started))
