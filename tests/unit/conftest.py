"""Material for the client unit tests: real keys, real CAs, and a bare TLS gRPC server.

The "bare" server is a grpc.aio server with TLS and no service registered: a device that
implements nothing. It is what the client must handle gracefully (UNIMPLEMENTED for every RPC),
and a real TLS endpoint for the handshake, name and trust checks. No gnoicertd is involved.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gnoicert.client.ca import LocalCA
from gnoicert.client.channel import ChannelOptions
from gnoicert.pki.crypto import PrivateKey, certificates_to_pem, fingerprint, private_key_to_pem

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_cert(
    key: PrivateKey,
    *,
    issuer: tuple[x509.Certificate, PrivateKey] | None = None,
    common_name: str = "leaf",
    sans: Sequence[str] = (),
    ca: bool = False,
    eku: Sequence[x509.ObjectIdentifier] | None = (
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ),
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> x509.Certificate:
    """A certificate with exactly the properties a test needs (self-signed without issuer)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - DAY)
        .not_valid_after(not_after or NOW + 30 * DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if eku is not None and not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    names: list[x509.GeneralName] = []
    for san in sans:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            names.append(x509.DNSName(san))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


@pytest.fixture(scope="session")
def root_ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    """A root-only RSA local CA."""
    return LocalCA.init(tmp_path_factory.mktemp("root-ca") / "ca", key_type="rsa")


@pytest.fixture(scope="session")
def chained_ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    """An ECDSA local CA issuing through an intermediate."""
    return LocalCA.init(
        tmp_path_factory.mktemp("chained-ca") / "ca", intermediate=True, key_type="ecdsa"
    )


@pytest.fixture(scope="session")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    """A CA nothing here trusts."""
    return LocalCA.init(tmp_path_factory.mktemp("other-ca") / "ca", key_type="ecdsa")


@dataclass(frozen=True)
class Identity:
    key_pem: bytes
    chain_pem: bytes
    fingerprint: str


def issue(ca: LocalCA, common_name: str, sans: Sequence[str] = ()) -> Identity:
    dns = [s for s in sans if not _is_ip(s)]
    ips = [s for s in sans if _is_ip(s)]
    key_pem, signed = ca.issue(common_name, dns_names=dns, ip_addresses=ips)
    leaf = x509.load_pem_x509_certificate(signed.certificate_pem)
    return Identity(
        key_pem=key_pem,
        chain_pem=signed.certificate_pem + signed.chain_pem,
        fingerprint=fingerprint(leaf),
    )


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@pytest.fixture(scope="session")
def server_identity(root_ca: LocalCA) -> Identity:
    """The bare server's certificate: localhost and 127.0.0.1, issued by root_ca."""
    return issue(root_ca, "bare-server", ["localhost", "127.0.0.1"])


@pytest.fixture(scope="session")
def client_identity(root_ca: LocalCA) -> Identity:
    """A client certificate from root_ca (for the mutual-TLS server)."""
    return issue(root_ca, "operator")


@dataclass(frozen=True)
class BareServer:
    address: str
    port: int
    identity: Identity


async def _start(
    identity: Identity, *, client_ca: bytes | None = None
) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    credentials = grpc.ssl_server_credentials(
        [(identity.key_pem, identity.chain_pem)],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, port


@pytest.fixture
async def bare_server(server_identity: Identity) -> AsyncIterator[BareServer]:
    """Server-only TLS, no services."""
    server, port = await _start(server_identity)
    yield BareServer(address=f"127.0.0.1:{port}", port=port, identity=server_identity)
    await server.stop(None)


@pytest.fixture
async def mtls_server(server_identity: Identity, root_ca: LocalCA) -> AsyncIterator[BareServer]:
    """Mutual TLS requiring a client certificate from root_ca, no services."""
    server, port = await _start(server_identity, client_ca=root_ca.root_pem)
    yield BareServer(address=f"127.0.0.1:{port}", port=port, identity=server_identity)
    await server.stop(None)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def options_for(server: BareServer, ca: LocalCA, **overrides: object) -> ChannelOptions:
    """Options that trust `ca` for the server, plus overrides (timeout short: loopback)."""
    values: dict[str, object] = {
        "target": server.address,
        "root_certificates": ca.root_pem,
        "timeout": 5.0,
    }
    values.update(overrides)
    return ChannelOptions(**values)  # type: ignore[arg-type]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def pem(*certificates: x509.Certificate) -> bytes:
    return certificates_to_pem(certificates)


def key_pem(key: PrivateKey) -> bytes:
    return private_key_to_pem(key)
