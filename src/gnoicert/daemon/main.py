"""The gnoicertd command line: serve, config check, passwd and factory-reset.

grpcio is imported only after log_setup has set GRPC_VERBOSITY (the modules that load it are
imported inside the functions that need them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gnoicert import __version__
from gnoicert.common.address import format_host_port
from gnoicert.daemon import log_setup, memory, systemd
from gnoicert.daemon.audit import AuditLog, AuditRecord, Event, Outcome
from gnoicert.daemon.config import ConfigError, Role, load_config, set_user_password
from gnoicert.daemon.startup import check_listen_address, check_referenced_files, read_key_secret
from gnoicert.pki.errors import PkiError
from gnoicert.pki.store import Store

if TYPE_CHECKING:
    from gnoicert.daemon.server import Daemon

log = logging.getLogger("gnoicertd")

# What add_subparsers returns; argparse names the class only privately.
_Subparsers = argparse._SubParsersAction


async def serve(config_path: Path, *, insecure: bool, ready_file: Path | None) -> int:
    from gnoicert.daemon.server import Daemon

    try:
        config = load_config(config_path)
        log_setup.apply(config.log_format, config.log_level)
        # Before the store is opened: a daemon that cannot listen creates nothing.
        check_listen_address(config.grpc.listen_host, config.grpc.listen_port)
        if config.metrics is not None:
            check_listen_address(config.metrics.listen_host, config.metrics.listen_port)
        daemon = Daemon(config, insecure=insecure)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("%s", problem)
        return 2
    except (PkiError, OSError) as exc:  # port in use, state directory in use or unreadable, ...
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
        _write_ready_file(ready_file, daemon)
    systemd.notify("READY=1", f"STATUS=serving on port {port}", f"MAINPID={os.getpid()}")
    log.info("gnoicertd %s ready on port %d", __version__, port)
    watchdog_s = systemd.watchdog_interval()
    if watchdog_s is not None:
        daemon.spawn(systemd.watchdog_forever(watchdog_s))
    memory_report_s = memory.interval()
    if memory_report_s is not None:
        daemon.spawn(memory.report_forever(memory_report_s))
    await stop_requested.wait()
    systemd.notify("STOPPING=1", "STATUS=draining")
    log.info("stopping: draining for up to %g s", daemon.config.grpc.shutdown_grace_s)
    await daemon.stop()
    log.info("stopped")
    return 0


def _write_ready_file(path: Path, daemon: Daemon) -> None:
    """Line 1: the gRPC host:port; line 2, with [metrics]: 'metrics host:port'. Atomic."""
    lines = [format_host_port(daemon.config.grpc.listen_host, daemon.port)]
    if daemon.config.metrics is not None:
        host = daemon.config.metrics.listen_host
        lines.append(f"metrics {format_host_port(host, daemon.metrics_port)}")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    os.replace(tmp, path)


# -- command line -----------------------------------------------------------------------------


CONFIG_HELP = "configuration file (TOML)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gnoicertd",
        description="gNOI CertificateManagement target daemon.",
    )
    parser.add_argument("--version", action="version", version=f"gnoicertd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in (_add_serve, _add_config, _add_passwd, _add_factory_reset):
        add_command(sub)
    return parser


def _add_serve(sub: _Subparsers[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the daemon",
        description="Serve gNOI CertificateManagement and System/Time with the configuration in "
        "FILE until SIGTERM or SIGINT; SIGHUP rereads the configuration. Exit 2 on a "
        "configuration error.",
    )
    p.add_argument("--config", required=True, type=Path, help=CONFIG_HELP)
    p.add_argument("--ready-file", type=Path, help="write host:port here once serving")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext without authentication, loopback only (tests and labs)",
    )


def _add_config(sub: _Subparsers[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "config", help="configuration tools", description="Configuration tools (see ACTION)."
    )
    actions = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="validate a configuration file without starting",
        description="Read and validate FILE and the files it names, without starting the "
        "server: exit 0 with a one-line summary, or 2 with every problem found (fit for "
        "systemd's ExecStartPre).",
    )
    check.add_argument("file", type=Path, metavar="FILE", help=CONFIG_HELP)


def _add_passwd(sub: _Subparsers[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "passwd",
        help="set a user's password hash in the configuration file",
        description="Set USER's password hash in the configuration file (the password is read "
        "twice on a terminal, else one line from stdin); SIGHUP makes a running daemon use it.",
    )
    p.add_argument("user", help="the user name (added when new)")
    p.add_argument("--config", required=True, type=Path, help=CONFIG_HELP)
    p.add_argument("--role", choices=[r.value for r in Role], help="default: keep, or admin")


def _add_factory_reset(sub: _Subparsers[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "factory-reset",
        help="wipe every certificate, key and the CA bundle (daemon stopped)",
        description="Wipe every certificate, key and the CA bundle from the state directory, "
        "back to the factory state; the daemon must be stopped. Asks first unless --yes.",
    )
    p.add_argument("--config", required=True, type=Path, help=CONFIG_HELP)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def _read_new_password() -> str:
    import getpass  # passwd only: the serving daemon does not keep it (or termios) loaded

    if sys.stdin.isatty():
        first = getpass.getpass("New password: ")
        if first != getpass.getpass("Again: "):
            raise ConfigError("the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log_setup.configure(verbose=args.verbose)
    try:
        if args.command == "serve":
            memory.limit_malloc_arenas()  # before grpc and asyncio start their threads
            memory.fix_mmap_threshold()
            with contextlib.suppress(KeyboardInterrupt):
                return asyncio.run(
                    serve(args.config, insecure=args.insecure, ready_file=args.ready_file)
                )
            return 0
        if args.command == "config":
            config = load_config(args.file)
            check_referenced_files(config)
            print(f"{args.file}: OK ({len(config.users)} users, listen {config.grpc.listen})")
            return 0
        if args.command == "passwd":
            from gnoicert.daemon.auth import hash_password

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
        for problem in exc.problems:
            print(f"gnoicertd: {problem}", file=sys.stderr)
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
    audit = AuditLog(
        config.audit_log, max_bytes=config.audit_log_max_bytes, files=config.audit_log_files
    )
    audit.record(
        AuditRecord(event=Event.FACTORY_RESET, rpc="", outcome=Outcome.OK, detail=str(path))
    )
    audit.close()
    print(f"{config.state_dir}: factory state restored; a new factory certificate is made at start")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
