"""The generated descriptors are wire-identical to the contract in docs/wire.md.

The tables below are written from the spec, not from the .proto files, so a changed field number,
type, label or oneof in protos/ fails here.
"""

from __future__ import annotations

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FieldDescriptor, FileDescriptor

from gnoicert.proto import cert_pb2, system_pb2, types_pb2

F = FieldDescriptor
MSG, STR, BYTES, U32, I64, U64, BOOL, ENUM = (
    F.TYPE_MESSAGE,
    F.TYPE_STRING,
    F.TYPE_BYTES,
    F.TYPE_UINT32,
    F.TYPE_INT64,
    F.TYPE_UINT64,
    F.TYPE_BOOL,
    F.TYPE_ENUM,
)
ONE, REP = "singular", "repeated"

# message -> [(number, name, type, type name or None, label, oneof or None)]
CERT_MESSAGES: dict[str, list[tuple[int, str, int, str | None, str, str | None]]] = {
    "RotateCertificateRequest": [
        (1, "generate_csr", MSG, "GenerateCSRRequest", ONE, "rotate_request"),
        (2, "load_certificate", MSG, "LoadCertificateRequest", ONE, "rotate_request"),
        (3, "finalize_rotation", MSG, "FinalizeRequest", ONE, "rotate_request"),
    ],
    "RotateCertificateResponse": [
        (1, "generated_csr", MSG, "GenerateCSRResponse", ONE, "rotate_response"),
        (2, "load_certificate", MSG, "LoadCertificateResponse", ONE, "rotate_response"),
    ],
    "InstallCertificateRequest": [
        (1, "generate_csr", MSG, "GenerateCSRRequest", ONE, "install_request"),
        (2, "load_certificate", MSG, "LoadCertificateRequest", ONE, "install_request"),
    ],
    "InstallCertificateResponse": [
        (1, "generated_csr", MSG, "GenerateCSRResponse", ONE, "install_response"),
        (2, "load_certificate", MSG, "LoadCertificateResponse", ONE, "install_response"),
    ],
    "GenerateCSRRequest": [
        (1, "csr_params", MSG, "CSRParams", ONE, None),
        (2, "certificate_id", STR, None, ONE, None),
    ],
    "CSRParams": [
        (1, "type", ENUM, "CertificateType", ONE, None),
        (2, "min_key_size", U32, None, ONE, None),
        (3, "key_type", ENUM, "KeyType", ONE, None),
        (4, "common_name", STR, None, ONE, None),
        (5, "country", STR, None, ONE, None),
        (6, "state", STR, None, ONE, None),
        (7, "city", STR, None, ONE, None),
        (8, "organization", STR, None, ONE, None),
        (9, "organizational_unit", STR, None, ONE, None),
        (10, "ip_address", STR, None, ONE, None),
        (11, "email_id", STR, None, ONE, None),
    ],
    "GenerateCSRResponse": [(1, "csr", MSG, "CSR", ONE, None)],
    "LoadCertificateRequest": [
        (1, "certificate", MSG, "Certificate", ONE, None),
        (2, "key_pair", MSG, "KeyPair", ONE, None),
        (3, "certificate_id", STR, None, ONE, None),
        (4, "ca_certificates", MSG, "Certificate", REP, None),
    ],
    "LoadCertificateResponse": [],
    "LoadCertificateAuthorityBundleRequest": [
        (1, "ca_certificates", MSG, "Certificate", REP, None),
    ],
    "LoadCertificateAuthorityBundleResponse": [],
    "FinalizeRequest": [],
    "GetCertificatesRequest": [],
    "GetCertificatesResponse": [
        (1, "certificate_info", MSG, "CertificateInfo", REP, None),
    ],
    "CertificateInfo": [
        (1, "certificate_id", STR, None, ONE, None),
        (2, "certificate", MSG, "Certificate", ONE, None),
        (3, "endpoints", MSG, "Endpoint", REP, None),
        (4, "modification_time", I64, None, ONE, None),
    ],
    "RevokeCertificatesRequest": [(1, "certificate_id", STR, None, REP, None)],
    "RevokeCertificatesResponse": [
        (1, "revoked_certificate_id", STR, None, REP, None),
        (2, "certificate_revocation_error", MSG, "CertificateRevocationError", REP, None),
    ],
    "CertificateRevocationError": [
        (1, "certificate_id", STR, None, ONE, None),
        (2, "error_message", STR, None, ONE, None),
    ],
    "CanGenerateCSRRequest": [
        (1, "key_type", ENUM, "KeyType", ONE, None),
        (2, "certificate_type", ENUM, "CertificateType", ONE, None),
        (3, "key_size", U32, None, ONE, None),
    ],
    "CanGenerateCSRResponse": [(4, "can_generate", BOOL, None, ONE, None)],
    "Certificate": [
        (1, "type", ENUM, "CertificateType", ONE, None),
        (2, "certificate", BYTES, None, ONE, None),
    ],
    "CSR": [
        (1, "type", ENUM, "CertificateType", ONE, None),
        (2, "csr", BYTES, None, ONE, None),
    ],
    "KeyPair": [
        (1, "private_key", BYTES, None, ONE, None),
        (2, "public_key", BYTES, None, ONE, None),
    ],
    "Endpoint": [
        (1, "type", ENUM, "Endpoint.Type", ONE, None),
        (2, "endpoint", STR, None, ONE, None),
    ],
}

