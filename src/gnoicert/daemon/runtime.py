"""The daemon's live state shared by the service and the TLS manager, and who is calling."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from gnoicert.daemon import policy
from gnoicert.daemon.audit import AuditLog
from gnoicert.daemon.config import GrpcConfig
from gnoicert.daemon.key_pool import KeyPool
from gnoicert.pki.store import Store


@dataclass(slots=True, kw_only=True)
class Runtime:
    """The daemon's live state shared by the service and the TLS manager.

    `grpc` and `external_client_ca_pem` are replaced on configuration reload; the store owns
    every certificate fact.
    """

    store: Store
    audit: AuditLog
    grpc: GrpcConfig
    external_client_ca_pem: bytes = b""
    insecure: bool = False
    key_pool: KeyPool | None = None  # None: every GenerateCSR makes its key on the spot
    # Set by the daemon when it starts to stop: grpcio then ends request streams as if their
    # clients had half-closed (docs/platform-notes.md), and only this tells the two apart.
    stopping: bool = False

    def client_trust(self, bundle_pem: bytes) -> policy.ClientTrust:
        return policy.client_trust(self.grpc, bundle_pem, self.external_client_ca_pem)

    def tls_mode(self, bundle_pem: bytes) -> policy.TlsMode:
        return policy.tls_mode(self.client_trust(bundle_pem), insecure=self.insecure)


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    """Who sent the RPC, for audit records and the lockout guard."""

    rpc: str
    peer: str
    identity: str
    certificate: x509.Certificate | None
