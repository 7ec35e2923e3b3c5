"""Which certificate does the target present on a *new* connection? (grpcio cannot say.)

A plain TLS handshake with Python's ssl module, set up the way a gRPC client connects (ALPN h2,
the same SNI and name check, the same client certificate for mutual TLS), then the peer's DER
certificate. Blocking: call it through asyncio.to_thread.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

_ALPN = ["h2"]


def fetch_served_certificate(
    host: str,
    port: int,
    *,
    server_name: str | None = None,
    trust_pem: bytes | None = None,
    verify: bool = True,
    client_certificate: bytes | None = None,
    client_key: bytes | None = None,
    timeout: float = 10.0,
) -> bytes:
    """The DER certificate the server at host:port presents to a new TLS connection.

    With `verify`, the handshake checks the chain against `trust_pem` (the system store when
    None) and the name against `server_name` (else `host`), and raises ssl.SSLCertVerificationError
    when either fails. Without it nothing is checked: use that only to show what is served, or to
    bootstrap trust on loopback. Connection problems raise OSError.
    """
    context = _context(trust_pem, verify)
    with _client_identity(client_certificate, client_key) as identity:
        if identity is not None:
            context.load_cert_chain(certfile=identity[0], keyfile=identity[1])
    name = server_name or host
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("the server presented no certificate")
    return der


def _context(trust_pem: bytes | None, verify: bool) -> ssl.SSLContext:
    # With cadata, only those CAs are trusted: the question is whether the *new* chain is served.
    cadata = trust_pem.decode("ascii", errors="replace") if trust_pem is not None else None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=cadata if verify else None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(_ALPN)
    return context


@contextlib.contextmanager
def _client_identity(
    certificate: bytes | None, key: bytes | None
) -> Iterator[tuple[str, str] | None]:
    """The client certificate and key as files (ssl loads them only from paths), 0600, then gone."""
    if certificate is None or key is None:
        yield None
        return
    import tempfile  # here, not at module level: it costs every `gnoicert` start-up (issue 13)

    with tempfile.TemporaryDirectory(prefix="gnoicert-") as directory:
        cert_path = Path(directory) / "client.pem"
        key_path = Path(directory) / "client.key"
        cert_path.write_bytes(certificate)
        descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(key)
        yield str(cert_path), str(key_path)