CERT_ENUMS = {
    "CertificateType": {"CT_UNKNOWN": 0, "CT_X509": 1},
    "KeyType": {"KT_UNKNOWN": 0, "KT_RSA": 1},
    "Endpoint.Type": {"EP_UNSPECIFIED": 0, "EP_IPSEC_TUNNEL": 1, "EP_DAEMON": 2},
}

# method -> (request, response, client streaming, server streaming)
CERT_METHODS = {
    "Rotate": ("RotateCertificateRequest", "RotateCertificateResponse", True, True),
    "Install": ("InstallCertificateRequest", "InstallCertificateResponse", True, True),
    "GenerateCSR": ("GenerateCSRRequest", "GenerateCSRResponse", False, False),
    "LoadCertificate": ("LoadCertificateRequest", "LoadCertificateResponse", False, False),
    "LoadCertificateAuthorityBundle": (
        "LoadCertificateAuthorityBundleRequest",
        "LoadCertificateAuthorityBundleResponse",
        False,
        False,
    ),
    "GetCertificates": ("GetCertificatesRequest", "GetCertificatesResponse", False, False),
    "RevokeCertificates": ("RevokeCertificatesRequest", "RevokeCertificatesResponse", False, False),
    "CanGenerateCSR": ("CanGenerateCSRRequest", "CanGenerateCSRResponse", False, False),
}


def _proto(fd: FileDescriptor) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    fd.CopyToProto(proto)
    return proto


def test_cert_file_identity() -> None:
    fd = cert_pb2.DESCRIPTOR
    assert fd.name == "github.com/openconfig/gnoi/cert/cert.proto"
    assert fd.package == "gnoi.certificate"
    assert fd.syntax == "proto3" if hasattr(fd, "syntax") else True
    assert list(fd.dependencies) == [types_pb2.DESCRIPTOR]
    options = fd.GetOptions()
    assert options.go_package == "github.com/openconfig/gnoi/cert"
    assert options.Extensions[types_pb2.gnoi_version] == "0.2.0"
    # The serialized file options given in docs/wire.md section 1.
    assert options.SerializeToString() == b"Z\x1fgithub.com/openconfig/gnoi/cert\xd2>\x050.2.0"


def test_gnoi_version_extension() -> None:
    ext = types_pb2.gnoi_version
    assert ext.number == 1002
    assert ext.type == STR
    assert ext.containing_type is not None
    assert ext.containing_type.full_name == "google.protobuf.FileOptions"
    assert types_pb2.DESCRIPTOR.package == "gnoi.types"
    assert types_pb2.DESCRIPTOR.name == "github.com/openconfig/gnoi/types/types.proto"


def test_cert_message_inventory_in_declaration_order() -> None:
    proto = _proto(cert_pb2.DESCRIPTOR)
    assert [m.name for m in proto.message_type] == list(CERT_MESSAGES)
    assert [e.name for e in proto.enum_type] == ["CertificateType", "KeyType"]


