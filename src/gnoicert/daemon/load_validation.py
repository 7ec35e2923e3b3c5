"""The checks a certificate load passes before anything is staged, shared by the Install and
Rotate streams and the unary LoadCertificate (docs/behaviour.md §s 3 and 4): message parsing,
CSR parameters, the key and chain checks, the lockout guard, and staging what passed.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from gnoicert.daemon import errors, policy
from gnoicert.daemon.config import GrpcConfig
from gnoicert.daemon.key_pool import KeyPool
from gnoicert.daemon.runtime import Caller, Runtime
from gnoicert.pki import crypto
from gnoicert.pki import errors as pki
from gnoicert.pki.chain import check_leaf
from gnoicert.pki.store import CertificateEntity, KeyOrigin, StoreView, Transaction
from gnoicert.proto import cert_pb2

_X509_TYPES = (cert_pb2.CT_UNKNOWN, cert_pb2.CT_X509)
_RSA_TYPES = (cert_pb2.KT_UNKNOWN, cert_pb2.KT_RSA)


class Kind(enum.StrEnum):
    INSTALL = "Install"
    ROTATE = "Rotate"


def check_csr_params(params: cert_pb2.CSRParams, grpc: GrpcConfig) -> int:
    """The RSA key size for these parameters, or UnsupportedKey (docs/behaviour.md §s 4 and 5)."""
    if params.type not in _X509_TYPES:
        raise pki.UnsupportedKey(f"certificate type {params.type} is not supported; use CT_X509")
    if params.key_type not in _RSA_TYPES:
        raise pki.UnsupportedKey(
            f"key type {params.key_type} is not supported; the target generates KT_RSA keys "
            "(send your own key pair for other key types)"
        )
    return grpc.rsa_key_size(params.min_key_size)


def subject_of(params: cert_pb2.CSRParams) -> crypto.CsrSubject:
    """CsrSubject names its fields as CSRParams does: it is the one list of subject fields."""
    return crypto.CsrSubject(**crypto.subject_fields(params))


async def generate_key_and_csr(
    params: cert_pb2.CSRParams, grpc: GrpcConfig, pool: KeyPool | None = None
) -> tuple[crypto.PrivateKey, bytes]:
    """A fresh key (never reused: from the pool, which hands each out once, or made now off the
    event loop) and its PEM CSR."""
    size = check_csr_params(params, grpc)
    subject = subject_of(params)
    if pool is None:
        key = await asyncio.to_thread(crypto.generate_rsa_key, size)
    else:
        key = await pool.key(size)
    return key, crypto.build_csr(key, subject)


def csr_response(csr_pem: bytes) -> cert_pb2.GenerateCSRResponse:
    return cert_pb2.GenerateCSRResponse(csr=cert_pb2.CSR(type=cert_pb2.CT_X509, csr=csr_pem))


def parse_certificate_field(cert: cert_pb2.Certificate, what: str) -> list[x509.Certificate]:
    if cert.type not in _X509_TYPES:
        raise pki.BadEncoding(f"{what}: certificate type {cert.type} is not supported; use CT_X509")
    if not cert.certificate:
        raise errors.MalformedRequest(f"{what}: the certificate bytes are empty")
    try:
        return crypto.load_certificates(cert.certificate)
    except pki.BadEncoding as exc:
        raise pki.BadEncoding(f"{what}: {exc}") from None


def parse_bundle(certificates: Sequence[cert_pb2.Certificate]) -> tuple[x509.Certificate, ...]:
    parsed: list[x509.Certificate] = []
    for index, cert in enumerate(certificates):
        parsed.extend(parse_certificate_field(cert, f"ca_certificates[{index}]"))
    return tuple(parsed)


def check_exists(view: StoreView, cert_id: str, kind: Kind) -> None:
    """Install needs a new ID, Rotate an existing one (checked again at commit)."""
    present = cert_id in view.entities
    if kind is Kind.INSTALL and present:
        raise pki.CertificateExists(
            f"certificate ID '{cert_id}' already exists; use Rotate to replace it"
        )
    if kind is Kind.ROTATE and not present:
        raise pki.CertificateNotFound(
            f"certificate ID '{cert_id}' does not exist; use Install to add it"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedLoad:
    """A certificate (and maybe a bundle) that passed every check, ready to stage."""

    cert_id: str
    certificate_pem: bytes
    chain_pem: bytes
    private_key_pem: bytes
    key_origin: KeyOrigin
    fingerprint: str
    bundle_pem: bytes | None


def prepare_load(
    request: cert_pb2.LoadCertificateRequest,
    *,
    cert_id: str,
    csr_key: crypto.PrivateKey | None,
    view: StoreView,
    runtime: Runtime,
    caller: Caller,
) -> PreparedLoad:
    """Every check of docs/behaviour.md §3 ("Validation at load"), before anything changes.

    Blocking (chain verification against a large bundle): run it off the event loop.
    """
    if not request.HasField("certificate"):
        raise errors.MalformedRequest("load_certificate carries no certificate")
    certificates = parse_certificate_field(request.certificate, "certificate")
    leaf, intermediates = certificates[0], tuple(certificates[1:])

    if request.key_pair.private_key:
        key = crypto.load_private_key(request.key_pair.private_key)
        supplied_public = crypto.load_public_key(request.key_pair.public_key)
        if supplied_public is not None and supplied_public.public_numbers() != (
            key.public_key().public_numbers()
        ):
            raise pki.KeyMismatch("key_pair.public_key does not belong to key_pair.private_key")
        crypto.check_key_matches(leaf, key)
        origin = KeyOrigin.CLIENT
    elif csr_key is not None:
        crypto.check_csr_key(leaf, csr_key.public_key())
        key = csr_key
        origin = KeyOrigin.TARGET
    else:
        raise errors.MalformedRequest(
            f"no key for certificate ID '{cert_id}': send generate_csr first, "
            "or send key_pair with the certificate"
        )

    bundle = parse_bundle(request.ca_certificates) if request.ca_certificates else None
    anchors = bundle if bundle is not None else view.ca_bundle
    check_leaf(leaf, intermediates, anchors)
    if bundle is not None:
        check_lockout(
            bundle,
            runtime=runtime,
            view=view,
            caller=caller,
            replaced=(cert_id, (leaf, *intermediates)),
        )
    return PreparedLoad(
        cert_id=cert_id,
        certificate_pem=crypto.certificates_to_pem([leaf]),
        chain_pem=crypto.certificates_to_pem(intermediates),
        private_key_pem=crypto.private_key_to_pem(key),
        key_origin=origin,
        fingerprint=crypto.fingerprint(leaf),
        bundle_pem=None if bundle is None else crypto.certificates_to_pem(bundle),
    )


def check_lockout(
    bundle: tuple[x509.Certificate, ...],
    *,
    runtime: Runtime,
    view: StoreView,
    caller: Caller,
    replaced: tuple[str, tuple[x509.Certificate, ...]] | None = None,
) -> None:
    """Refuse a bundle that would lock the operator out (docs/behaviour.md §2, LOCKOUT)."""
    local_id = runtime.grpc.local_certificate
    server_chains: list[tuple[x509.Certificate, ...] | None] = []
    if replaced is not None and replaced[0] == local_id:
        server_chains.append(replaced[1])
    else:
        # A Rotate of the server's certificate may be in effect: if it rolls back, the
        # committed certificate is served again. The bundle must verify whichever ends up served.
        served = (
            policy.server_entity(runtime.grpc, v) for v in (view, runtime.store.committed_view())
        )
        entities = {entity.fingerprint: entity for entity in served if entity is not None}
        server_chains.extend(policy.entity_chain(entity) for entity in entities.values())
    trust = runtime.client_trust(view.ca_bundle_pem)
    for index, server_chain in enumerate(server_chains or [None]):
        reason = policy.bundle_locks_out(
            bundle,
            server_chain=server_chain,
            caller_certificate=caller.certificate if index == 0 else None,
            bundle_verifies_clients=trust.uses_store_bundle and not runtime.insecure,
        )
        if reason is not None:
            raise errors.Lockout(reason)


def stage_load(tx: Transaction, prepared: PreparedLoad) -> CertificateEntity:
    if prepared.bundle_pem is not None:
        tx.lock_bundle()
        tx.replace_bundle(prepared.bundle_pem)
    return tx.put(
        prepared.cert_id,
        certificate_pem=prepared.certificate_pem,
        chain_pem=prepared.chain_pem,
        private_key_pem=prepared.private_key_pem,
        key_origin=prepared.key_origin,
    )
