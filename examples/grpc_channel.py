"""Secure gRPC channels from PEM files, with the interface Junos example scripts import.

An operator who already has scripts written against Junos's documentation imports
`grpc_authenticate_channel_mutual` or `grpc_authenticate_channel_server_only` from a module
named `grpc_channel`; this one gives them the same names and arguments, so those scripts (and
the applications next to this file) run against any gNOI target:

    from grpc_channel import grpc_authenticate_channel_mutual

    channel = grpc_authenticate_channel_mutual(
        server="192.0.2.1", port=9339, root_ca_cert="ca.pem",
        client_key="client.key", client_cert="client.pem",
    )

A missing or unreadable file raises FileNotFoundError naming the argument, before any
connection is attempted. Credentials (username/password) are not part of the channel: they go
as gRPC metadata on each call (docs/behaviour.md §9). The channel is grpcio's plain
synchronous one; nothing here imports gnoicert.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc

__all__ = ["grpc_authenticate_channel_mutual", "grpc_authenticate_channel_server_only"]

ChannelArgument = tuple[str, str | int]


def _read(path: str, argument: str) -> bytes:
    """The file's bytes; a clear error for an empty path or a file that cannot be read."""
    if not path:
        raise FileNotFoundError(f"{argument}: no file given")
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise FileNotFoundError(f"{argument}: cannot read {path}: {exc.strerror or exc}") from None


def _address(server: str, port: int | str) -> str:
    host = f"[{server}]" if ":" in server and not server.startswith("[") else server
    return f"{host}:{int(port)}"


def grpc_authenticate_channel_mutual(
    server: str,
    port: int | str,
    root_ca_cert: str = "",
    client_key: str = "",
    client_cert: str = "",
    *,
    options: Sequence[ChannelArgument] = (),
) -> grpc.Channel:
    """A mutual-TLS channel: the server must chain to root_ca_cert, and this client shows
    client_cert (with client_key). `options` are extra grpc channel arguments (an extension:
    Junos's callers never pass it)."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(root_ca_cert, "root_ca_cert"),
        private_key=_read(client_key, "client_key"),
        certificate_chain=_read(client_cert, "client_cert"),
    )
    return grpc.secure_channel(_address(server, port), credentials, options=list(options))


def grpc_authenticate_channel_server_only(
    server: str,
    port: int | str,
    root_ca_cert: str = "",
    *,
    options: Sequence[ChannelArgument] = (),
) -> grpc.Channel:
    """A TLS channel that authenticates the server only (it must chain to root_ca_cert): what
    a target with no CA bundle yet accepts (docs/behaviour.md §1)."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(root_ca_cert, "root_ca_cert")
    )
    return grpc.secure_channel(_address(server, port), credentials, options=list(options))
