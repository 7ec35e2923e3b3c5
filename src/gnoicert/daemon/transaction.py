"""Install and Rotate as one transaction per stream, and the load validation they share with
the unary LoadCertificate (docs/behaviour.md §s 3 and 4).

A StreamTransaction owns one store transaction: it locks the ID at the first message that names
it, validates everything before staging anything, applies a Rotate (in effect, not committed)
until Finalize, and rolls back on every other ending. `end()` is synchronous and idempotent so it
can run in a `finally` even while the handler is being cancelled.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from cryptography import x509

from gnoicert.daemon import errors, policy
from gnoicert.daemon.audit import AuditLog, AuditRecord
from gnoicert.daemon.config import GrpcConfig
from gnoicert.pki import crypto
from gnoicert.pki import errors as pki
from gnoicert.pki.chain import check_leaf
from gnoicert.pki.store import CertificateEntity, KeyOrigin, Store, StoreView, Transaction
from gnoicert.proto import cert_pb2

log = logging.getLogger(__name__)
_T = TypeVar("_T")

_X509_TYPES = (cert_pb2.CT_UNKNOWN, cert_pb2.CT_X509)
_RSA_TYPES = (cert_pb2.KT_UNKNOWN, cert_pb2.KT_RSA)


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


class Kind(enum.StrEnum):
    INSTALL = "Install"
    ROTATE = "Rotate"


class _Step(enum.Enum):
    START = enum.auto()
    CSR_GENERATED = enum.auto()
    LOADED = enum.auto()
    ENDED = enum.auto()


# -- shared by the streams and the unary RPCs -------------------------------------------------


def check_csr_params(params: cert_pb2.CSRParams, key_sizes: Sequence[int]) -> int:
    """The RSA key size for these parameters, or UnsupportedKey (docs/behaviour.md §s 4 and 5)."""
    if params.type not in _X509_TYPES:
        raise pki.UnsupportedKey(f"certificate type {params.type} is not supported; use CT_X509")
    if params.key_type not in _RSA_TYPES:
        raise pki.UnsupportedKey(
            f"key type {params.key_type} is not supported; the target generates KT_RSA keys "
            "(send your own key pair for other key types)"
        )
    return crypto.choose_rsa_key_size(params.min_key_size, key_sizes)


def subject_of(params: cert_pb2.CSRParams) -> crypto.CsrSubject:
    return crypto.CsrSubject(
        common_name=params.common_name,
        country=params.country,
        state=params.state,
        city=params.city,
        organization=params.organization,
        organizational_unit=params.organizational_unit,
        ip_address=params.ip_address,
        email_id=params.email_id,
    )


async def generate_key_and_csr(
    params: cert_pb2.CSRParams, key_sizes: Sequence[int]
) -> tuple[crypto.PrivateKey, bytes]:
    """A fresh key (never reused) and its PEM CSR; key generation runs off the event loop."""
    size = check_csr_params(params, key_sizes)
    subject = subject_of(params)
    key = await asyncio.to_thread(crypto.generate_rsa_key, size)
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


# -- the stream transaction ---------------------------------------------------------------------


class StreamTransaction:
    """The state machine of one Install or Rotate stream (docs/behaviour.md §3)."""

    def __init__(
        self,
        kind: Kind,
        runtime: Runtime,
        caller: Caller,
        *,
        on_late_commit: Callable[[], None] = lambda: None,
    ) -> None:
        """on_late_commit runs when a commit lands after the stream has ended (a client that
        cancels right after Finalize): the handler is gone, so it cannot follow up itself."""
        self._kind = kind
        self._runtime = runtime
        self._caller = caller
        self._on_late_commit = on_late_commit
        self._tx = runtime.store.begin()
        self._step = _Step.START
        self._cert_id = ""
        self._csr_key: crypto.PrivateKey | None = None
        self._old_fingerprint = ""
        self._new_fingerprint = ""
        self._deadline: float | None = None  # loop time; set once the stream holds an ID
        self._commit: asyncio.Future[StoreView] | None = None
        self._committed = False

    async def next_request(self, requests: AsyncIterator[_T]) -> _T | None:
        """The next stream message, bounded by the deadline once the stream holds an ID.

        The finalize deadline runs from the message that claimed the ID to the load, and
        again from a Rotate's load to Finalize: a client that stops talking (or vanished
        without closing its connection) cannot hold a certificate ID for longer.
        """
        if self._deadline is None:
            request = await anext(requests, None)
        else:
            remaining = self._deadline - asyncio.get_running_loop().time()
            try:
                request = await asyncio.wait_for(anext(requests, None), timeout=max(remaining, 0.0))
            except TimeoutError:
                waited = self._runtime.grpc.finalize_timeout_s
                if self._step is _Step.LOADED:
                    raise errors.FinalizeTimeout(
                        f"no finalize_rotation within {waited:g} s of the load response; "
                        f"certificate ID '{self._cert_id}' was rolled back"
                    ) from None
                raise errors.FinalizeTimeout(
                    f"no load_certificate within {waited:g} s of the message that named "
                    f"certificate ID '{self._cert_id}'; the ID was released, nothing changed"
                ) from None
        if request is None and self._runtime.stopping:
            raise errors.ShuttingDown(
                f"the target is shutting down; this {self._kind} was rolled back, retry it "
                "when the target is back"
            )
        return request

    async def generate_csr(
        self, request: cert_pb2.GenerateCSRRequest
    ) -> cert_pb2.GenerateCSRResponse:
        if self._step is not _Step.START:
            raise errors.MalformedRequest(
                f"generate_csr must be the first message of a {self._kind} stream"
            )
        if request.certificate_id:
            self._claim(request.certificate_id)
        self._csr_key, csr_pem = await generate_key_and_csr(
            request.csr_params, self._runtime.grpc.key_sizes
        )
        self._step = _Step.CSR_GENERATED
        return csr_response(csr_pem)

    async def load(self, request: cert_pb2.LoadCertificateRequest) -> None:
        if self._step not in (_Step.START, _Step.CSR_GENERATED):
            raise errors.MalformedRequest(f"a {self._kind} stream takes one load_certificate")
        if request.certificate_id and self._cert_id and request.certificate_id != self._cert_id:
            raise errors.MalformedRequest(
                f"load_certificate names certificate ID '{request.certificate_id}' but "
                f"generate_csr named '{self._cert_id}'"
            )
        if not self._cert_id:
            if not request.certificate_id:
                raise errors.MalformedRequest(
                    "no certificate_id: set it in generate_csr or load_certificate"
                )
            self._claim(request.certificate_id)
        if request.ca_certificates:
            # Held from here: the lockout and mode checks must judge the bundle they replace.
            self._tx.lock_bundle()
        csr_key = None if request.key_pair.private_key else self._csr_key
        view = self._runtime.store.view()
        prepared = await asyncio.to_thread(
            prepare_load,
            request,
            cert_id=self._cert_id,
            csr_key=csr_key,
            view=view,
            runtime=self._runtime,
            caller=self._caller,
        )
        self._new_fingerprint = prepared.fingerprint
        if (
            self._kind is Kind.ROTATE
            and prepared.bundle_pem is not None
            and self._runtime.tls_mode(prepared.bundle_pem)
            != self._runtime.tls_mode(view.ca_bundle_pem)
        ):
            raise errors.AuthModeChange(
                "this Rotate would change the server's TLS mode mid-stream (the first CA bundle "
                "switches server-only TLS to mutual TLS); load the bundle with "
                "LoadCertificateAuthorityBundle or Install first"
            )
        check_exists(self._runtime.store.view(), self._cert_id, self._kind)
        stage_load(self._tx, prepared)
        self._step = _Step.LOADED
        if self._kind is Kind.INSTALL:
            await self._commit_now()
            return
        # Subscribers (the credential manager: key checks, tens of ms for RSA) run in the thread
        # that applies: keep them off the event loop.
        await asyncio.to_thread(self._tx.apply)
        self._start_deadline()
        self._audit("rotate", "applied", detail="in effect for new handshakes; awaiting finalize")

    async def finalize(self) -> None:
        if self._kind is not Kind.ROTATE or self._step is not _Step.LOADED:
            raise errors.MalformedRequest("finalize_rotation must follow load_certificate")
        await self._commit_now()

    def end(self, error: BaseException | None) -> None:
        """Roll back unless committed (or committing); idempotent, synchronous, never raises."""
        previous, self._step = self._step, _Step.ENDED
        if previous is _Step.ENDED or self._committed:
            return
        if self._commit is not None and not self._commit.done():
            # The commit runs on in its thread: it either lands (the client's Finalize was
            # read) or the store rolls itself back. Either way nothing is left half done.
            self._commit.add_done_callback(self._after_detached_commit)
            return
        try:
            self._tx.rollback()
        except Exception:  # the store keeps its own state consistent; report, do not raise
            log.exception("rollback of %s '%s' failed", self._kind, self._cert_id)
        if self._cert_id or previous is not _Step.START:
            reason = errors.reason_for(error) if error is not None else "CANCELLED"
            self._audit(self._kind.lower(), "rolled_back", reason=reason)

    # -- internals ----------------------------------------------------------------------------

    def _start_deadline(self) -> None:
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + self._runtime.grpc.finalize_timeout_s

    def _claim(self, cert_id: str) -> None:
        self._tx.lock(cert_id)
        self._cert_id = cert_id
        self._start_deadline()
        view = self._runtime.store.view()
        check_exists(view, cert_id, self._kind)
        existing = view.entities.get(cert_id)
        self._old_fingerprint = existing.fingerprint if existing is not None else ""

    async def _commit_now(self) -> None:
        check_exists(self._runtime.store.committed_view(), self._cert_id, self._kind)
        self._commit = asyncio.ensure_future(asyncio.to_thread(self._tx.commit))
        await asyncio.shield(self._commit)
        self._committed = True
        self._audit(self._kind.lower(), "committed")

    def _after_detached_commit(self, future: asyncio.Future[StoreView]) -> None:
        if future.cancelled() or future.exception() is not None:
            self._audit(self._kind.lower(), "rolled_back", reason="STORE_FAILURE")
        else:
            self._committed = True
            self._audit(self._kind.lower(), "committed", detail="committed as the stream ended")
            self._on_late_commit()

    def _audit(self, event: str, outcome: str, *, reason: str = "", detail: str = "") -> None:
        self._runtime.audit.record(
            AuditRecord(
                event=event,
                rpc=self._caller.rpc,
                outcome=outcome,
                peer=self._caller.peer,
                identity=self._caller.identity,
                certificate_id=self._cert_id,
                old_fingerprint=self._old_fingerprint,
                new_fingerprint=self._new_fingerprint,
                reason=reason,
                detail=detail,
            )
        )
