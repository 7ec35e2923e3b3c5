"""The CertificateManagement and System/Time servicers: messages in, pki calls, messages out.

Every handler runs inside `_guarded`, which admits the caller (authentication and
authorization), audits refusals and turns every error into its status in one place
(`errors.abort_with`). Stream state lives in `transaction.StreamTransaction`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import grpc
from cryptography import x509

from gnoicert.common.rpc import CertRpc, SystemRpc
from gnoicert.daemon import crash_points, errors, policy
from gnoicert.daemon.audit import AuditRecord, Event, Outcome
from gnoicert.daemon.auth import Authenticator, AuthRequest
from gnoicert.daemon.listing import Listing
from gnoicert.daemon.load_validation import (
    Kind,
    check_csr_params,
    check_exists,
    check_lockout,
    csr_response,
    generate_key_and_csr,
    parse_bundle,
    prepare_load,
    stage_load,
)
from gnoicert.daemon.read_ahead import ReadAhead
from gnoicert.daemon.runtime import Caller, Runtime
from gnoicert.daemon.transaction import StreamTransaction
from gnoicert.pki import crypto
from gnoicert.pki import errors as pki
from gnoicert.pki.store import StoreView, Transaction
from gnoicert.proto import cert_pb2, cert_pb2_grpc, system_pb2, system_pb2_grpc

log = logging.getLogger(__name__)

_R = TypeVar("_R")
_Response = TypeVar(
    "_Response", cert_pb2.RotateCertificateResponse, cert_pb2.InstallCertificateResponse
)
_STREAM_RPCS = {Kind.ROTATE: CertRpc.ROTATE.path, Kind.INSTALL: CertRpc.INSTALL.path}
_ONEOF = {Kind.ROTATE: "rotate_request", Kind.INSTALL: "install_request"}
_ENDED_EARLY = {
    Kind.ROTATE: "the Rotate stream ended before finalize_rotation; "
    "the previous certificate stays in place",
    Kind.INSTALL: "the Install stream ended before load_certificate; nothing was installed",
}
Context = grpc.aio.ServicerContext[Any, Any]
_ClientCertificate = tuple[x509.Certificate | None, str | None]


class Gate:
    """Admits a caller: TLS facts from the connection, credentials from metadata."""

    def __init__(
        self,
        runtime: Runtime,
        authenticator: Authenticator,
        listener_mode: Callable[[], policy.TlsMode],
    ) -> None:
        self._runtime = runtime
        self.authenticator = authenticator
        self._listener_mode = listener_mode
        self._last_client: tuple[bytes, _ClientCertificate] = (b"", (None, None))

    async def admit(self, context: Context, rpc: str) -> Caller:
        peer = context.peer() or ""
        certificate, subject = self._client_certificate(context)
        metadata = {
            key: value
            for key, value in (context.invocation_metadata() or ())
            if isinstance(value, str)
        }
        mode = self._listener_mode()
        try:
            identity = await self.authenticator.authenticate_soon(
                AuthRequest(
                    rpc=rpc,
                    metadata=metadata,
                    peer=peer,
                    client_subject=subject,
                    mutual_tls=mode is policy.TlsMode.MUTUAL,
                    insecure=mode is policy.TlsMode.INSECURE,
                )
            )
        except (errors.Unauthenticated, errors.NotAuthorized) as exc:
            self._runtime.audit.record(
                AuditRecord(
                    event=Event.AUTH_FAILED,
                    rpc=rpc,
                    outcome=Outcome.REFUSED,
                    peer=peer,
                    identity=metadata.get("username", "") or (subject or ""),
                    reason=errors.reason_for(exc),
                    detail=str(exc),
                )
            )
            raise
        return Caller(rpc=rpc, peer=peer, identity=identity.describe(), certificate=certificate)

    def _client_certificate(self, context: Context) -> _ClientCertificate:
        """The verified client certificate of the call and its subject (RFC 4514), or Nones.

        The last one is kept: calls on one connection present the same certificate, and
        comparing it costs less than hashing it for the parse cache.
        """
        for pem in (context.auth_context() or {}).get("x509_pem_cert") or ():
            # The peer's own certificate comes first.
            last_pem, parsed = self._last_client
            if pem != last_pem:
                parsed = _parse_certificate(pem)
                self._last_client = (pem, parsed)
            return parsed
        return None, None


@functools.lru_cache(maxsize=64)
def _parse_certificate(pem: bytes) -> _ClientCertificate:
    """Parsed, and its subject written out, once per distinct client certificate, not on every
    call of a connection."""
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return None, None
    return certificate, certificate.subject.rfc4514_string()


def _stream_rpc(
    kind: Kind, response_type: Callable[..., _Response]
) -> Callable[..., AsyncIterator[_Response]]:
    """The handler of one stream RPC: `_serve_stream`, closed with the handler, not at GC."""

    async def handler(
        self: CertificateService, request_iterator: AsyncIterator[Any], context: Context
    ) -> AsyncGenerator[_Response, None]:
        stream = self._serve_stream(kind, request_iterator, context, response_type)
        async with contextlib.aclosing(stream) as responses:
            async for response in responses:
                yield response

    handler.__name__ = str(kind)  # "Rotate", "Install" in tracebacks
    return handler


class CertificateService(cert_pb2_grpc.CertificateManagementServicer):
    """gnoi.certificate.CertificateManagement over the PKI store (docs/behaviour.md §s 2 to 4)."""

    def __init__(
        self,
        runtime: Runtime,
        gate: Gate,
        *,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._runtime = runtime
        self._gate = gate
        self._on_change = on_change
        self._listing = Listing()

    # -- streams ------------------------------------------------------------------------------

    # Rotate and Install differ only in their kind and response type (docs/behaviour.md §3).
    Rotate = _stream_rpc(Kind.ROTATE, cert_pb2.RotateCertificateResponse)
    Install = _stream_rpc(Kind.INSTALL, cert_pb2.InstallCertificateResponse)

    async def _serve_stream(
        self,
        kind: Kind,
        requests: AsyncIterator[Any],
        context: Context,
        response_type: Callable[..., _Response],
    ) -> AsyncGenerator[_Response, None]:
        """One Install or Rotate stream: the message order of docs/behaviour.md §3.

        Install commits at its load and ends at once; Rotate commits on reading Finalize. The
        requests are read ahead (a read always posted, docs/behaviour.md §3).
        """
        caller = await self._admit_or_abort(context, _STREAM_RPCS[kind])
        stream = StreamTransaction(kind, self._runtime, caller, on_late_commit=self._on_change)
        reader = ReadAhead(requests)
        try:
            while True:
                request = await stream.next_request(reader)
                if request is None:
                    raise errors.NotFinalized(_ENDED_EARLY[kind])
                which = request.WhichOneof(_ONEOF[kind])
                if which == "generate_csr":
                    csr = await stream.generate_csr(request.generate_csr)
                    yield response_type(generated_csr=csr)
                elif which == "load_certificate":
                    await stream.load(request.load_certificate)
                    if kind is Kind.INSTALL:
                        self._after_change(context)
                    yield response_type(load_certificate=cert_pb2.LoadCertificateResponse())
                    if kind is Kind.INSTALL:
                        return
                elif which == "finalize_rotation":
                    await stream.finalize()
                    self._after_change(context)
                    return
                else:
                    cases = request.DESCRIPTOR.oneofs_by_name[_ONEOF[kind]].fields
                    raise errors.MalformedRequest(
                        f"empty {request.DESCRIPTOR.name}: set "
                        + " or ".join(field.name for field in cases)
                    )
        except Exception as exc:
            stream.end(exc)
            await self._abort(context, caller, exc)
        except (asyncio.CancelledError, GeneratorExit):
            # A cancel, or grpcio dropping the handler while it wrote: a Finalize already on
            # its way in still commits (docs/behaviour.md §3).
            try:
                await stream.salvage(reader)
            except Exception:  # its commit failed: end() below rolls back and audits it
                log.exception("%s: the commit of a Finalize read at the cancel failed", caller.rpc)
            raise
        finally:
            reader.close()
            stream.end(None)

    # -- unary ----------------------------------------------------------------------------------

    async def GenerateCSR(
        self, request: cert_pb2.GenerateCSRRequest, context: Context
    ) -> cert_pb2.GenerateCSRResponse:
        async def run(caller: Caller) -> cert_pb2.GenerateCSRResponse:
            cert_id = _required_id(request.certificate_id, "GenerateCSRRequest")
            check_csr_params(request.csr_params, self._runtime.grpc)
            store = self._runtime.store
            if store.is_locked(cert_id):
                raise pki.ResourceBusy(_busy(cert_id))
            key, csr_pem = await generate_key_and_csr(
                request.csr_params, self._runtime.grpc, self._runtime.key_pool
            )
            expires = time.time_ns() + int(self._runtime.grpc.pending_key_lifetime_s * 1e9)
            await asyncio.to_thread(
                store.put_pending_key, cert_id, crypto.private_key_to_pem(key), expires_ns=expires
            )
            self._audit(
                caller, Event.GENERATE_CSR, Outcome.OK, cert_id=cert_id, detail="pending key kept"
            )
            return csr_response(csr_pem)

        return await self._guarded(context, CertRpc.GENERATE_CSR.path, run)

    async def LoadCertificate(
        self, request: cert_pb2.LoadCertificateRequest, context: Context
    ) -> cert_pb2.LoadCertificateResponse:
        async def prepare(caller: Caller) -> _Stage:
            cert_id = _required_id(request.certificate_id, "LoadCertificateRequest")
            store = self._runtime.store

            async def stage(tx: Transaction) -> list[Change]:
                tx.lock(cert_id)
                if request.ca_certificates:
                    tx.lock_bundle()  # before the checks that judge the bundle it replaces
                csr_key = None
                if not request.key_pair.private_key:
                    pending = await asyncio.to_thread(store.pending_key, cert_id)
                    if pending is None:
                        raise errors.MalformedRequest(
                            f"no pending key for certificate ID '{cert_id}' (none generated, or "
                            "it expired): call GenerateCSR first, or send key_pair"
                        )
                    csr_key = crypto.load_private_key(pending, trusted=True)  # made here
                    tx.consume_pending_key(cert_id)
                view = store.view()
                # New ID: an install; existing ID: an atomic replacement, with either kind of
                # key (docs/behaviour.md §4), validated like a Rotate's load.
                old = view.entities.get(cert_id)
                prepared = await asyncio.to_thread(
                    prepare_load,
                    request,
                    cert_id=cert_id,
                    csr_key=csr_key,
                    view=view,
                    runtime=self._runtime,
                    caller=caller,
                )
                stage_load(tx, prepared)
                return [
                    Change(
                        Event.LOAD,
                        cert_id,
                        old=old.fingerprint if old else "",
                        new=prepared.fingerprint,
                        detail="replaced" if old else "installed",
                    )
                ]

            return stage

        return await self._guarded_change(
            context, CertRpc.LOAD_CERTIFICATE.path, prepare, cert_pb2.LoadCertificateResponse()
        )

    async def LoadCertificateAuthorityBundle(
        self, request: cert_pb2.LoadCertificateAuthorityBundleRequest, context: Context
    ) -> cert_pb2.LoadCertificateAuthorityBundleResponse:
        async def prepare(caller: Caller) -> _Stage:
            if not request.ca_certificates:
                raise pki.EmptyBundle(
                    "the CA bundle is empty; send at least one CA certificate "
                    f"(to remove the bundle, revoke '{crypto.CA_BUNDLE_ID}')"
                )
            bundle = await asyncio.to_thread(parse_bundle, request.ca_certificates)

            async def stage(tx: Transaction) -> list[Change]:
                tx.lock_bundle()
                view = self._runtime.store.view()
                await asyncio.to_thread(
                    check_lockout, bundle, runtime=self._runtime, view=view, caller=caller
                )
                bundle_pem = crypto.certificates_to_pem(bundle)
                tx.replace_bundle(bundle_pem)
                return [
                    Change(
                        Event.BUNDLE_LOAD,
                        crypto.CA_BUNDLE_ID,
                        old=crypto.bundle_fingerprint(view.ca_bundle_pem),
                        new=crypto.bundle_fingerprint(bundle_pem),
                        detail=f"{len(bundle)} CA certificates",
                    )
                ]

            return stage

        return await self._guarded_change(
            context,
            CertRpc.LOAD_CERTIFICATE_AUTHORITY_BUNDLE.path,
            prepare,
            cert_pb2.LoadCertificateAuthorityBundleResponse(),
        )

    async def GetCertificates(
        self, request: cert_pb2.GetCertificatesRequest, context: Context
    ) -> cert_pb2.GetCertificatesResponse:
        async def run(caller: Caller) -> cert_pb2.GetCertificatesResponse:
            view = self._runtime.store.committed_view()
            return self._listing.response(view, self._runtime.grpc.local_certificate)

        return await self._guarded(context, CertRpc.GET_CERTIFICATES.path, run)

    async def RevokeCertificates(
        self, request: cert_pb2.RevokeCertificatesRequest, context: Context
    ) -> cert_pb2.RevokeCertificatesResponse:
        async def run(caller: Caller) -> cert_pb2.RevokeCertificatesResponse:
            return await self._revoke(caller, list(request.certificate_id), context)

        return await self._guarded(context, CertRpc.REVOKE_CERTIFICATES.path, run)

    async def CanGenerateCSR(
        self, request: cert_pb2.CanGenerateCSRRequest, context: Context
    ) -> cert_pb2.CanGenerateCSRResponse:
        async def run(caller: Caller) -> cert_pb2.CanGenerateCSRResponse:
            params = cert_pb2.CSRParams(
                type=request.certificate_type,
                key_type=request.key_type,
                min_key_size=request.key_size,
            )
            # Exactly when GenerateCSR would accept: key_size is a minimum, so anything from 0
            # to the largest configured size is met (docs/behaviour.md §4).
            try:
                check_csr_params(params, self._runtime.grpc)
            except pki.UnsupportedKey:
                return cert_pb2.CanGenerateCSRResponse(can_generate=False)
            return cert_pb2.CanGenerateCSRResponse(can_generate=True)

        return await self._guarded(context, CertRpc.CAN_GENERATE_CSR.path, run)

    # -- revoke -------------------------------------------------------------------------------

    async def _revoke(
        self, caller: Caller, cert_ids: list[str], context: Context
    ) -> cert_pb2.RevokeCertificatesResponse:
        """Each ID on its own: a refused one (locked, say) is reported, the others go ahead."""
        response = cert_pb2.RevokeCertificatesResponse()
        revoked: list[Change] = []

        async def stage(tx: Transaction) -> list[Change]:
            view = self._runtime.store.view()
            for cert_id in dict.fromkeys(cert_ids):  # each ID once, in request order
                try:
                    old = self._stage_revocation(tx, view, cert_id)
                    removed = bool(old) or cert_id == crypto.CA_BUNDLE_ID
                    revoked.append(
                        Change(
                            Event.REVOKE,
                            cert_id,
                            old=old,
                            detail="removed" if removed else "not present",
                        )
                    )
                except (pki.PkiError, errors.TargetError) as exc:
                    response.certificate_revocation_error.append(
                        cert_pb2.CertificateRevocationError(
                            certificate_id=cert_id, error_message=str(exc)
                        )
                    )
                    self._audit(
                        caller,
                        Event.REVOKE,
                        Outcome.REFUSED,
                        cert_id=cert_id,
                        reason=errors.reason_for(exc),
                        detail=str(exc),
                    )
            return revoked

        await self._commit_change(context, caller, stage)
        response.revoked_certificate_id.extend(change.cert_id for change in revoked)
        return response

    def _stage_revocation(self, tx: Transaction, view: StoreView, cert_id: str) -> str:
        """Stage removal of cert_id (or empty the bundle); returns the old fingerprint."""
        if cert_id == crypto.CA_BUNDLE_ID:
            tx.lock_bundle()
            self._check_bundle_revocable(view)
            tx.replace_bundle(b"")
            return crypto.bundle_fingerprint(view.ca_bundle_pem)
        tx.lock(cert_id)
        entity = view.entities.get(cert_id)
        if entity is None:
            return ""
        tx.delete(cert_id)
        return entity.fingerprint

    def _check_bundle_revocable(self, view: StoreView) -> None:
        """Emptying the bundle drops mutual TLS; without users nobody could log in again."""
        if self._runtime.insecure or not view.ca_bundle_pem.strip():
            return
        trust = self._runtime.client_trust(view.ca_bundle_pem)
        if trust.uses_store_bundle and not self._gate.authenticator.users:
            raise errors.Lockout(
                f"revoking '{crypto.CA_BUNDLE_ID}' switches the server to server-only TLS, "
                "which authenticates by username and password, and no users are configured; "
                "add one with 'gnoicertd passwd' first"
            )

    # -- plumbing -----------------------------------------------------------------------------

    async def _admit_or_abort(self, context: Context, rpc: str) -> Caller:
        try:
            return await self._gate.admit(context, rpc)
        except Exception as exc:
            await errors.abort_with(context, exc)

    async def _guarded(
        self, context: Context, rpc: str, run: Callable[[Caller], Awaitable[_R]]
    ) -> _R:
        caller = await self._admit_or_abort(context, rpc)
        try:
            return await run(caller)
        except Exception as exc:
            await self._abort(context, caller, exc)

    async def _guarded_change(
        self,
        context: Context,
        rpc: str,
        prepare: Callable[[Caller], Awaitable[_Stage]],
        response: _R,
    ) -> _R:
        """A unary RPC that is one change: checks, then the staged change; `response` once
        it is committed."""

        async def run(caller: Caller) -> _R:
            await self._commit_change(context, caller, await prepare(caller))
            return response

        return await self._guarded(context, rpc, run)

    async def _abort(self, context: Context, caller: Caller, exc: BaseException) -> NoReturn:
        if isinstance(exc, grpc.aio.AbortError):
            raise exc
        code, reason = errors.status_for(exc)
        if code is grpc.StatusCode.INTERNAL:
            log.error("%s failed", caller.rpc, exc_info=exc)
        self._audit(
            caller, Event.REFUSED, Outcome.REFUSED, reason=reason, detail=errors.message_for(exc)
        )
        await errors.abort_with(context, exc)

    async def _commit_change(
        self,
        context: Context,
        caller: Caller,
        stage: _Stage,
    ) -> None:
        """One unary change: stage it on a new transaction, commit, then audit and follow up.

        stage returns the changes to audit. Their intent records go out before the commit, so a
        crash between the commit and the outcome records leaves them open for the restart to
        close (docs/behaviour.md §8). Any error before the commit rolls everything back;
        nothing staged means nothing to commit.
        """
        tx = self._runtime.store.begin()
        commit: asyncio.Future[StoreView] | None = None
        try:
            changes = await stage(tx)
            if tx.has_changes:
                self._record(caller, changes, Outcome.INTENT)
                commit = _commit_in_thread(tx)
                await self._await_commit(commit, lambda ok: self._closed(caller, changes, ok))
        finally:
            if commit is None:
                tx.rollback()
        if commit is None:
            self._record(caller, changes, Outcome.COMMITTED)  # nothing to change: done as asked
        else:
            self._after_change(context)

    async def _await_commit(
        self, commit: asyncio.Future[StoreView], close: Callable[[bool], None]
    ) -> None:
        """Await a commit, then close its intent records. If the RPC is cancelled meanwhile,
        the commit still lands (never half done), and its records and the listener change
        follow when it does."""
        try:
            await asyncio.shield(commit)
        except asyncio.CancelledError:

            def landed(done: asyncio.Future[StoreView]) -> None:
                ok = not done.cancelled() and done.exception() is None
                close(ok)
                if ok:
                    self._on_change()  # the RPC has ended already

            commit.add_done_callback(landed)
            raise
        except Exception:
            close(False)
            raise
        close(True)

    def _closed(self, caller: Caller, changes: list[Change], committed: bool) -> None:
        if committed:
            self._record(caller, changes, Outcome.COMMITTED)
        else:  # the store rolled itself back
            self._record(caller, changes, Outcome.ROLLED_BACK, reason="STORE_FAILURE")

    def _record(
        self, caller: Caller, changes: list[Change], outcome: Outcome, *, reason: str = ""
    ) -> None:
        for change in changes:
            self._audit(
                caller,
                change.event,
                outcome,
                cert_id=change.cert_id,
                old=change.old,
                new=change.new,
                reason=reason,
                detail=change.detail if outcome is not Outcome.INTENT else "about to commit",
            )

    def _after_change(self, context: Context) -> None:
        """Listener changes (mode switch) wait until the RPC that caused them has ended."""
        context.add_done_callback(lambda _context: self._on_change())  # type: ignore[arg-type]

    def _audit(
        self,
        caller: Caller,
        event: Event,
        outcome: Outcome,
        *,
        cert_id: str = "",
        old: str = "",
        new: str = "",
        reason: str = "",
        detail: str = "",
    ) -> None:
        self._runtime.audit.record(
            AuditRecord(
                event=event,
                rpc=caller.rpc,
                outcome=outcome,
                peer=caller.peer,
                identity=caller.identity,
                certificate_id=cert_id,
                old_fingerprint=old,
                new_fingerprint=new,
                reason=reason,
                detail=detail,
            )
        )


class SystemService(system_pb2_grpc.SystemServicer):
    """gnoi.system.System with Time only; the other System RPCs are not served."""

    def __init__(self, gate: Gate) -> None:
        self._gate = gate

    async def Time(
        self, request: system_pb2.TimeRequest, context: Context
    ) -> system_pb2.TimeResponse:
        try:
            await self._gate.admit(context, SystemRpc.TIME.path)
        except Exception as exc:
            await errors.abort_with(context, exc)
        return system_pb2.TimeResponse(time=time.time_ns())


def _required_id(cert_id: str, message: str) -> str:
    if not cert_id:
        raise errors.MalformedRequest(f"{message}.certificate_id is required")
    return crypto.validate_certificate_id(cert_id)


def _busy(cert_id: str) -> str:
    return f"certificate ID '{cert_id}' is being changed by another operation; retry when it ends"


def _commit_in_thread(tx: Transaction) -> asyncio.Future[StoreView]:
    """The commit runs to its end even if the RPC is cancelled meanwhile (never half done)."""
    return asyncio.ensure_future(asyncio.to_thread(crash_points.commit, tx))


@dataclass(frozen=True, slots=True)
class Change:
    """One audited part of a unary change: an ID (or the bundle) and its fingerprints."""

    event: Event
    cert_id: str
    old: str = ""
    new: str = ""
    detail: str = ""


_Stage = Callable[[Transaction], Awaitable[list[Change]]]
"""Stages a change on the transaction it is given; returns what to audit."""


__all__ = ["CertificateService", "Gate", "SystemService", "check_exists"]
