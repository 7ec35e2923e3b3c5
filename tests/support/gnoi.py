"""Raw grpcio building blocks for driving a target's CertificateManagement service in tests.

Messages are built by hand (no client library in between), the way the common clients of
docs/behaviour.md §9 put them on the wire. `Launcher.provision` gives a target in its usual
working state: a server certificate `srv` issued by the test CA, that CA as the gnoi-ca-bundle,
and so mutual TLS with an operator client certificate plus username/password metadata.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gnoicert.daemon.audit import read_records
from gnoicert.daemon.config import load_config
from gnoicert.daemon.policy import TlsMode
from gnoicert.daemon.server import Daemon
from gnoicert.pki.store import Store
from gnoicert.proto import cert_pb2, cert_pb2_grpc, system_pb2, system_pb2_grpc
from tests.support.pki import PrivateKey, TestCA, cert_pem, ec_key, key_pem
from tests.support.target import Target, credentials, start_target, wait_for

ADMIN = credentials("admin")
READER = credentials("reader")
SERVER_ID = "srv"
LOCAL_SRV = f'local_certificate = "{SERVER_ID}"'

# Where a stream carries the certificate ID (docs/behaviour.md §3, "Where the ID may come").
IdPlace = Literal["generate_csr", "load_certificate", "both"]
ID_PLACES: tuple[IdPlace, ...] = ("generate_csr", "load_certificate", "both")


# -- messages -----------------------------------------------------------------------------------


def certificate(data: bytes, kind: int = cert_pb2.CT_X509) -> cert_pb2.Certificate:
    return cert_pb2.Certificate(type=kind, certificate=data)  # type: ignore[arg-type]


def params(
    common_name: str = "127.0.0.1",
    *,
    bits: int = 2048,
    ip_address: str = "127.0.0.1",
    key_type: int = cert_pb2.KT_RSA,
    kind: int = cert_pb2.CT_X509,
    **fields: str,
) -> cert_pb2.CSRParams:
    return cert_pb2.CSRParams(
        type=kind,  # type: ignore[arg-type]
        key_type=key_type,  # type: ignore[arg-type]
        min_key_size=bits,
        common_name=common_name,
        ip_address=ip_address,
        **fields,
    )


def gen(
    cert_id: str = "", csr_params: cert_pb2.CSRParams | None = None, *, bits: int = 2048
) -> cert_pb2.GenerateCSRRequest:
    return cert_pb2.GenerateCSRRequest(
        certificate_id=cert_id, csr_params=csr_params or params(bits=bits)
    )


def load(
    chain_pem: bytes,
    cert_id: str = "",
    *,
    private_key: bytes = b"",
    public_key: bytes = b"",
    bundle: Sequence[bytes] = (),
) -> cert_pb2.LoadCertificateRequest:
    request = cert_pb2.LoadCertificateRequest(
        certificate=certificate(chain_pem),
        certificate_id=cert_id,
        ca_certificates=[certificate(pem) for pem in bundle],
    )
    if private_key or public_key:
        request.key_pair.private_key = private_key
        request.key_pair.public_key = public_key
    return request


def rot(
    message: cert_pb2.GenerateCSRRequest | cert_pb2.LoadCertificateRequest | None = None,
) -> cert_pb2.RotateCertificateRequest:
    """A Rotate envelope; None makes the empty envelope (no oneof case set)."""
    if isinstance(message, cert_pb2.GenerateCSRRequest):
        return cert_pb2.RotateCertificateRequest(generate_csr=message)
    if isinstance(message, cert_pb2.LoadCertificateRequest):
        return cert_pb2.RotateCertificateRequest(load_certificate=message)
    return cert_pb2.RotateCertificateRequest()


def ins(
    message: cert_pb2.GenerateCSRRequest | cert_pb2.LoadCertificateRequest | None = None,
) -> cert_pb2.InstallCertificateRequest:
    if isinstance(message, cert_pb2.GenerateCSRRequest):
        return cert_pb2.InstallCertificateRequest(generate_csr=message)
    if isinstance(message, cert_pb2.LoadCertificateRequest):
        return cert_pb2.InstallCertificateRequest(load_certificate=message)
    return cert_pb2.InstallCertificateRequest()


FINALIZE = cert_pb2.RotateCertificateRequest(finalize_rotation=cert_pb2.FinalizeRequest())


def split_id(cert_id: str, place: IdPlace) -> tuple[str, str]:
    """(ID for generate_csr, ID for load_certificate) as a client of that kind sends them."""
    return (
        cert_id if place != "load_certificate" else "",
        cert_id if place != "generate_csr" else "",
    )


# -- material ------------------------------------------------------------------------------------


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER encoding, as the target computes fingerprints."""
    return cert.fingerprint(hashes.SHA256()).hex()


def leaf_fingerprint(chain_pem: bytes) -> str:
    return fingerprint(x509.load_pem_x509_certificates(chain_pem)[0])


