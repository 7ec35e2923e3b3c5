"""The gNOI method names and paths gnoicert serves and calls: one table for daemon and client.

The names match the service descriptors generated from the .proto files (a unit test checks).
"""

from __future__ import annotations

from enum import StrEnum

CERT_SERVICE = "gnoi.certificate.CertificateManagement"
SYSTEM_SERVICE = "gnoi.system.System"


class CertRpc(StrEnum):
    """The CertificateManagement methods, by name ("Rotate")."""

    ROTATE = "Rotate"
    INSTALL = "Install"
    GENERATE_CSR = "GenerateCSR"
    LOAD_CERTIFICATE = "LoadCertificate"
    LOAD_CERTIFICATE_AUTHORITY_BUNDLE = "LoadCertificateAuthorityBundle"
    GET_CERTIFICATES = "GetCertificates"
    REVOKE_CERTIFICATES = "RevokeCertificates"
    CAN_GENERATE_CSR = "CanGenerateCSR"

    @property
    def path(self) -> str:
        """The gRPC method path ("/gnoi.certificate.CertificateManagement/Rotate")."""
        return f"/{CERT_SERVICE}/{self.value}"


class SystemRpc(StrEnum):
    """The System methods gnoicert uses (the rotate validation probe)."""

    TIME = "Time"

    @property
    def path(self) -> str:
        """The gRPC method path ("/gnoi.system.System/Time")."""
        return f"/{SYSTEM_SERVICE}/{self.value}"
