"""gnoicertd: the process lifecycle and the gRPC listener (the command line is daemon/main.py).

The listener is rebuilt (new grpc.aio.Server, same port) whenever the TLS mode changes, or on
any credential change with hot reloading off; a stopped server object is never reused
(docs/platform-notes.md: reuse crashes the process). Mode changes wait until the RPC that caused
them has ended with OK.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import _async as reflection_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2

from gnoicert.common.address import format_host_port
from gnoicert.common.rpc import CertRpc
from gnoicert.daemon import decoding, log_setup, policy
from gnoicert.daemon.audit import AuditLog, AuditRecord, Event, Outcome
from gnoicert.daemon.auth import Authenticator
from gnoicert.daemon.config import Config, ConfigError, is_loopback, load_config
from gnoicert.daemon.in_flight import HandlerWrapper, InFlight
from gnoicert.daemon.key_pool import KeyPool
from gnoicert.daemon.runtime import Runtime
from gnoicert.daemon.service import CertificateService, Gate, SystemService
from gnoicert.daemon.startup import (
    ensure_factory_certificate,
    read_external_ca,
    read_key_secret,
    record_crash_outcomes,
)
from gnoicert.daemon.tls import CredentialManager, ServedCredentials
from gnoicert.pki.store import Store
from gnoicert.proto import cert_pb2, system_pb2

if TYPE_CHECKING:
    from gnoicert.daemon.metrics import DaemonMetrics

log = logging.getLogger("gnoicertd")

_HANDLER_EXIT_S = 5.0  # cancelled handlers roll back and audit quickly; bound the wait anyway
_BIND_ATTEMPTS = 200  # x 5 ms: the old listener closes within about a millisecond
_CERT_SERVICE = cert_pb2.DESCRIPTOR.services_by_name["CertificateManagement"]
_SYSTEM_SERVICE = system_pb2.DESCRIPTOR.services_by_name["System"]
_HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"]
_REFLECTION_SERVICE = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]
# The one method monitoring reads at a high rate; every other method is found through the
# generic handlers (docs/platform-notes.md: each registered method costs every call).
_REGISTERED_METHODS = frozenset({CertRpc.GET_CERTIFICATES.path})
_SERVICE_NAMES = (
    _CERT_SERVICE.full_name,
    _SYSTEM_SERVICE.full_name,
    _HEALTH_SERVICE.full_name,
    reflection.SERVICE_NAME,
)


class Daemon:
    """One running gnoicertd: store, runtime state, credential manager and listener."""

    def __init__(self, config: Config, *, insecure: bool = False) -> None:
        if insecure and not is_loopback(config.grpc.listen_host):
            raise ConfigError(
                f"--insecure serves plaintext and is allowed on loopback only, "
                f"not on {config.grpc.listen_host}"
            )
        self.config = config
        self._insecure = insecure
        self.store = Store.open(config.state_dir, key_secret=read_key_secret(config))
        ensure_factory_certificate(self.store, config)
        self.audit = AuditLog(
            config.audit_log, max_bytes=config.audit_log_max_bytes, files=config.audit_log_files
        )
        record_crash_outcomes(self.store, self.audit)
        self.key_pool = KeyPool(config.grpc.key_pool_depths)  # filled once the daemon starts
        self.runtime = Runtime(
            store=self.store,
            audit=self.audit,
            grpc=config.grpc,
            external_client_ca_pem=read_external_ca(config),
            insecure=insecure,
            key_pool=self.key_pool,
        )
        self.credentials = CredentialManager(self.runtime)
        self.authenticator = Authenticator(
            config.users,
            failure_limit=config.auth_failure_limit,
            failure_window_s=config.auth_failure_window_s,
        )
        self._server: grpc.aio.Server | None = None
        self._served: ServedCredentials | None = None
        self._listener_mode = policy.TlsMode.INSECURE if insecure else self.credentials.current.mode
        self._port = 0
        self._reconcile_lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._health = health.aio.HealthServicer()
        self._in_flight = InFlight()
        self._gate = Gate(self.runtime, self.authenticator, lambda: self._listener_mode)
        self._cert_service = CertificateService(
            self.runtime, self._gate, on_change=self.schedule_reconcile
        )
        self._system_service = SystemService(self._gate)
        self._reflection = reflection_aio.ReflectionServicer(_SERVICE_NAMES)
        self.metrics: DaemonMetrics | None = None
        self.metrics_port = 0
        if config.metrics is not None:
            # Imported only here: prometheus_client and its HTTP server modules hold about
            # 3 MiB resident, for nothing in a daemon without [metrics].
            from gnoicert.daemon.metrics import DaemonMetrics

            self.metrics = DaemonMetrics(self.store, self._served_for_metrics)
            self.audit.observe(self.metrics.observe_audit)
        self._stopped = asyncio.Event()
        self._tasks: set[asyncio.Task[object]] = set()  # the loop keeps only weak references

    @property
    def port(self) -> int:
        return self._port

    @property
    def listener_mode(self) -> policy.TlsMode:
        return self._listener_mode

    async def start(self) -> int:
        self._loop = asyncio.get_running_loop()
        self.key_pool.start()
        if self._insecure:
            log.warning(
                "INSECURE: serving plaintext gRPC without authentication on %s "
                "(for tests and labs only)",
                self.config.grpc.listen,
            )
        await self._open_listener(self.config.grpc.listen)
        if self.metrics is not None and self.config.metrics is not None:
            m = self.config.metrics
            self.metrics_port = self.metrics.start(m.listen_host, m.listen_port)
            log.info(
                "metrics on http://%s/metrics", format_host_port(m.listen_host, self.metrics_port)
            )
        if not self.config.users and self._listener_mode is policy.TlsMode.SERVER_ONLY:
            log.warning(
                "no users are configured: server-only TLS refuses every call until one is "
                "added with 'gnoicertd passwd USER --config FILE' (then SIGHUP)"
            )
        return self._port

    async def _open_listener(self, address: str) -> None:
        options = [
            ("grpc.so_reuseport", 0),
            # Ping idle peers so a client that vanished without closing its connection is
            # noticed (and its stream rolled back) within about a minute and a half.
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.max_receive_message_length", self.config.grpc.max_message_bytes),
            ("grpc.max_send_message_length", self.config.grpc.max_message_bytes),
        ]
        # Wrapped at registration, not by interceptors: see daemon/in_flight.py.
        wrappers: list[HandlerWrapper] = [self._in_flight]
        if self.metrics is not None:
            wrappers.append(self.metrics.rpc_timer)
        server = grpc.aio.server(options=options)
        # Request decoding never raises here: undecodable bytes are refused after
        # authentication, audited, as MALFORMED_REQUEST (docs/behaviour.md §7).
        admitted = decoding.authenticated_refusal(self._gate, self.audit)
        anyone = decoding.open_refusal(self.audit)
        for servicer, service, refuse, methods in (
            (self._cert_service, _CERT_SERVICE, admitted, None),
            (self._system_service, _SYSTEM_SERVICE, admitted, ("Time",)),
            (self._health, _HEALTH_SERVICE, anyone, None),
            (self._reflection, _REFLECTION_SERVICE, anyone, None),
        ):
            decoding.add_service(
                server,
                servicer,
                service,
                refuse,
                methods=methods,
                wrappers=wrappers,
                registered=_REGISTERED_METHODS,
            )
        served = self.credentials.current
        mode = policy.TlsMode.INSECURE if self._insecure else served.mode
        for attempt in range(_BIND_ATTEMPTS):
            try:
                if mode is policy.TlsMode.INSECURE:
                    port = server.add_insecure_port(address)
                else:
                    # In a thread: grpc builds the TLS context here, in time superlinear in
                    # the client-CA count (about 2 s for 4,000 CAs); the loop keeps serving.
                    port = await asyncio.to_thread(
                        server.add_secure_port, address, self.credentials.server_credentials()
                    )
            except RuntimeError:
                port = 0
            if port:
                break
            if attempt == _BIND_ATTEMPTS - 1:
                raise OSError(f"cannot bind {address}: the port is in use")
            await asyncio.sleep(0.005)
        await server.start()
        await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
        self._server, self._served, self._listener_mode, self._port = server, served, mode, port
        log.info(
            "listening on %s:%d (%s, certificate %s, SHA-256 %s)",
            self.config.grpc.listen_host,
            port,
            mode,
            served.source,
            served.fingerprint,
        )

    def _served_for_metrics(self) -> ServedCredentials | None:
        """What the listener presents (scrape thread); nothing with --insecure."""
        return None if self._insecure else self.credentials.current

    def schedule_reconcile(self) -> None:
        """Called from RPC done-callbacks (event loop thread)."""
        if self._loop is not None and not self._stopped.is_set():
            self.spawn(self.reconcile())

    def spawn(self, work: Coroutine[object, object, object]) -> None:
        """Run work as a task that is kept referenced until it ends."""
        assert self._loop is not None
        task = self._loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reconcile(self) -> None:
        """Replace the listener when the mode changed, or any credential with hot reload off."""
        async with self._reconcile_lock:
            if self._server is None or self._stopped.is_set():
                return
            current = self.credentials.current
            wanted = policy.TlsMode.INSECURE if self._insecure else current.mode
            changed = current != self._served
            if wanted is self._listener_mode and (self.config.grpc.hot_reloading or not changed):
                return
            old, switching = self._server, wanted is not self._listener_mode
            log.info(
                "replacing the listener: %s -> %s%s",
                self._listener_mode,
                wanted,
                "" if switching else " (hot reloading is off)",
            )
            stopping = asyncio.ensure_future(old.stop(self.config.grpc.shutdown_grace_s))
            await asyncio.sleep(0)
            address = f"{self.config.grpc.listen.rsplit(':', 1)[0]}:{self._port}"
            await self._open_listener(address)
            if wanted is not policy.TlsMode.INSECURE:
                # Only a change of mode is a mode switch; a restart for new credentials is not.
                self.audit.record(
                    AuditRecord(
                        event=Event.MODE_SWITCH if switching else Event.CREDENTIALS,
                        rpc="",
                        outcome=Outcome.OK,
                        certificate_id=current.source,
                        new_fingerprint=current.fingerprint,
                        detail=f"listener now {wanted}"
                        if switching
                        else f"listener replaced, still {wanted} (hot reloading is off)",
                    )
                )
            await stopping

    async def reload(self, path: Path) -> bool:
        """SIGHUP: a configuration that fails validation is refused and the old one kept."""
        try:
            new = load_config(path)
            if new.state_dir != self.config.state_dir:
                raise ConfigError(f"{path}: state_dir cannot change while running; restart")
            if new.grpc.listen != self.config.grpc.listen:
                raise ConfigError(f"{path}: grpc.listen cannot change while running; restart")
            # The store and the audit log stay open on the old ones: never switch silently.
            if new.audit_log != self.config.audit_log:
                raise ConfigError(f"{path}: audit_log cannot change while running; restart")
            if new.key_secret_file != self.config.key_secret_file:
                raise ConfigError(f"{path}: key_secret_file cannot change while running; restart")
            if new.metrics != self.config.metrics:
                raise ConfigError(f"{path}: [metrics] cannot change while running; restart")
            external = read_external_ca(new)
        except ConfigError as exc:
            log.error("configuration reload refused, keeping the running one: %s", exc)
            self.audit.record(
                AuditRecord(
                    event=Event.CONFIG_RELOAD, rpc="", outcome=Outcome.REFUSED, detail=str(exc)
                )
            )
            return False
        self.config = new
        self.runtime.grpc = new.grpc
        self.key_pool.set_depths(new.grpc.key_pool_depths)
        self.runtime.external_client_ca_pem = external
        self.authenticator.replace_users(new.users)
        self.authenticator.set_limits(
            failure_limit=new.auth_failure_limit, failure_window_s=new.auth_failure_window_s
        )
        self.audit.reopen(max_bytes=new.audit_log_max_bytes, files=new.audit_log_files)
        self.credentials.refresh()
        log_setup.apply(new.log_format, new.log_level)
        self.audit.record(AuditRecord(event=Event.CONFIG_RELOAD, rpc="", outcome=Outcome.OK))
        log.info("configuration reloaded from %s", path)
        await self.reconcile()
        return True

    async def stop(self, grace: float | None = None) -> None:
        """Drain: stop accepting, let RPCs finish for the grace period, roll back the rest."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.runtime.stopping = True
        # A listener replacement in progress finishes first; otherwise its new server would
        # outlive the stop.
        async with self._reconcile_lock:
            server = self._server
        if server is not None:
            await self._health.enter_graceful_shutdown()
            await server.stop(self.config.grpc.shutdown_grace_s if grace is None else grace)
            if not await self._in_flight.wait_idle(_HANDLER_EXIT_S):
                log.warning("RPC handlers still running %g s after the stop", _HANDLER_EXIT_S)
        if self.metrics is not None:
            self.metrics.stop()  # before the store it reads closes
        self.key_pool.close()
        self.credentials.close()
        self.store.close()
        self.audit.close()
