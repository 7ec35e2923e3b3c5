"""gnoicertd: the process lifecycle, the gRPC listener, signals, and the command line.

The listener is rebuilt (new grpc.aio.Server, same port) whenever the TLS mode changes, or on
any credential change with hot reloading off; a stopped server object is never reused
(docs/platform-notes.md: reuse crashes the process). Mode changes wait until the RPC that caused
them has ended with OK.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import inspect
import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric import ec
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gnoicert import __version__
from gnoicert.daemon import policy
from gnoicert.daemon.audit import AuditLog, AuditRecord, unfinished_rotations
from gnoicert.daemon.auth import Authenticator, hash_password
from gnoicert.daemon.config import Config, ConfigError, Role, load_config, set_user_password
from gnoicert.daemon.runtime import Runtime
from gnoicert.daemon.service import CertificateService, Gate, SystemService
from gnoicert.daemon.tls import CredentialManager, ServedCredentials
from gnoicert.pki import crypto
from gnoicert.pki.errors import PkiError
from gnoicert.pki.store import Store
from gnoicert.proto import cert_pb2, cert_pb2_grpc, system_pb2, system_pb2_grpc

log = logging.getLogger("gnoicertd")

_HANDLER_EXIT_S = 5.0  # cancelled handlers roll back and audit quickly; bound the wait anyway
_BIND_ATTEMPTS = 200  # x 5 ms: the old listener closes within about a millisecond
_SERVICE_NAMES = (
    cert_pb2.DESCRIPTOR.services_by_name["CertificateManagement"].full_name,
    system_pb2.DESCRIPTOR.services_by_name["System"].full_name,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_key_secret(config: Config) -> bytes | None:
    if config.key_secret_file is None:
        return None
    try:
        secret = config.key_secret_file.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"key_secret_file: cannot read {config.key_secret_file}: {exc}") from exc
    if len(secret) < 16:
        raise ConfigError(f"key_secret_file: {config.key_secret_file} holds under 16 bytes")
    return secret


def read_external_ca(config: Config) -> bytes:
    stanza = config.grpc.mutual_authentication
    if stanza is None or stanza.uses_ca_bundle:
        return b""
    path = Path(stanza.certificate_authority)
    try:
        data = path.read_bytes()
        crypto.load_certificates(data)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"grpc.mutual_authentication.certificate_authority: cannot use {path}: {exc}"
        ) from exc
    return data


def ensure_factory_certificate(store: Store, config: Config) -> None:
    """First start: a self-signed certificate so the factory state still encrypts."""
    if store.factory_credentials() is not None:
        return
    key = ec.generate_private_key(ec.SECP256R1())
    hostname = socket.gethostname()
    ips = {"127.0.0.1", "::1"}
    names = {"localhost", hostname}
    host = config.grpc.listen_host
    try:
        ipaddress.ip_address(host)
        ips.add(host)
    except ValueError:
        names.add(host)
    cert = crypto.make_self_signed_certificate(
        key,
        common_name=f"gnoicertd factory certificate ({hostname})",
        dns_names=sorted(names),
        ip_addresses=sorted(ips),
    )
    store.save_factory_credentials(
        crypto.certificates_to_pem([cert]), crypto.private_key_to_pem(key)
    )
    log.info("made the factory certificate (SHA-256 %s)", crypto.fingerprint(cert))


def record_crash_outcomes(store: Store, audit: AuditLog) -> None:
    """Close, in the audit log, the Rotates a crash interrupted between load and Finalize.

    The store already dropped their uncommitted change (applied changes live in memory only),
    but the log's last word on them is "applied". Where the committed certificate is the new
    one, the crash came after the commit and only its record was lost.
    """
    if audit.path is None:
        return
    committed = store.committed_view().entities
    for applied in unfinished_rotations(audit.path):
        cert_id = str(applied["certificate_id"])
        entity = committed.get(cert_id)
        new_fingerprint = str(applied.get("new_fingerprint") or "")
        landed = (
            entity is not None and bool(new_fingerprint) and (entity.fingerprint == new_fingerprint)
        )
        if landed:
            log.warning("the Rotate of '%s' committed just before a crash", cert_id)
        else:
            log.warning(
                "the Rotate of '%s' was not finalized when the daemon stopped; rolled back",
                cert_id,
            )
        audit.record(
            AuditRecord(
                event="commit" if landed else "rollback",
                rpc=str(applied.get("rpc") or ""),
                outcome="committed" if landed else "rolled_back",
                peer=str(applied.get("peer") or ""),
                identity=str(applied.get("identity") or ""),
                certificate_id=cert_id,
                old_fingerprint=str(applied.get("old_fingerprint") or ""),
                new_fingerprint=new_fingerprint,
                reason="" if landed else "CRASH",
                detail=(
                    "found committed at restart after a crash"
                    if landed
                    else "rolled back at restart after a crash"
                ),
            )
        )


class _InFlight(grpc.aio.ServerInterceptor):
    """Counts running RPC handlers, so that stop() returns only after the handlers cancelled at
    the end of the grace period have run their rollbacks and written their audit records (and
    before the store and the audit log are closed under them)."""

    def __init__(self) -> None:
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        kinds = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
        return handler._replace(**{kind: self._track(getattr(handler, kind)) for kind in kinds})

    async def wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _enter(self) -> None:
        self._running += 1
        self._idle.clear()

    def _leave(self) -> None:
        self._running -= 1
        if not self._running:
            self._idle.set()

    def _track(self, behavior: Any) -> Any:
        if inspect.isasyncgenfunction(behavior):

            async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
                self._enter()
                replies = behavior(request, context)
                try:
                    async for reply in replies:
                        yield reply
                finally:
                    try:
                        await replies.aclose()  # its own finally runs now, not at GC
                    finally:
                        self._leave()

            return stream
        if inspect.iscoroutinefunction(behavior):

            async def call(request: Any, context: Any) -> Any:
                self._enter()
                try:
                    return await behavior(request, context)
                finally:
                    self._leave()

            return call
        return behavior  # None (not this kind), or not async: not ours to count


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
        self.audit = AuditLog(config.audit_log)
        record_crash_outcomes(self.store, self.audit)
        self.runtime = Runtime(
            store=self.store,
            audit=self.audit,
            grpc=config.grpc,
            external_client_ca_pem=read_external_ca(config),
            insecure=insecure,
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
        self._in_flight = _InFlight()
        gate = Gate(self.runtime, self.authenticator, lambda: self._listener_mode)
        self._cert_service = CertificateService(
            self.runtime, gate, on_change=self.schedule_reconcile
        )
        self._system_service = SystemService(gate)
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
        if self._insecure:
            log.warning(
                "INSECURE: serving plaintext gRPC without authentication on %s "
                "(for tests and labs only)",
                self.config.grpc.listen,
            )
        await self._open_listener(self.config.grpc.listen)
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
        server = grpc.aio.server(interceptors=[self._in_flight], options=options)
        cert_pb2_grpc.add_CertificateManagementServicer_to_server(self._cert_service, server)
        system_pb2_grpc.add_SystemServicer_to_server(self._system_service, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(_SERVICE_NAMES, server)
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
                        event="mode_switch" if switching else "credentials",
                        rpc="",
                        outcome="ok",
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
            external = read_external_ca(new)
        except ConfigError as exc:
            log.error("configuration reload refused, keeping the running one: %s", exc)
            self.audit.record(
                AuditRecord(event="config_reload", rpc="", outcome="refused", detail=str(exc))
            )
            return False
        self.config = new
        self.runtime.grpc = new.grpc
        self.runtime.external_client_ca_pem = external
        self.authenticator.replace_users(new.users)
        self.authenticator.set_limits(
            failure_limit=new.auth_failure_limit, failure_window_s=new.auth_failure_window_s
        )
        self.audit.reopen()
        self.credentials.refresh()
        self.audit.record(AuditRecord(event="config_reload", rpc="", outcome="ok"))
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
        self.credentials.close()
        self.store.close()
        self.audit.close()


async def serve(config_path: Path, *, insecure: bool, ready_file: Path | None) -> int:
    try:
        config = load_config(config_path)
        daemon = Daemon(config, insecure=insecure)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    except (PkiError, OSError) as exc:  # state directory in use or unreadable, audit log
        log.error("cannot start: %s", exc)
        return 1
    try:
        port = await daemon.start()
    except OSError as exc:  # the port is in use
        log.error("cannot start: %s", exc)
        await daemon.stop(grace=0)
        return 1
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop_requested.set)
    loop.add_signal_handler(signal.SIGINT, stop_requested.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: daemon.spawn(daemon.reload(config_path)))
    if ready_file is not None:
        tmp = ready_file.with_name(ready_file.name + ".tmp")
        tmp.write_text(f"{config.grpc.listen_host}:{port}\n")
        os.replace(tmp, ready_file)
    log.info("gnoicertd %s ready on port %d", __version__, port)
    await stop_requested.wait()
    log.info("stopping: draining for up to %g s", daemon.config.grpc.shutdown_grace_s)
    await daemon.stop()
    log.info("stopped")
    return 0


# -- command line -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gnoicertd",
        description="gNOI CertificateManagement target daemon.",
    )
    parser.add_argument("--version", action="version", version=f"gnoicertd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the daemon")
    p.add_argument("--config", required=True, type=Path, help="configuration file (TOML)")
    p.add_argument("--ready-file", type=Path, help="write host:port here once serving")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext without authentication, loopback only (tests and labs)",
    )

    p = sub.add_parser("config", help="configuration tools")
    config_sub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_sub.add_parser("check", help="validate a configuration file without starting")
    check.add_argument("file", type=Path)

    p = sub.add_parser("passwd", help="set a user's password hash in the configuration file")
    p.add_argument("user")
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--role", choices=[r.value for r in Role], help="default: keep, or admin")

    p = sub.add_parser(
        "factory-reset", help="wipe every certificate, key and the CA bundle (daemon stopped)"
    )
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return parser


def _read_new_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("New password: ")
        if first != getpass.getpass("Again: "):
            raise ConfigError("the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "serve":
            with contextlib.suppress(KeyboardInterrupt):
                return asyncio.run(
                    serve(args.config, insecure=args.insecure, ready_file=args.ready_file)
                )
            return 0
        if args.command == "config":
            config = load_config(args.file)
            read_external_ca(config)
            read_key_secret(config)
            print(f"{args.file}: OK ({len(config.users)} users, listen {config.grpc.listen})")
            return 0
        if args.command == "passwd":
            password = _read_new_password()
            if len(password) < 8:
                raise ConfigError("the password must have at least 8 characters")
            role = Role(args.role) if args.role else None
            set_user_password(args.config, args.user, hash_password(password), role)
            print(f"{args.config}: password set for {args.user}; send SIGHUP to a running daemon")
            return 0
        if args.command == "factory-reset":
            return _factory_reset(args.config, assume_yes=args.yes)
    except ConfigError as exc:
        print(f"gnoicertd: {exc}", file=sys.stderr)
        return 2
    except PkiError as exc:  # the store is in use by a running daemon, or unreadable
        print(f"gnoicertd: {exc}", file=sys.stderr)
        return 1
    return 2  # pragma: no cover (argparse requires a command)


def _factory_reset(path: Path, *, assume_yes: bool) -> int:
    config = load_config(path)
    if not assume_yes:
        if not sys.stdin.isatty():
            raise ConfigError("factory-reset needs --yes when not run interactively")
        answer = input(f"Wipe every certificate and key in {config.state_dir}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing changed")
            return 1
    store = Store.open(config.state_dir, key_secret=read_key_secret(config))
    try:
        store.factory_reset()
    finally:
        store.close()
    audit = AuditLog(config.audit_log)
    audit.record(AuditRecord(event="factory_reset", rpc="", outcome="ok", detail=str(path)))
    audit.close()
    print(f"{config.state_dir}: factory state restored; a new factory certificate is made at start")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
