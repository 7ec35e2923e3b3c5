"""The signer interface, and a signer that runs a site's own CA tooling as a command.

A signer turns a CSR into a certificate. The local file CA (ca.py) is one; any object with a
`sign(csr_pem) -> SignedCertificate` method is another. Signing is blocking: the workflows call
it through asyncio.to_thread.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from cryptography import x509

from gnoicert.client.errors import SignerError
from gnoicert.client.models import SignedCertificate
from gnoicert.pki.crypto import certificates_to_pem

DEFAULT_SIGNER_TIMEOUT_S = 60.0
_STDERR_TAIL = 400


@runtime_checkable
class Signer(Protocol):
    """Signs a PEM CSR; returns the certificate and the CA chain above it."""

    def sign(self, csr_pem: bytes) -> SignedCertificate: ...


class ExternalCommandSigner:
    """Runs `command` with the CSR (PEM) on stdin; reads PEM certificates from stdout.

    The first certificate printed is the leaf, any others are its chain. A non-zero exit, a
    timeout, or output without a certificate raise SignerError (with the end of stderr).
    """

    def __init__(
        self, command: Sequence[str] | str, *, timeout: float = DEFAULT_SIGNER_TIMEOUT_S
    ) -> None:
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        if not argv:
            raise SignerError("the signer command is empty")
        self.command: tuple[str, ...] = tuple(argv)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ExternalCommandSigner({shlex.join(self.command)!r})"

    def sign(self, csr_pem: bytes) -> SignedCertificate:
        shown = shlex.join(self.command)
        try:
            completed = subprocess.run(
                self.command,
                input=csr_pem,
                capture_output=True,
                timeout=self.timeout,
                check=False,
            )
        except FileNotFoundError:
            raise SignerError(f"signer command not found: {self.command[0]}") from None
        except PermissionError:
            raise SignerError(f"signer command is not executable: {self.command[0]}") from None
        except subprocess.TimeoutExpired:
            raise SignerError(
                f"signer command {shown!r} did not finish within {self.timeout:g} s"
            ) from None
        stderr = completed.stderr.decode("utf-8", errors="replace").strip()
        tail = f": {stderr[-_STDERR_TAIL:]}" if stderr else ""
        if completed.returncode != 0:
            raise SignerError(
                f"signer command {shown!r} exited with status {completed.returncode}{tail}"
            )
        try:
            certificates = x509.load_pem_x509_certificates(completed.stdout)
        except ValueError:
            certificates = []
        if not certificates:
            raise SignerError(f"signer command {shown!r} printed no PEM certificate{tail}")
        return SignedCertificate(
            certificate_pem=certificates_to_pem(certificates[:1]),
            chain_pem=certificates_to_pem(certificates[1:]),
        )
