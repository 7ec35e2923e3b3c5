"""Secure channels to a target: TLS or mutual TLS, server-name override, credentials metadata.

One frozen `ChannelOptions` holds everything needed to reach a target; `open_channel` turns it
into a grpc.aio channel. Devices are dialled by IP, so the name the certificate is checked
against can be overridden (`server_name`); plaintext happens only with `insecure=True`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import grpc
import grpc.aio
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from gnoicert.client.certinfo import subject_text
from gnoicert.client.errors import InputError
from gnoicert.client.rpclog import UnaryTimer
from gnoicert.common.address import format_host_port, parse_host_port
from gnoicert.common.constants import DEFAULT_PORT, DEFAULT_TIMEOUT_S

DEFAULT_STREAM_TIMEOUT_S = 600.0
# gRPC servers refuse pings more often than every 5 minutes by default (GOAWAY too_many_pings):
# a shorter default would break long Rotate streams against stock servers.
DEFAULT_KEEPALIVE_S = 300.0
DEFAULT_KEEPALIVE_TIMEOUT_S = 20.0
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

Metadata = tuple[tuple[str, str], ...]


class ChannelSettings(Protocol):
    """Connection settings as the CLI's flags and the fleet inventory both name them: the PEM
    files by path (read by ChannelOptions.from_settings)."""

    @property
    def ca_file(self) -> str | Path | None: ...
    @property
    def cert(self) -> str | Path | None: ...
    @property
    def key(self) -> str | Path | None: ...
    @property
    def server_name(self) -> str | None: ...
    @property
    def username(self) -> str | None: ...
    @property
    def timeout(self) -> float: ...
    @property
    def insecure(self) -> bool: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelOptions:
    """How to reach and authenticate to one target.

    `root_certificates` is the PEM the server must chain to (None: the system store);
    `client_certificate` and `client_key` (PEM, both or neither) enable mutual TLS; `username`
    and `password` go as gRPC metadata on every call. Secrets are kept out of the repr.
    """

    target: str
    root_certificates: bytes | None = field(default=None, repr=False)
    client_certificate: bytes | None = field(default=None, repr=False)
    client_key: bytes | None = field(default=None, repr=False)
    server_name: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT_S
    stream_timeout: float = DEFAULT_STREAM_TIMEOUT_S
    keepalive_s: float = DEFAULT_KEEPALIVE_S
    insecure: bool = False

    def __post_init__(self) -> None:
        parse_target(self.target)
        if (self.client_certificate is None) != (self.client_key is None):
            # grpcio aborts the whole process on a certificate chain without its key.
            raise InputError("mutual TLS needs both a client certificate and its key")
        if self.timeout <= 0 or self.stream_timeout <= 0:
            raise InputError("timeouts must be positive")
        if self.keepalive_s < 0:
            raise InputError("keepalive must be zero (off) or positive")
        if self.insecure and self.client_certificate is not None:
            raise InputError(
                "a client certificate needs TLS; it cannot be used with insecure=True",
                field="insecure",
                check="tls-required",
            )
        if self.root_certificates is not None:
            check_root_certificates(self.root_certificates)
        if self.client_certificate is not None and self.client_key is not None:
            check_client_identity(self.client_certificate, self.client_key)

    @classmethod
    def from_files(
        cls,
        target: str,
        *,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        server_name: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        stream_timeout: float = DEFAULT_STREAM_TIMEOUT_S,
        keepalive_s: float = DEFAULT_KEEPALIVE_S,
        insecure: bool = False,
    ) -> ChannelOptions:
        """Options with the TLS material read from PEM files (read once, here)."""
        return cls(
            target=target,
            root_certificates=read_pem_file(ca_file, "CA file", field="ca_file")
            if ca_file
            else None,
            client_certificate=read_pem_file(cert_file, "client certificate", field="cert_file")
            if cert_file
            else None,
            client_key=read_pem_file(key_file, "client key", field="key_file")
            if key_file
            else None,
            server_name=server_name or None,
            username=username or None,
            password=password,
            timeout=timeout,
            stream_timeout=stream_timeout,
            keepalive_s=keepalive_s,
            insecure=insecure,
        )

    @classmethod
    def from_settings(
        cls, target: str, settings: ChannelSettings, *, password: str | None
    ) -> ChannelOptions:
        """from_files with the settings the CLI and the fleet inventory share."""
        return cls.from_files(
            target,
            ca_file=settings.ca_file,
            cert_file=settings.cert,
            key_file=settings.key,
            server_name=settings.server_name,
            username=settings.username,
            password=password,
            timeout=settings.timeout,
            insecure=settings.insecure,
        )

    @property
    def host(self) -> str:
        return parse_target(self.target)[0]

    @property
    def port(self) -> int:
        return parse_target(self.target)[1]

    @property
    def address(self) -> str:
        """host:port as gRPC dials it (IPv6 in brackets)."""
        return format_host_port(self.host, self.port)

    @property
    def verify_name(self) -> str:
        """The name the server certificate must carry: the override, else the dialled host."""
        return self.server_name or self.host

    def metadata(self) -> Metadata:
        """The credentials metadata sent with every call (empty without a username)."""
        if not self.username:
            return ()
        return (("username", self.username), ("password", self.password or ""))

    def trusting(self, root_certificates: bytes | None) -> ChannelOptions:
        """The same options, trusting another CA set (the rotate validation step)."""
        return replace(self, root_certificates=root_certificates)

    def served_certificate(self, *, verify: bool) -> bytes:
        """DER of the certificate a new TLS connection with these options gets (blocking).

        `verify=False` checks nothing: only to show what is served (see tlsprobe).
        """
        from gnoicert.client.tlsprobe import fetch_served_certificate

        return fetch_served_certificate(
            self.host,
            self.port,
            server_name=self.server_name,
            trust_pem=self.root_certificates,
            verify=verify,
            client_certificate=self.client_certificate,
            client_key=self.client_key,
            timeout=self.timeout,
        )


def check_root_certificates(root_pem: bytes) -> None:
    """Raise InputError unless the trusted CAs parse (grpcio would say "Failed to create
    security handshaker" at connect time)."""
    try:
        x509.load_pem_x509_certificates(root_pem)
    except ValueError:
        raise InputError(
            "the CA file holds no usable PEM certificate",
            field="root_certificates",
            check="no-pem-certificate",
        ) from None


def check_client_identity(certificate_pem: bytes, key_pem: bytes) -> None:
    """Raise InputError unless the key belongs to the first certificate of the chain.

    grpcio only says "Failed to create security handshaker" when it dials with a pair it
    cannot use, which reads like a network problem.
    """
    try:
        leaf = x509.load_pem_x509_certificates(certificate_pem)[0]
    except ValueError:
        raise InputError(
            "the client certificate holds no usable PEM certificate",
            field="client_certificate",
            check="no-pem-certificate",
        ) from None
    try:
        # Only the public half is compared; grpcio checks the key itself when it loads it.
        key = serialization.load_pem_private_key(
            key_pem, password=None, unsafe_skip_rsa_key_validation=True
        )
    except TypeError:
        raise InputError(
            "the client key is encrypted; gRPC needs an unencrypted PEM key",
            field="client_key",
            check="encrypted-key",
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise InputError(
            "the client key is not a usable PEM private key", field="client_key", check="not-a-key"
        ) from None
    if key.public_key() != leaf.public_key():
        subject = subject_text(leaf)
        raise InputError(
            f"the client key is not the key of the client certificate, {subject}",
            field="client_key",
            check="key-mismatch",
            detail=subject,
        )


def parse_target(target: str) -> tuple[str, int]:
    """(host, port) from "host:port", "[v6]:port", "host" or a bare IPv6 address."""
    text = target.strip()
    if not text:
        raise InputError("no target given (HOST:PORT)", field="target", check="missing")
    try:
        return parse_host_port(text, default_port=DEFAULT_PORT)
    except ValueError as exc:
        raise InputError(
            f"bad target {target!r}: {exc}", field="target", check="bad-address", detail=str(exc)
        ) from None


def read_pem_file(path: str | Path, what: str, *, field: str = "") -> bytes:
    """Read a PEM file, with an InputError a person understands when it is missing or empty."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(
            f"cannot read the {what} {path}: {exc.strerror or exc}",
            field=field,
            check="unreadable",
            path=str(path),
        ) from None
    if b"-----BEGIN" not in data:
        raise InputError(
            f"the {what} {path} holds no PEM data", field=field, check="no-pem", path=str(path)
        )
    return data


def channel_arguments(
    options: ChannelOptions, *, fresh: bool = False
) -> list[tuple[str, str | int]]:
    """The grpc channel arguments for these options.

    `fresh` gives the channel a private subchannel pool and a unique argument, so grpcio cannot
    hand it an existing connection: the rotate validation step must make a *new* TLS handshake.
    """
    args: list[tuple[str, str | int]] = [
        ("grpc.max_send_message_length", DEFAULT_MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", DEFAULT_MAX_MESSAGE_BYTES),
        ("grpc.primary_user_agent", "gnoicert"),
    ]
    if options.keepalive_s > 0:
        args += [
            ("grpc.keepalive_time_ms", int(options.keepalive_s * 1000)),
            ("grpc.keepalive_timeout_ms", int(DEFAULT_KEEPALIVE_TIMEOUT_S * 1000)),
        ]
    if options.server_name and not options.insecure:
        args += [
            ("grpc.ssl_target_name_override", options.server_name),
            ("grpc.default_authority", options.server_name),
        ]
    if fresh:
        args += [
            ("grpc.use_local_subchannel_pool", 1),
            ("gnoicert.channel_nonce", os.urandom(16).hex()),
        ]
    return args


def open_channel(options: ChannelOptions, *, fresh: bool = False) -> grpc.aio.Channel:
    """A grpc.aio channel for these options (call from inside the event loop that will use it)."""
    args = channel_arguments(options, fresh=fresh)
    timers = [UnaryTimer()]  # -vv: every unary RPC with its time (client/rpclog.py)
    if options.insecure:
        return grpc.aio.insecure_channel(options.address, options=args, interceptors=timers)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=options.root_certificates,
        private_key=options.client_key,
        certificate_chain=options.client_certificate,
    )
    return grpc.aio.secure_channel(options.address, credentials, options=args, interceptors=timers)