def csr_public_der(csr_pem: bytes) -> bytes:
    csr = x509.load_pem_x509_csr(csr_pem)
    return csr.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def der_csr(key: PrivateKey, common_name: str = "127.0.0.1") -> bytes:
    """The DER CSR one common client puts into KeyPair.public_key (docs/behaviour.md §9)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.DER)


def client_key_pair(kind: str, key: PrivateKey) -> tuple[bytes, bytes]:
    """(private_key, public_key) the way different clients fill KeyPair."""
    if kind == "rsa-pkcs1":
        # gnoic's fallback: PKCS#1 "RSA PRIVATE KEY" PEM, and its DER CSR in public_key.
        assert isinstance(key, rsa.RSAPrivateKey)
        return key_pem(key, pkcs1=True), der_csr(key)
    if kind == "rsa-pkcs8":
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return key_pem(key), public
    return key_pem(key), b""


# -- store snapshots -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntityState:
    cert_id: str
    fingerprint: str
    version: int
    modified_ns: int
    chain_sha256: str
    key_sha256: str  # a digest only: key material never goes into assertion output


@dataclass(frozen=True, slots=True)
class StoreState:
    """Everything a rollback must restore, in both the committed and the effective view."""

    committed: tuple[EntityState, ...]
    effective: tuple[EntityState, ...]
    committed_bundle: str
    effective_bundle: str

    def entity(self, cert_id: str) -> EntityState | None:
        return next((e for e in self.committed if e.cert_id == cert_id), None)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store_state(store: Store) -> StoreState:
    def entities(view: Any) -> tuple[EntityState, ...]:
        return tuple(
            EntityState(
                cert_id=e.cert_id,
                fingerprint=e.fingerprint,
                version=e.version,
                modified_ns=e.modified_ns,
                chain_sha256=_digest(e.full_chain_pem),
                key_sha256=_digest(e.private_key_pem),
            )
            for e in view.entities.values()
        )

    committed, effective = store.committed_view(), store.view()
    return StoreState(
        committed=entities(committed),
        effective=entities(effective),
        committed_bundle=_digest(committed.ca_bundle_pem),
        effective_bundle=_digest(effective.ca_bundle_pem),
    )


def audit(target: Target, **match: str) -> list[dict[str, Any]]:
    """Audit records whose fields equal every given value, oldest first."""
    if not target.audit_path.exists():
        return []
    return [
        record
        for record in read_records(target.audit_path)
        if all(record.get(key) == value for key, value in match.items())
    ]


# -- an operator at a target -----------------------------------------------------------------


@dataclass
class Operator:
    """One operator's view of one target: the CA, credentials and an open channel."""

    target: Target
    ca: TestCA
    metadata: tuple[tuple[str, str], ...] = ADMIN
    client_chain_pem: bytes | None = None
    client_key_pem: bytes | None = field(default=None, repr=False)
    channel: grpc.aio.Channel = field(init=False)

    def __post_init__(self) -> None:
        self.channel = self.new_channel()

    @property
    def roots(self) -> bytes:
        """Trust the factory certificate and the test CA: the server may present either."""
        return self.target.factory_pem + self.ca.bundle_pem

    def new_channel(self) -> grpc.aio.Channel:
        """A brand-new connection (own subchannel pool, hence a new TLS handshake)."""
        return self.target.channel(
            self.roots,
            client_chain_pem=self.client_chain_pem,
            client_key_pem=self.client_key_pem,
        )

    def use_client_certificate(self, cn: str = "operator") -> None:
        self.client_chain_pem, self.client_key_pem = self.ca.client_credentials(cn)
        self.channel = self.new_channel()

    @property
    def stub(self) -> Any:
        return cert_pb2_grpc.CertificateManagementStub(self.channel)

    def stub_on(self, channel: grpc.aio.Channel) -> Any:
        return cert_pb2_grpc.CertificateManagementStub(channel)

    @property
    def store(self) -> Store:
        return self.target.daemon.store

    def state(self) -> StoreState:
        return store_state(self.store)

    async def time(self, channel: grpc.aio.Channel | None = None) -> int:
        stub = system_pb2_grpc.SystemStub(channel or self.channel)
        reply = await stub.Time(system_pb2.TimeRequest(), metadata=self.metadata)
        return int(reply.time)

    async def listing(self) -> dict[str, cert_pb2.CertificateInfo]:
        reply = await self.stub.GetCertificates(
            cert_pb2.GetCertificatesRequest(), metadata=self.metadata
        )
        return {info.certificate_id: info for info in reply.certificate_info}

    def key_load(
        self, cert_id: str, *, bundle: Sequence[bytes] = (), ca: TestCA | None = None
    ) -> tuple[cert_pb2.LoadCertificateRequest, str]:
        """A load_certificate with a fresh client EC key and its certificate; (request, print)."""
        issuer = ca or self.ca
        key = ec_key()
        signed = cert_pem(issuer.issue(key.public_key())) + issuer.chain_pem
        request = load(signed, cert_id, private_key=key_pem(key), bundle=bundle)
        return request, leaf_fingerprint(signed)

    async def install(
        self,
        cert_id: str,
        *,
        place: IdPlace = "both",
        bundle: Sequence[bytes] = (),
        bits: int = 2048,
        ca: TestCA | None = None,
    ) -> str:
        """Install with a target-generated key (docs/wire.md 5.2 case 1); the new fingerprint."""
        gen_id, load_id = split_id(cert_id, place)
        call = self.stub.Install(metadata=self.metadata)
        await call.write(ins(gen(gen_id, bits=bits)))
        reply = await call.read()
        signed = (ca or self.ca).sign_csr(reply.generated_csr.csr.csr)
        await call.write(ins(load(signed, load_id, bundle=bundle)))
        reply = await call.read()
        assert reply.WhichOneof("install_response") == "load_certificate", reply
        assert await call.code() == grpc.StatusCode.OK, await call.details()
        return leaf_fingerprint(signed)

    async def install_key(
        self, cert_id: str, key: PrivateKey, *, bundle: Sequence[bytes] = ()
    ) -> str:
        """Install with a client key (docs/wire.md 5.2 case 2); the new fingerprint."""
        signed = self.ca.sign_csr(pem_csr(key))
        call = self.stub.Install(metadata=self.metadata)
        await call.write(ins(load(signed, cert_id, private_key=key_pem(key), bundle=bundle)))
        reply = await call.read()
        assert reply.WhichOneof("install_response") == "load_certificate", reply
        assert await call.code() == grpc.StatusCode.OK, await call.details()
        return leaf_fingerprint(signed)

    async def rotate(self, cert_id: str, *, place: IdPlace = "both", bits: int = 2048) -> str:
        """A complete Rotate with a target key and Finalize; the new fingerprint."""
        gen_id, load_id = split_id(cert_id, place)
        call = self.stub.Rotate(metadata=self.metadata)
        await call.write(rot(gen(gen_id, bits=bits)))
        reply = await call.read()
        signed = self.ca.sign_csr(reply.generated_csr.csr.csr)
        await call.write(rot(load(signed, load_id)))
        reply = await call.read()
        assert reply.WhichOneof("rotate_response") == "load_certificate", reply
        await call.write(FINALIZE)
        assert await call.code() == grpc.StatusCode.OK, await call.details()
        return leaf_fingerprint(signed)


