"""`gnoicert demo`: a target on loopback and the whole certificate lifecycle against it.

In a temporary directory: start gnoicertd in its factory state on a free loopback port, trust
its factory certificate on first use, make a CA, install a server certificate from a
target-generated CSR together with the first CA bundle (the daemon switches to mutual TLS),
point `local_certificate` at it (configuration + SIGHUP), rotate it with validation, install a
second certificate with a client-made key, list, revoke it, show the audit log tail, and stop.
It talks to gnoicertd only over gRPC, its configuration file and signals, as an operator would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import shlex
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TypeVar

from gnoicert.client.ca import LocalCA, write_private_file, write_public_file
from gnoicert.client.channel import ChannelOptions
from gnoicert.client.errors import GnoiCertError, RpcFailed
from gnoicert.client.models import (
    CertificateInfo,
    CsrParams,
    DemoResult,
    DemoStep,
    InstallSpec,
    RotateSpec,
)
from gnoicert.client.tlsprobe import fetch_served_certificate
from gnoicert.client.workflows import CertClient

SERVER_CERT_ID = "gnoi-server"
PEER_CERT_ID = "ipsec-peer"
DEMO_USER = "ops"
_READY_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 15.0

_T = TypeVar("_T")


class DemoFailed(GnoiCertError):
    """A demo step did not turn out as expected (the daemon died, a wait timed out ...)."""


def find_daemon_command(override: str | None = None) -> list[str]:
    """How to start gnoicertd: the override, or the script installed next to this Python.

    The client starts the daemon as a program, never by importing it (the layer rule).
    """
    if override:
        return shlex.split(override)
    script = Path(sys.executable).parent / "gnoicertd"
    if not script.exists():
        raise DemoFailed(
            f"gnoicertd is not installed next to {sys.executable}; install gnoicert "
            "(bash scripts/bootstrap) or pass --daemon COMMAND"
        )
    return [str(script)]


def write_config(path: Path, workdir: Path, *, local_certificate: str | None = None) -> None:
    """The daemon's TOML configuration (users are added by `gnoicertd passwd`)."""
    lines = [
        f'state_dir = "{workdir / "state"}"',
        f'audit_log = "{workdir / "audit.log"}"',
        "",
        "[grpc]",
        'listen = "127.0.0.1:0"',
        "hot_reloading = true",
        "finalize_timeout_s = 60",
    ]
    if local_certificate:
        lines.append(f'local_certificate = "{local_certificate}"')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def set_local_certificate(path: Path, certificate_id: str) -> None:
    """Add `local_certificate` under [grpc], keeping what `gnoicertd passwd` wrote."""
    text = path.read_text(encoding="utf-8")
    if "[grpc]\n" not in text:
        raise DemoFailed(f"{path} has no [grpc] table")
    text = text.replace("[grpc]\n", f'[grpc]\nlocal_certificate = "{certificate_id}"\n', 1)
    path.write_text(text, encoding="utf-8")


