"""Real grpcio handshakes against a bundle: the TLS stack's own verdict on a chain.

Two grpc.aio servers on 127.0.0.1, each with dynamic credentials fetched per handshake, so
one server serves every variant: `caller_accepted` asks the server requiring client
certificates (roots: the bundle) to accept a client chain; `server_accepted` asks a client
whose roots are the bundle to accept the server's chain.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

SERVER_NAME = "server.test"
_METHOD = "/differential.Probe/Ping"


def pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass
class _Current:
    config: grpc.ServerCertificateConfiguration


@dataclass
class TlsJudge:
    """The two servers and the fixed material of the side not under test."""

    caller_port: int
    server_port: int
    anchor_pem: bytes  # the root the fixed server certificate chains to
    fixed_key_pem: bytes
    fixed_chain_pem: bytes
    _caller_side: _Current
    _server_side: _Current

    async def caller_accepted(
        self, bundle: bytes, key: ec.EllipticCurvePrivateKey, chain: bytes
    ) -> bool:
        """Does a server whose client CAs are `bundle` accept a client presenting `chain`?"""
        self._caller_side.config = grpc.ssl_server_certificate_configuration(
            [(self.fixed_key_pem, self.fixed_chain_pem)], root_certificates=bundle
        )
        credentials = grpc.ssl_channel_credentials(self.anchor_pem, key_pem(key), chain)
        return await _ping(self.caller_port, credentials)

    async def server_accepted(
        self, bundle: bytes, key: ec.EllipticCurvePrivateKey, chain: bytes
    ) -> bool:
        """Does a client whose roots are `bundle` accept a server presenting `chain`?"""
        self._server_side.config = grpc.ssl_server_certificate_configuration(
            [(key_pem(key), chain)]
        )
        return await _ping(self.server_port, grpc.ssl_channel_credentials(bundle))


async def _ping(port: int, credentials: grpc.ChannelCredentials) -> bool:
    options = [
        ("grpc.ssl_target_name_override", SERVER_NAME),
        ("grpc.use_local_subchannel_pool", 1),
    ]
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials, options) as channel:
        try:
            ping = channel.unary_unary(
                _METHOD, request_serializer=_identity, response_deserializer=_identity
            )
            await ping(b"", timeout=10)
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.UNAVAILABLE:
                return False
            raise
    return True


def _identity(data: bytes) -> bytes:
    return data


def _fetcher(current: _Current) -> Callable[[], grpc.ServerCertificateConfiguration]:
    return lambda: current.config


async def _pong(_request: bytes, _context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return b""


def _fixed_material() -> tuple[bytes, bytes, bytes]:
    """A root and a server certificate for the side that is not under test."""
    now = dt.datetime.now(dt.UTC)
    root_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Judge Root")])
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)]))
        .issuer_name(root_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SERVER_NAME)]), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    return pem(root), key_pem(key), pem(leaf)


@asynccontextmanager
async def tls_judge() -> AsyncIterator[TlsJudge]:
    anchor, fixed_key, fixed_chain = _fixed_material()
    servers: list[grpc.aio.Server] = []
    ports: list[int] = []
    initial = grpc.ssl_server_certificate_configuration(
        [(fixed_key, fixed_chain)], root_certificates=anchor
    )
    caller_side, server_side = _Current(initial), _Current(initial)
    for current, require in ((caller_side, True), (server_side, False)):
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    "differential.Probe", {"Ping": grpc.unary_unary_rpc_method_handler(_pong)}
                )
            ]
        )
        credentials = grpc.dynamic_ssl_server_credentials(initial, _fetcher(current), require)
        ports.append(server.add_secure_port("127.0.0.1:0", credentials))
        await server.start()
        servers.append(server)
    try:
        yield TlsJudge(ports[0], ports[1], anchor, fixed_key, fixed_chain, caller_side, server_side)
    finally:
        for server in servers:
            await server.stop(None)