async def open_rotation(
    operator: Operator, *, place: IdPlace = "both", bits: int = 2048
) -> tuple[Any, str]:
    """A Rotate of `srv` stopped between the load response and Finalize: (call, new print)."""
    gen_id, load_id = split_id(SERVER_ID, place)
    call = operator.stub.Rotate(metadata=operator.metadata)
    await call.write(rot(gen(gen_id, bits=bits)))
    reply = await call.read()
    assert reply.WhichOneof("rotate_response") == "generated_csr"
    signed = operator.ca.sign_csr(reply.generated_csr.csr.csr)
    await call.write(rot(load(signed, load_id)))
    reply = await call.read()
    assert reply.WhichOneof("rotate_response") == "load_certificate"
    return call, leaf_fingerprint(signed)


def pem_csr(key: PrivateKey) -> bytes:
    """A CSR for key, as a client that makes its own key pair sends it to its CA."""
    csr = x509.load_der_x509_csr(der_csr(key))
    return csr.public_bytes(serialization.Encoding.PEM)


async def provision_target(target: Target, ca: TestCA) -> Operator:
    """Bring a fresh target to its working state: `srv` installed with the CA as its first
    bundle (by Install, which then switches the listener to mutual TLS), and an operator with
    a client certificate. With `local_certificate = "srv"` configured, `srv` is what the gRPC
    server presents from then on."""
    operator = Operator(target, ca)
    await operator.install(SERVER_ID, bundle=[ca.bundle_pem])
    await wait_for(lambda: target.daemon.listener_mode is TlsMode.MUTUAL, what="mutual TLS")
    operator.use_client_certificate()
    return operator


async def restart_target(target: Target) -> Target:
    """A new daemon on the same configuration and state directory (the old one stopped)."""
    daemon = Daemon(load_config(target.config_path))
    await daemon.start()
    return Target(daemon=daemon, directory=target.directory, config_path=target.config_path)


@dataclass
class Launcher:
    """Starts targets in subdirectories of one test's directory and stops them all at the end."""

    directory: Path
    ca: TestCA
    targets: list[Target] = field(default_factory=list)

    async def start(self, name: str = "target", **options: Any) -> Target:
        directory = self.directory / name
        directory.mkdir(exist_ok=True)
        target = await start_target(directory, **options)
        self.targets.append(target)
        return target

    async def provision(
        self,
        name: str = "target",
        *,
        local_certificate: bool = True,
        grpc_lines: Sequence[str] = (),
        **options: Any,
    ) -> Operator:
        lines = [*([LOCAL_SRV] if local_certificate else []), *grpc_lines]
        target = await self.start(name, grpc_lines=lines, **options)
        return await provision_target(target, self.ca)

    async def restart(self, target: Target) -> Target:
        restarted = await restart_target(target)
        self.targets.append(restarted)
        return restarted

    async def close(self) -> None:
        for target in reversed(self.targets):
            await target.close()
