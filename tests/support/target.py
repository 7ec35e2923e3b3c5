"""Real gnoicertd targets for tests: in-process (same event loop) or as a subprocess.

Everything listens on 127.0.0.1 with an ephemeral port and real TLS; state lives in a pytest
temporary directory.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from gnoicert.daemon.auth import hash_password
from gnoicert.daemon.config import load_config
from gnoicert.daemon.server import Daemon
from gnoicert.proto import cert_pb2_grpc, system_pb2_grpc

PASSWORDS = {"admin": "admin-password", "reader": "reader-password"}
ROLES = {"admin": "admin", "reader": "read-only"}


@functools.cache
def password_hash(user: str) -> str:
    return hash_password(PASSWORDS[user])


def write_config(
    directory: Path,
    *,
    users: Sequence[str] = ("admin", "reader"),
    grpc_lines: Sequence[str] = (),
    top_lines: Sequence[str] = (),
    port: int = 0,
) -> Path:
    """A gnoicertd.toml in directory, state and audit log beside it."""
    lines = [
        f'state_dir = "{directory / "state"}"',
        f'audit_log = "{directory / "audit.jsonl"}"',
        *top_lines,
        "[grpc]",
        f'listen = "127.0.0.1:{port}"',
        *grpc_lines,
    ]
    for user in users:
        lines += [
            "[[users]]",
            f'name = "{user}"',
            f'password_hash = "{password_hash(user)}"',
            f'role = "{ROLES[user]}"',
        ]
    path = directory / "gnoicertd.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def credentials(user: str | None = "admin") -> tuple[tuple[str, str], ...]:
    if user is None:
        return ()
    return (("username", user), ("password", PASSWORDS[user]))


def served_certificate_der(address: str) -> bytes:
    """The certificate the listener presents on a brand-new handshake."""
    host, port = address.rsplit(":", 1)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, int(port)), timeout=5) as sock,
        context.wrap_socket(sock) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def served_fingerprint(address: str) -> str:
    return hashlib.sha256(served_certificate_der(address)).hexdigest()


def secure_channel(
    address: str,
    root_pem: bytes,
    *,
    client_chain_pem: bytes | None = None,
    client_key_pem: bytes | None = None,
    server_name: str | None = None,
) -> grpc.aio.Channel:
    """A fresh connection (own subchannel pool) trusting root_pem."""
    creds = grpc.ssl_channel_credentials(
        root_certificates=root_pem,
        private_key=client_key_pem,
        certificate_chain=client_chain_pem,
    )
    options: list[tuple[str, Any]] = [("grpc.use_local_subchannel_pool", 1)]
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return grpc.aio.secure_channel(address, creds, options=options)


@dataclass
class Target:
    """An in-process gnoicertd on the test's event loop."""

    daemon: Daemon
    directory: Path
    config_path: Path
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.daemon.port}"

    @property
    def audit_path(self) -> Path:
        return self.directory / "audit.jsonl"

    @property
    def factory_pem(self) -> bytes:
        creds = self.daemon.store.factory_credentials()
        assert creds is not None
        return creds[0]

    def channel(self, root_pem: bytes | None = None, **kwargs: Any) -> grpc.aio.Channel:
        channel = secure_channel(self.address, root_pem or self.factory_pem, **kwargs)
        self.channels.append(channel)
        return channel

    def cert_stub(self, channel: grpc.aio.Channel | None = None) -> Any:
        return cert_pb2_grpc.CertificateManagementStub(channel or self.channel())

    def system_stub(self, channel: grpc.aio.Channel | None = None) -> Any:
        return system_pb2_grpc.SystemStub(channel or self.channel())

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()
        await self.daemon.stop(grace=0)


async def start_target(
    directory: Path,
    *,
    users: Sequence[str] = ("admin", "reader"),
    grpc_lines: Sequence[str] = (),
    top_lines: Sequence[str] = (),
    insecure: bool = False,
) -> Target:
    config_path = write_config(directory, users=users, grpc_lines=grpc_lines, top_lines=top_lines)
    daemon = Daemon(load_config(config_path), insecure=insecure)
    await daemon.start()
    return Target(daemon=daemon, directory=directory, config_path=config_path)


async def wait_for(
    condition: Callable[[], bool], *, timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll condition until true (no fixed sleeps in tests).

    The condition runs in a worker thread: some block (a TLS probe of an in-process target),
    and the target they probe needs this event loop to make progress meanwhile.
    """
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class TargetProcess:
    """gnoicertd as a real subprocess (crash and signal tests)."""

    process: subprocess.Popen[bytes]
    directory: Path
    config_path: Path
    address: str
    metrics_address: str = ""  # with [metrics]: host:port of /metrics

    @property
    def audit_path(self) -> Path:
        return self.directory / "audit.jsonl"

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 20) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def stderr_text(self) -> str:
        log = self.directory / "gnoicertd.log"
        return log.read_text() if log.exists() else ""


def spawn_target(
    config_path: Path,
    *,
    timeout: float = 30.0,
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    verbose: bool = False,
) -> TargetProcess:
    directory = config_path.parent
    ready = directory / "ready"
    ready.unlink(missing_ok=True)
    log = (directory / "gnoicertd.log").open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gnoicert.daemon.main",
            *(["--verbose"] if verbose else []),
            "serve",
            "--config",
            str(config_path),
            "--ready-file",
            str(ready),
            *extra,
        ],
        stdout=log,
        stderr=log,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    log.close()  # the child has its own descriptor
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if process.poll() is not None:
            raise AssertionError(
                f"gnoicertd exited with {process.returncode}:\n"
                + (directory / "gnoicertd.log").read_text()
            )
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("gnoicertd did not become ready")
        time.sleep(0.01)
    lines = ready.read_text().splitlines()
    metrics = next((line.split(" ", 1)[1] for line in lines if line.startswith("metrics ")), "")
    return TargetProcess(process, directory, config_path, lines[0], metrics)
