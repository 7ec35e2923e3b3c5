"""Which TLS mode and which certificates follow from a store view and the configuration.

Pure functions shared by the service (AUTH_MODE_CHANGE and LOCKOUT guards), the credential
manager and GetCertificates, so the three never disagree about the target's own certificate.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cryptography import x509

from gnoicert.common import constants
from gnoicert.daemon.config import ClientCertificateRequest, GrpcConfig
from gnoicert.pki import crypto
from gnoicert.pki.chain import chain_verifies
from gnoicert.pki.store import CertificateEntity, StoreView

SERVER_ENDPOINT = constants.SERVER_ENDPOINT


class TlsMode(enum.StrEnum):
    """How the gRPC listener authenticates clients; changing it needs a new listener."""

    INSECURE = "insecure"  # plaintext, loopback only (--insecure)
    SERVER_ONLY = "server-only"  # the client checks the server; users by username/password
    MUTUAL = "mutual"  # the client must present a certificate that chains to the client CAs


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientTrust:
    """Where client certificates are verified against, in mutual mode."""

    uses_store_bundle: bool
    ca_pem: bytes  # b"" when no client certificate is asked for


def client_trust(grpc_config: GrpcConfig, bundle_pem: bytes, external_ca_pem: bytes) -> ClientTrust:
    """The client CA set: the explicit mutual_authentication stanza wins over the implicit
    rule "a non-empty gnoi-ca-bundle means mutual TLS" (docs/behaviour.md §1)."""
    stanza = grpc_config.mutual_authentication
    if stanza is None:
        return ClientTrust(uses_store_bundle=True, ca_pem=bundle_pem)
    if stanza.client_certificate_request is ClientCertificateRequest.NO_CERTIFICATE:
        return ClientTrust(uses_store_bundle=False, ca_pem=b"")
    if stanza.uses_ca_bundle:
        return ClientTrust(uses_store_bundle=True, ca_pem=bundle_pem)
    return ClientTrust(uses_store_bundle=False, ca_pem=external_ca_pem)


def tls_mode(trust: ClientTrust, *, insecure: bool) -> TlsMode:
    if insecure:
        return TlsMode.INSECURE
    return TlsMode.MUTUAL if trust.ca_pem.strip() else TlsMode.SERVER_ONLY


def server_entity(grpc_config: GrpcConfig, view: StoreView) -> CertificateEntity | None:
    """The entity the gRPC server presents, or None when it falls back to the factory one."""
    if grpc_config.local_certificate is None:
        return None
    return view.entities.get(grpc_config.local_certificate)


def entity_chain(entity: CertificateEntity) -> tuple[x509.Certificate, ...]:
    """Leaf then intermediates of an entity."""
    if not entity.chain_pem.strip():
        return (entity.certificate,)
    return (entity.certificate, *crypto.load_certificates(entity.chain_pem))


def bundle_locks_out(
    new_bundle: tuple[x509.Certificate, ...],
    *,
    server_chain: tuple[x509.Certificate, ...] | None,
    caller_certificate: x509.Certificate | None,
    bundle_verifies_clients: bool,
) -> str | None:
    """Why a new CA bundle would lock the operator out, or None when it is safe.

    The target's own active certificate must still verify against the new bundle, and so must
    the certificate of the client sending it when that bundle is what client certificates are
    checked against (docs/behaviour.md §2, LOCKOUT), as the TLS stack will check them
    (docs/behaviour.md §3, trust).
    """
    if server_chain is not None and not chain_verifies(
        server_chain[0], server_chain[1:], new_bundle
    ):
        return (
            "the new CA bundle does not verify the target's own server certificate "
            f"(SHA-256 {crypto.fingerprint(server_chain[0])}); include its issuing CA"
        )
    if (
        bundle_verifies_clients
        and caller_certificate is not None
        # The TLS stack shows us only the caller's leaf: which intermediates it will send is
        # unknown, so the new bundle alone must verify it (an intermediate of the old bundle
        # is gone after the swap). Errs towards refusing.
        and not chain_verifies(caller_certificate, (), new_bundle)
    ):
        return (
            "the new CA bundle does not verify your own client certificate "
            f"({caller_certificate.subject.rfc4514_string()}); you would be locked out. "
            "Include its issuing CA"
        )
    return None
