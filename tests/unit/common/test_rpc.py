"""The method table matches the descriptors generated from the .proto files."""

from __future__ import annotations

from gnoicert.common.rpc import CERT_SERVICE, SYSTEM_SERVICE, CertRpc, SystemRpc
from gnoicert.proto import cert_pb2, system_pb2


def test_cert_methods_are_the_generated_service() -> None:
    service = cert_pb2.DESCRIPTOR.services_by_name["CertificateManagement"]
    assert service.full_name == CERT_SERVICE
    assert [m.name for m in service.methods] == [rpc.value for rpc in CertRpc]
    assert CertRpc.ROTATE.path == "/gnoi.certificate.CertificateManagement/Rotate"


def test_system_time_is_in_the_generated_service() -> None:
    service = system_pb2.DESCRIPTOR.services_by_name["System"]
    assert service.full_name == SYSTEM_SERVICE
    assert service.methods_by_name[SystemRpc.TIME].name == "Time"
    assert SystemRpc.TIME.path == "/gnoi.system.System/Time"
