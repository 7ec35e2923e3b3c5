"""Client-side steps for the daemon integration tests: Install and Rotate streams, rich errors,
server certificates from a test CA, and the audit log.

Everything talks to a real target over real TLS; these helpers only save the tests from
repeating the message plumbing.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gnoicert.proto import cert_pb2, cert_pb2_grpc
from tests.support.pki import TestCA, cert_pem, ec_key, key_pem
from tests.support.target import credentials

ADMIN = credentials("admin")
READER = credentials("reader")

Metadata = Sequence[tuple[str, str]]
if TYPE_CHECKING:
    from typing import TypeAlias

    from gnoicert.proto.cert_pb2_grpc import CertificateManagementAsyncStub

    CertStub: TypeAlias = CertificateManagementAsyncStub

    RotateCall = grpc.aio.StreamStreamCall[
        cert_pb2.RotateCertificateRequest, cert_pb2.RotateCertificateResponse
    ]


def cert_stub(channel: grpc.aio.Channel) -> CertStub:
    return cert_pb2_grpc.CertificateManagementStub(channel)


def x509_field(pem: bytes) -> cert_pb2.Certificate:
    return cert_pb2.Certificate(type=cert_pb2.CT_X509, certificate=pem)


def fingerprint_of(pem: bytes) -> str:
    """SHA-256 (lowercase hex) of the first certificate in pem, as served_fingerprint reports."""
    leaf = x509.load_pem_x509_certificates(pem)[0]
    return hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()


@dataclass(frozen=True)
class ServerCert:
    """A leaf for the target, with the key the client sends along (KeyPair flow)."""

    chain_pem: bytes
    key_pem: bytes = field(repr=False)

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.chain_pem)

    def load_request(
        self, cert_id: str, *, bundle_pem: bytes | None = None
    ) -> cert_pb2.LoadCertificateRequest:
        return cert_pb2.LoadCertificateRequest(
            certificate=x509_field(self.chain_pem),
            key_pair=cert_pb2.KeyPair(private_key=self.key_pem),
            certificate_id=cert_id,
            ca_certificates=[x509_field(bundle_pem)] if bundle_pem else [],
        )


def issue_server_cert(ca: TestCA, cn: str = "127.0.0.1") -> ServerCert:
    """An EC P-256 leaf for 127.0.0.1/localhost (fast: no RSA key generation)."""
    key = ec_key()
    leaf = ca.issue(key.public_key(), cn=cn)
    return ServerCert(chain_pem=cert_pem(leaf) + ca.chain_pem, key_pem=key_pem(key))


def csr_request(cert_id: str = "", cn: str = "127.0.0.1") -> cert_pb2.GenerateCSRRequest:
    return cert_pb2.GenerateCSRRequest(
        certificate_id=cert_id,
        csr_params=cert_pb2.CSRParams(
            type=cert_pb2.CT_X509,
            key_type=cert_pb2.KT_RSA,
            min_key_size=2048,
            common_name=cn,
            ip_address="127.0.0.1",
        ),
    )


async def install(
    stub: CertStub,
    cert_id: str,
    cert: ServerCert,
    *,
    bundle_pem: bytes | None = None,
    metadata: Metadata = ADMIN,
) -> None:
    """Install with a client key pair (and maybe the CA bundle); asserts it ends OK."""
    call = stub.Install(metadata=metadata)
    await call.write(
        cert_pb2.InstallCertificateRequest(
            load_certificate=cert.load_request(cert_id, bundle_pem=bundle_pem)
        )
    )
    reply = await call.read()
    assert isinstance(reply, cert_pb2.InstallCertificateResponse)
    assert reply.WhichOneof("install_response") == "load_certificate"
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK, await call.details()


async def install_with_csr(
    stub: CertStub,
    cert_id: str,
    ca: TestCA,
    *,
    bundle_pem: bytes | None = None,
    metadata: Metadata = ADMIN,
) -> str:
    """Install with a target-generated key (CSR flow); returns the installed fingerprint."""
    call = stub.Install(metadata=metadata)
    await call.write(cert_pb2.InstallCertificateRequest(generate_csr=csr_request(cert_id)))
    reply = await call.read()
    assert isinstance(reply, cert_pb2.InstallCertificateResponse)
    signed = ca.sign_csr(reply.generated_csr.csr.csr)
    await call.write(
        cert_pb2.InstallCertificateRequest(
            load_certificate=cert_pb2.LoadCertificateRequest(
                certificate=x509_field(signed),
                certificate_id=cert_id,
                ca_certificates=[x509_field(bundle_pem)] if bundle_pem else [],
            )
        )
    )
    reply = await call.read()
    assert isinstance(reply, cert_pb2.InstallCertificateResponse)
    assert reply.WhichOneof("install_response") == "load_certificate"
    assert await call.code() == grpc.StatusCode.OK, await call.details()
    return fingerprint_of(signed)


async def rotate_until_loaded(
    stub: CertStub, cert_id: str, cert: ServerCert, *, metadata: Metadata = ADMIN
) -> RotateCall:
    """Open a Rotate and load cert: the new material is in effect, not committed."""
    call = stub.Rotate(metadata=metadata)
    await call.write(cert_pb2.RotateCertificateRequest(load_certificate=cert.load_request(cert_id)))
    reply = await call.read()
    assert isinstance(reply, cert_pb2.RotateCertificateResponse), reply
    assert reply.WhichOneof("rotate_response") == "load_certificate"
    return call


async def rotate_with_csr(
    stub: CertStub, cert_id: str, ca: TestCA, *, metadata: Metadata = ADMIN
) -> str:
    """A whole Rotate with a target-generated key; returns the new fingerprint."""
    call = stub.Rotate(metadata=metadata)
    await call.write(cert_pb2.RotateCertificateRequest(generate_csr=csr_request(cert_id)))
    reply = await call.read()
    assert isinstance(reply, cert_pb2.RotateCertificateResponse), reply
    signed = ca.sign_csr(reply.generated_csr.csr.csr)
    await call.write(
        cert_pb2.RotateCertificateRequest(
            load_certificate=cert_pb2.LoadCertificateRequest(
                certificate=x509_field(signed), certificate_id=cert_id
            )
        )
    )
    reply = await call.read()
    assert isinstance(reply, cert_pb2.RotateCertificateResponse), reply
    assert await finalize(call) == grpc.StatusCode.OK
    return fingerprint_of(signed)


async def finalize(call: RotateCall) -> grpc.StatusCode:
    await call.write(
        cert_pb2.RotateCertificateRequest(finalize_rotation=cert_pb2.FinalizeRequest())
    )
    return await call.code()


async def listed(stub: CertStub, metadata: Metadata = ADMIN) -> dict[str, str]:
    """GetCertificates as {certificate ID: leaf fingerprint}."""
    reply = await stub.GetCertificates(cert_pb2.GetCertificatesRequest(), metadata=metadata)
    return {
        info.certificate_id: fingerprint_of(info.certificate.certificate)
        for info in reply.certificate_info
    }


def error_reason(err: grpc.aio.AioRpcError) -> str:
    """The google.rpc.ErrorInfo reason of a failed call ('' when there is none)."""
    status = rpc_status.from_call(err)
    if status is None:
        return ""
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""


async def stream_refusal(call: Any) -> tuple[grpc.StatusCode, str]:
    """(code, ErrorInfo reason) of a stream call that the target ended without a message."""
    code = await call.code()
    assert code is not grpc.StatusCode.OK
    err = grpc.aio.AioRpcError(
        code, await call.initial_metadata(), await call.trailing_metadata(), await call.details()
    )
    return code, error_reason(err)


def audit_records(path: Path, **match: str) -> list[dict[str, Any]]:
    """The audit log's records whose fields equal every match (all records without match)."""
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if all(r.get(k) == v for k, v in match.items())]


_PEM_BODY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\n(.*?)\n-----END", re.DOTALL)


def key_fragments(pem: bytes) -> list[str]:
    """Base64 lines of a PEM private key: any of them in a log means the key leaked."""
    fragments: list[str] = []
    for body in _PEM_BODY.findall(pem):
        fragments.extend(line.decode() for line in body.split(b"\n") if len(line) >= 32)
    assert fragments, "not a PEM private key"
    return fragments