@pytest.mark.parametrize("message", list(CERT_MESSAGES))
def test_cert_message_fields(message: str) -> None:
    desc = cert_pb2.DESCRIPTOR.message_types_by_name[message]
    actual = []
    for field in desc.fields:
        type_name = None
        if field.message_type is not None:
            type_name = field.message_type.full_name.removeprefix("gnoi.certificate.")
        if field.enum_type is not None:
            type_name = field.enum_type.full_name.removeprefix("gnoi.certificate.")
        label = REP if field.is_repeated else ONE
        oneof = field.containing_oneof.name if field.containing_oneof else None
        actual.append((field.number, field.name, field.type, type_name, label, oneof))
        # No explicit presence anywhere in this file ("optional" would change the descriptor).
        assert not field.has_presence or field.message_type is not None or oneof is not None
    assert actual == CERT_MESSAGES[message]
    assert not desc.nested_types or message == "Endpoint"


@pytest.mark.parametrize("enum", list(CERT_ENUMS))
def test_cert_enums(enum: str) -> None:
    if "." in enum:
        outer, inner = enum.split(".")
        desc = cert_pb2.DESCRIPTOR.message_types_by_name[outer].enum_types_by_name[inner]
    else:
        desc = cert_pb2.DESCRIPTOR.enum_types_by_name[enum]
    assert {v.name: v.number for v in desc.values} == CERT_ENUMS[enum]
    assert desc.full_name == f"gnoi.certificate.{enum}"


def test_cert_service_methods() -> None:
    service = cert_pb2.DESCRIPTOR.services_by_name["CertificateManagement"]
    assert service.full_name == "gnoi.certificate.CertificateManagement"
    proto = _proto(cert_pb2.DESCRIPTOR).service[0]
    actual = {
        m.name: (
            m.input_type.removeprefix(".gnoi.certificate."),
            m.output_type.removeprefix(".gnoi.certificate."),
            m.client_streaming,
            m.server_streaming,
        )
        for m in proto.method
    }
    assert actual == CERT_METHODS
    paths = {f"/{service.full_name}/{m.name}" for m in service.methods}
    assert "/gnoi.certificate.CertificateManagement/LoadCertificateAuthorityBundle" in paths
    assert len(paths) == 8


def test_system_time() -> None:
    fd = system_pb2.DESCRIPTOR
    assert fd.name == "github.com/openconfig/gnoi/system/system.proto"
    assert fd.package == "gnoi.system"
    assert fd.GetOptions().Extensions[types_pb2.gnoi_version] == "1.4.0"
    service = fd.services_by_name["System"]
    assert service.full_name == "gnoi.system.System"
    method = service.methods_by_name["Time"]
    assert method.input_type.full_name == "gnoi.system.TimeRequest"
    assert method.output_type.full_name == "gnoi.system.TimeResponse"
    assert list(method.input_type.fields) == []
    (field,) = method.output_type.fields
    assert (field.number, field.name, field.type, field.is_repeated) == (1, "time", U64, False)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (cert_pb2.RotateCertificateRequest(finalize_rotation=cert_pb2.FinalizeRequest()), "1a00"),
        (
            cert_pb2.RotateCertificateResponse(load_certificate=cert_pb2.LoadCertificateResponse()),
            "1200",
        ),
        (
            cert_pb2.InstallCertificateResponse(
                load_certificate=cert_pb2.LoadCertificateResponse()
            ),
            "1200",
        ),
        (cert_pb2.CanGenerateCSRResponse(can_generate=True), "2001"),
        (cert_pb2.CanGenerateCSRResponse(can_generate=False), ""),
        (
            cert_pb2.CertificateInfo(certificate_id="a", modification_time=-1),
            "0a016120ffffffffffffffffff01",
        ),
        (system_pb2.TimeResponse(time=1700000000123456789), "08959a97ece39fe7cb17"),
    ],
)
def test_verified_encodings(message: object, expected: str) -> None:
    assert message.SerializeToString().hex() == expected  # type: ignore[attr-defined]


def test_empty_envelope_selects_nothing() -> None:
    request = cert_pb2.RotateCertificateRequest.FromString(b"")
    assert request.WhichOneof("rotate_request") is None
