"""Helpers for tests that run gnoicertd as a real process: the command line, clients of a
subprocess target, and the files it leaves behind."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import grpc

from tests.support.pki import TestCA
from tests.support.target import secure_channel, served_certificate_der, served_fingerprint

GNOICERTD = Path(sys.executable).with_name("gnoicertd")


def run_gnoicertd(
    *args: str, stdin: str = "", timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """The installed console script, as an operator runs it."""
    return subprocess.run(
        [str(GNOICERTD), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def probe_fingerprint(address: str) -> str | None:
    """The served fingerprint, or None while no listener answers (a listener being replaced)."""
    try:
        return served_fingerprint(address)
    except OSError:
        return None


def served_pem(address: str) -> bytes:
    """The certificate the target serves now, to pin as the root (trust on first use)."""
    return ssl.DER_cert_to_PEM_cert(served_certificate_der(address)).encode()


class Clients:
    """Channels to one address, all closed on exit (async context manager)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._channels: list[grpc.aio.Channel] = []

    def server_only(self, root_pem: bytes | None = None) -> grpc.aio.Channel:
        """A new connection without a client certificate (pins the served one by default)."""
        return self._keep(secure_channel(self.address, root_pem or served_pem(self.address)))

    def mutual(self, ca: TestCA, root_pem: bytes | None = None) -> grpc.aio.Channel:
        """A new connection with a client certificate from ca (the CA verifies the server)."""
        chain, key = ca.client_credentials()
        return self._keep(
            secure_channel(
                self.address,
                root_pem or ca.bundle_pem,
                client_chain_pem=chain,
                client_key_pem=key,
            )
        )

    def insecure(self) -> grpc.aio.Channel:
        return self._keep(grpc.aio.insecure_channel(self.address))

    def _keep(self, channel: grpc.aio.Channel) -> grpc.aio.Channel:
        self._channels.append(channel)
        return channel

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
        self._channels.clear()

    async def __aenter__(self) -> Clients:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def private_keys_on_disk(state_dir: Path) -> dict[Path, bytes]:
    """Every file under state_dir holding a private key, with the key PEM it holds."""
    found: dict[Path, bytes] = {}
    for path in sorted(state_dir.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        if path.suffix == ".json" and path.parent.name == "pending":
            data = str(json.loads(data)["key_pem"]).encode()
        if b"PRIVATE KEY" in data:
            found[path] = data
    return found


def text_of(paths: Sequence[Path]) -> str:
    return "\n".join(p.read_text(errors="replace") for p in paths if p.exists())