def audit_tail(path: Path, count: int = 6) -> list[str]:
    """The last records of the audit log, one short line each."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()[-count:]
    except OSError:
        return ["(no audit log)"]
    shown = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            shown.append(line)
            continue
        fields = [
            str(record.get(key, ""))
            for key in ("event", "rpc", "certificate_id", "outcome", "reason")
        ]
        shown.append(" ".join(field for field in fields if field))
    return shown


class _Narrator:
    def __init__(self, narrate: Callable[[str], None] | None, total: int) -> None:
        self._narrate = narrate
        self._total = total
        self._number = 0
        self.steps: list[DemoStep] = []

    def say(self, text: str) -> None:
        if self._narrate is not None:
            self._narrate(text)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[list[str]]:
        """Narrate a step; the body appends detail lines to the list it gets."""
        self._number += 1
        self.say(f"[{self._number}/{self._total}] {title}")
        details: list[str] = []
        started = time.monotonic()
        yield details
        elapsed = time.monotonic() - started
        for line in details:
            self.say(f"      {line}")
        self.steps.append(DemoStep(title=title, detail="; ".join(details), elapsed_s=elapsed))


async def _until(what: str, attempt: Callable[[], Awaitable[_T | None]], timeout: float) -> _T:
    """Retry `attempt` (None or an exception means "not yet") until it answers or time is up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.02
    last: BaseException | None = None
    while True:
        try:
            result = await attempt()
        except (GnoiCertError, OSError) as exc:
            result, last = None, exc
        if result is not None:
            return result
        if loop.time() >= deadline:
            suffix = f": {last}" if last else ""
            raise DemoFailed(f"timed out after {timeout:g} s waiting for {what}{suffix}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


class _Daemon:
    """gnoicertd as a child process, with its log in the work directory."""

    def __init__(self, command: Sequence[str], config: Path, workdir: Path) -> None:
        self.command = list(command)
        self.config = config
        self.ready_file = workdir / "ready"
        self.log_path = workdir / "gnoicertd.log"
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def set_password(self, user: str, password: str) -> None:
        completed = subprocess.run(
            [*self.command, "passwd", user, "--config", str(self.config)],
            input=(password + "\n").encode(),
            capture_output=True,
            timeout=60,
            check=False,
        )
        if completed.returncode != 0:
            message = completed.stderr.decode(errors="replace").strip()
            raise DemoFailed(f"gnoicertd passwd failed ({completed.returncode}): {message}")

    def start(self) -> None:
        self.ready_file.unlink(missing_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                *self.command,
                "serve",
                "--config",
                str(self.config),
                "--ready-file",
                str(self.ready_file),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def wait_ready(self, timeout: float) -> str:
        async def ready() -> str | None:
            if self.process is not None and self.process.poll() is not None:
                raise DemoFailed(
                    f"gnoicertd exited with status {self.process.returncode}; see {self.log_path}"
                )
            text = self.ready_file.read_text(encoding="utf-8") if self.ready_file.exists() else ""
            return text.strip() if text.endswith("\n") else None

        return await _until("gnoicertd to serve", ready, timeout)

    def reload(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise DemoFailed("gnoicertd is not running")
        self.process.send_signal(signal.SIGHUP)

    def stop(self) -> int | None:
        code: int | None = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait()
        elif self.process is not None:
            code = self.process.returncode
        if self._log is not None:
            self._log.close()
        return code


def _served_fingerprint(options: ChannelOptions) -> str:
    return hashlib.sha256(options.served_certificate(verify=False)).hexdigest()


def _table(certificates: Sequence[CertificateInfo]) -> list[str]:
    rows = []
    for info in certificates:
        endpoints = ", ".join(e.endpoint for e in info.endpoints) or "-"
        rows.append(
            f"{info.certificate_id:<12} {info.common_name:<20} "
            f"{f'{info.key_type}-{info.key_size}':<10} {info.days_left} days left, "
            f"endpoints: {endpoints}"
        )
    return rows or ["(none)"]


async def _lifecycle(
    workdir: Path, command: Sequence[str], narrator: _Narrator, timeout: float
) -> None:
    config = workdir / "gnoicertd.toml"
    password = secrets.token_urlsafe(16)
    daemon = _Daemon(command, config, workdir)
    try:
        with narrator.step("start gnoicertd in its factory state on a free loopback port") as out:
            write_config(config, workdir)
            daemon.set_password(DEMO_USER, password)
            daemon.start()
            address = await daemon.wait_ready(_READY_TIMEOUT_S)
            out.append(f"listening on {address} (log: {daemon.log_path})")

        with narrator.step("trust the factory certificate on first use (loopback only)") as out:
            host, _, port = address.rpartition(":")
            der = await asyncio.to_thread(
                fetch_served_certificate, host, int(port), verify=False, timeout=timeout
            )
            factory_pem = ssl.DER_cert_to_PEM_cert(der).encode("ascii")
            write_public_file(workdir / "factory.pem", factory_pem)
            out.append(f"factory certificate sha256 {hashlib.sha256(der).hexdigest()}")
            factory = ChannelOptions(
                target=address,
                root_certificates=factory_pem,
                username=DEMO_USER,
                password=password,
                timeout=timeout,
            )
            async with await CertClient.connect(factory) as client:
                now = await client.time()
            out.append(f"System/Time over server-only TLS as '{DEMO_USER}': {now.time.isoformat()}")

        with narrator.step("create a CA (root + intermediate) and an operator certificate") as out:
            ca = LocalCA.init(workdir / "ca", intermediate=True, key_type="ecdsa")
            key_pem, signed = ca.issue(DEMO_USER, key_type="ecdsa")
            write_private_file(workdir / "operator.key", key_pem)
            write_public_file(workdir / "operator.pem", signed.certificate_pem + signed.chain_pem)
            out.append(f"{ca.info().root_subject}; operator certificate CN={DEMO_USER}")

        server_csr = CsrParams(common_name="localhost", ip_address="127.0.0.1")
        with narrator.step(
            f"install '{SERVER_CERT_ID}' (target-generated CSR) with the first CA bundle"
        ) as out:
            async with await CertClient.connect(factory) as client:
                installed = await client.install(
                    InstallSpec(
                        certificate_id=SERVER_CERT_ID,
                        csr=server_csr,
                        signer=ca,
                        ca_bundle_pem=ca.bundle_pem,
                        require_san=True,
                    )
                )
            out.append(f"key made by the {installed.key_source}, sha256 {installed.fingerprint}")

        mutual = ChannelOptions(
            target=address,
            root_certificates=factory_pem + ca.root_pem,
            client_certificate=signed.certificate_pem + signed.chain_pem,
            client_key=key_pem,
            username=DEMO_USER,
            password=password,
            timeout=timeout,
        )
        with narrator.step("the daemon switches to mutual TLS") as out:

            async def answers_mutual() -> bool | None:
                async with await CertClient.connect(mutual, fresh=True) as client:
                    await client.time()
                return True

            await _until("mutual TLS", answers_mutual, timeout)
            out.append("a client certificate from the bundle is accepted")
            try:
                async with await CertClient.connect(factory, fresh=True) as client:
                    await client.time()
                out.append("a client without a certificate was accepted (unexpected)")
            except RpcFailed as exc:
                out.append(f"a client without a certificate is refused ({exc.code.name})")

        with narrator.step(f"configure local_certificate = '{SERVER_CERT_ID}' and reload") as out:
            set_local_certificate(config, SERVER_CERT_ID)
            daemon.reload()

            async def serves_installed() -> bool | None:
                served = await asyncio.to_thread(_served_fingerprint, mutual)
                return True if served == installed.fingerprint else None

            await _until("the new server certificate", serves_installed, timeout)
            out.append(f"new connections get {installed.fingerprint}")

        server = mutual.trusting(ca.root_pem)
        with narrator.step(f"rotate '{SERVER_CERT_ID}' with validation before Finalize") as out:
            async with await CertClient.connect(server, fresh=True) as client:
                rotated = await client.rotate(
                    RotateSpec(certificate_id=SERVER_CERT_ID, csr=server_csr, signer=ca)
                )
            for check in rotated.validation:
                out.append(f"{check.name}: {check.status} ({check.detail})")
            out.append(f"finalized: now serving {rotated.fingerprint}")

        with narrator.step(f"install '{PEER_CERT_ID}' with a client-made ECDSA key, list") as out:
            async with await CertClient.connect(server, fresh=True) as client:
                peer = await client.install(
                    InstallSpec(
                        certificate_id=PEER_CERT_ID,
                        csr=CsrParams(common_name="peer.example.net", key_type="ecdsa"),
                        signer=ca,
                    )
                )
                out.append(f"key made by the {peer.key_source}")
                out.extend(_table(await client.get_certificates()))

        with narrator.step(f"revoke '{PEER_CERT_ID}'") as out:
            async with await CertClient.connect(server, fresh=True) as client:
                revoked = await client.revoke([PEER_CERT_ID])
                remaining = [c.certificate_id for c in await client.get_certificates()]
            out.append(f"revoked: {', '.join(revoked.revoked)}; left: {', '.join(remaining)}")

        with narrator.step("audit log tail") as out:
            out.extend(audit_tail(workdir / "audit.log"))
    finally:
        with narrator.step("stop gnoicertd") as out:
            code = daemon.stop()
            out.append(f"exit status {code}")


def _print_log_tail(path: Path, count: int = 15) -> None:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[-count:]
    except OSError:
        return
    print(f"gnoicert demo: the last lines of {path}:", file=sys.stderr)
    for line in lines:
        print(f"  {line}", file=sys.stderr)


def run_demo(
    *,
    workdir: Path | None = None,
    daemon_command: str | None = None,
    narrate: Callable[[str], None] | None = None,
    timeout: float = 10.0,
) -> DemoResult:
    """Run the demo; `narrate` gets one line per step and detail (None: silent)."""
    command = find_daemon_command(daemon_command)
    narrator = _Narrator(narrate, total=11)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if workdir is None:
            directory = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="gnoicert-demo-"))
            )
        else:
            workdir.mkdir(parents=True, exist_ok=True)
            directory = workdir
        directory.chmod(0o700)
        try:
            asyncio.run(_lifecycle(directory, command, narrator, timeout))
        except BaseException:
            # The work directory may be about to vanish: keep what the daemon said.
            _print_log_tail(directory / "gnoicertd.log")
            raise
    elapsed = time.monotonic() - started
    return DemoResult(
        steps=tuple(narrator.steps),
        ok=True,
        elapsed_s=elapsed,
        workdir=str(workdir) if workdir is not None else None,
    )
