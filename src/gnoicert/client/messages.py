"""Protobuf in and out: request building and response parsing, with no I/O.

The generated types stop here and in workflows.py; callers see models. Rules followed (docs/wire.md,
docs/behaviour.md §9): the certificate ID goes in both generate_csr and load_certificate, the
certificate is leaf first then intermediates, and each CA of a bundle is its own Certificate.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gnoicert.client.certinfo import describe_certificate
from gnoicert.client.listing import CertificateInfo, Endpoint
from gnoicert.pki.crypto import subject_fields
from gnoicert.proto import cert_pb2

if TYPE_CHECKING:
    from gnoicert.client.models import CsrParams, RevokeResult


def csr_params(params: CsrParams) -> cert_pb2.CSRParams:
    """CSRParams for a target-generated RSA key of at least params.key_size bits."""
    return cert_pb2.CSRParams(
        type=cert_pb2.CT_X509,
        min_key_size=params.key_size,
        key_type=cert_pb2.KT_RSA,
        **subject_fields(params),
    )


def generate_csr_request(certificate_id: str, params: CsrParams) -> cert_pb2.GenerateCSRRequest:
    return cert_pb2.GenerateCSRRequest(csr_params=csr_params(params), certificate_id=certificate_id)


def x509_certificate(pem: bytes) -> cert_pb2.Certificate:
    return cert_pb2.Certificate(type=cert_pb2.CT_X509, certificate=pem)


def load_certificate_request(
    certificate_id: str,
    certificate_pem: bytes,
    *,
    private_key_pem: bytes | None = None,
    public_key_pem: bytes | None = None,
    ca_certificates: Sequence[bytes] = (),
) -> cert_pb2.LoadCertificateRequest:
    """LoadCertificateRequest; the key pair only when this client made the key."""
    request = cert_pb2.LoadCertificateRequest(
        certificate=x509_certificate(certificate_pem),
        certificate_id=certificate_id,
        ca_certificates=[x509_certificate(pem) for pem in ca_certificates],
    )
    if private_key_pem is not None:
        request.key_pair.CopyFrom(
            cert_pb2.KeyPair(private_key=private_key_pem, public_key=public_key_pem or b"")
        )
    return request


def ca_bundle_request(
    ca_certificates: Sequence[bytes],
) -> cert_pb2.LoadCertificateAuthorityBundleRequest:
    return cert_pb2.LoadCertificateAuthorityBundleRequest(
        ca_certificates=[x509_certificate(pem) for pem in ca_certificates]
    )


def can_generate_csr_request(key_size: int) -> cert_pb2.CanGenerateCSRRequest:
    """The probe gnoic makes before Rotate/Install: KT_RSA, CT_X509 and the key size."""
    return cert_pb2.CanGenerateCSRRequest(
        key_type=cert_pb2.KT_RSA, certificate_type=cert_pb2.CT_X509, key_size=key_size
    )


def install_generate(certificate_id: str, params: CsrParams) -> cert_pb2.InstallCertificateRequest:
    return cert_pb2.InstallCertificateRequest(
        generate_csr=generate_csr_request(certificate_id, params)
    )


def install_load(load: cert_pb2.LoadCertificateRequest) -> cert_pb2.InstallCertificateRequest:
    return cert_pb2.InstallCertificateRequest(load_certificate=load)


def rotate_generate(certificate_id: str, params: CsrParams) -> cert_pb2.RotateCertificateRequest:
    return cert_pb2.RotateCertificateRequest(
        generate_csr=generate_csr_request(certificate_id, params)
    )


def rotate_load(load: cert_pb2.LoadCertificateRequest) -> cert_pb2.RotateCertificateRequest:
    return cert_pb2.RotateCertificateRequest(load_certificate=load)


def rotate_finalize() -> cert_pb2.RotateCertificateRequest:
    return cert_pb2.RotateCertificateRequest(finalize_rotation=cert_pb2.FinalizeRequest())


def csr_from_generated(response: cert_pb2.GenerateCSRResponse) -> bytes:
    """The CSR bytes of a GenerateCSRResponse (PEM for X.509, per docs/wire.md)."""
    return bytes(response.csr.csr)


def endpoint_model(endpoint: cert_pb2.Endpoint) -> Endpoint:
    try:
        type_name = cert_pb2.Endpoint.Type.Name(endpoint.type)
    except ValueError:
        type_name = f"EP_{int(endpoint.type)}"
    return Endpoint(type=type_name, endpoint=endpoint.endpoint)


def certificate_info_model(
    info: cert_pb2.CertificateInfo, *, now: dt.datetime | None = None
) -> CertificateInfo:
    return describe_certificate(
        info.certificate_id,
        bytes(info.certificate.certificate),
        endpoints=[endpoint_model(endpoint) for endpoint in info.endpoints],
        modification_ns=info.modification_time,
        now=now,
    )


def certificates_model(
    response: cert_pb2.GetCertificatesResponse, *, now: dt.datetime | None = None
) -> tuple[CertificateInfo, ...]:
    return tuple(certificate_info_model(info, now=now) for info in response.certificate_info)


def revoke_result_model(
    response: cert_pb2.RevokeCertificatesResponse, *, target: str
) -> RevokeResult:
    from gnoicert.client.models import RevocationError, RevokeResult  # not on `get`'s path

    errors = tuple(
        RevocationError(certificate_id=error.certificate_id, message=error.error_message)
        for error in response.certificate_revocation_error
    )
    return RevokeResult(
        target=target,
        revoked=tuple(response.revoked_certificate_id),
        errors=errors,
        ok=not errors,
    )


def key_type_name(value: int) -> str:
    try:
        return cert_pb2.KeyType.Name(value)  # type: ignore[arg-type]
    except ValueError:
        return f"KT_{value}"


def certificate_type_name(value: int) -> str:
    try:
        return cert_pb2.CertificateType.Name(value)  # type: ignore[arg-type]
    except ValueError:
        return f"CT_{value}"
