"""Install and Rotate as one transaction per stream (docs/behaviour.md §3).

A StreamTransaction owns one store transaction: it locks the ID at the first message that names
it, validates everything (load_validation) before staging anything, applies a Rotate (in
effect, not committed) until Finalize, and rolls back on every other ending. `end()` is
synchronous and idempotent so it can run in a `finally` even while the handler is being
cancelled.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from typing import TypeVar

from gnoicert.daemon import crash_points, errors
from gnoicert.daemon.audit import AuditRecord, Event, Outcome
from gnoicert.daemon.load_validation import (
    Kind,
    check_exists,
    csr_response,
    generate_key_and_csr,
    prepare_load,
    stage_load,
)
from gnoicert.daemon.read_ahead import ReadAhead
from gnoicert.daemon.runtime import Caller, Runtime
from gnoicert.pki import crypto
from gnoicert.pki.store import StoreView
from gnoicert.proto import cert_pb2

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_EVENTS = {Kind.INSTALL: Event.INSTALL, Kind.ROTATE: Event.ROTATE}
# How long a cancelled Rotate waits for its read in flight; grpcio ends that read at once, so
# this only bounds a read that never ends.
SETTLE_S = 2.0


class _Step(enum.Enum):
    START = enum.auto()
    CSR_GENERATED = enum.auto()
    LOADED = enum.auto()
    ENDED = enum.auto()


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

    async def next_request(self, requests: ReadAhead[_T]) -> _T | None:
        """The next stream message, bounded by the deadline once the stream holds an ID.

        The finalize deadline runs from the message that claimed the ID to the load, and
        again from a Rotate's load to Finalize: a client that stops talking (or vanished
        without closing its connection) cannot hold a certificate ID for longer.
        """
        if self._deadline is None:
            request = await requests.next()
        else:
            remaining = self._deadline - asyncio.get_running_loop().time()
            try:
                request = await asyncio.wait_for(requests.next(), timeout=max(remaining, 0.0))
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
            request.csr_params, self._runtime.grpc, self._runtime.key_pool
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
        # One thread hop for the whole load: the checks, and for a Rotate the apply, whose
        # subscribers (the credential manager: key checks, tens of ms for RSA) run in the
        # thread that applies. Keep them all off the event loop.
        await asyncio.to_thread(self._check_and_stage, request, csr_key)
        self._step = _Step.LOADED
        if self._kind is Kind.INSTALL:
            await self._commit_now()
            return
        self._start_deadline()
        self._audit(
            Event.ROTATE, Outcome.APPLIED, detail="in effect for new handshakes; awaiting finalize"
        )

    def _check_and_stage(
        self, request: cert_pb2.LoadCertificateRequest, csr_key: crypto.PrivateKey | None
    ) -> None:
        """Every check of the load, then stage it (and apply a Rotate's). Blocking."""
        view = self._runtime.store.view()
        prepared = prepare_load(
            request,
            cert_id=self._cert_id,
            csr_key=csr_key,
            view=view,
            runtime=self._runtime,
            caller=self._caller,
        )
        self._new_fingerprint = prepared.fingerprint  # in the rollback record if refused below
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
        if self._kind is Kind.ROTATE:
            self._tx.apply()

    async def finalize(self) -> None:
        if self._kind is not Kind.ROTATE or self._step is not _Step.LOADED:
            raise errors.MalformedRequest("finalize_rotation must follow load_certificate")
        await self._commit_now()

    async def salvage(self, requests: ReadAhead[cert_pb2.RotateCertificateRequest]) -> None:
        """The handler is being cancelled: commit if the read in flight delivers Finalize.

        A client that writes Finalize and cancels at once (docs/behaviour.md §9) can have its
        cancel reach the handler before the Finalize that preceded it on the wire. Only a
        Finalize read next, in order, after the load and within the finalize deadline commits;
        everything else is left to end()'s rollback.
        """
        if self._kind is not Kind.ROTATE or self._step is not _Step.LOADED or self._commit:
            return
        assert self._deadline is not None  # set by the load
        remaining = self._deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return
        request = await requests.settle(min(remaining, SETTLE_S))
        if request is None or request.WhichOneof("rotate_request") != "finalize_rotation":
            return
        await self._commit_now(detail="finalize_rotation read as the stream was cancelled")
        self._on_late_commit()  # the RPC is ending: its handler cannot follow up

    def end(self, error: BaseException | None) -> None:
        """Roll back unless committed (or committing); idempotent, synchronous, never raises."""
        previous, self._step = self._step, _Step.ENDED
        if previous is _Step.ENDED or self._committed:
            return
        if self._commit is not None:
            # The commit runs on in its thread: it either lands (the client's Finalize was
            # read) or the store rolls itself back. Either way nothing is left half done. It
            # may also have finished already, the cancel coming before the handler resumed to
            # record it: its outcome is still the commit's, never a rollback of its own.
            if self._commit.done():
                self._after_detached_commit(self._commit)
            else:
                self._commit.add_done_callback(self._after_detached_commit)
            return
        try:
            self._tx.rollback()
        except Exception:  # the store keeps its own state consistent; report, do not raise
            log.exception("rollback of %s '%s' failed", self._kind, self._cert_id)
        if self._cert_id or previous is not _Step.START:
            reason = errors.reason_for(error) if error is not None else "CANCELLED"
            self._audit(_EVENTS[self._kind], Outcome.ROLLED_BACK, reason=reason)

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

    async def _commit_now(self, *, detail: str = "") -> None:
        check_exists(self._runtime.store.committed_view(), self._cert_id, self._kind)
        if self._kind is Kind.INSTALL:
            # A Rotate's "applied" record is its intent; an Install writes one now, so a crash
            # before its outcome record still leaves a trace to close (docs/behaviour.md §8).
            self._audit(Event.INSTALL, Outcome.INTENT, detail="about to commit")
        self._commit = asyncio.ensure_future(asyncio.to_thread(crash_points.commit, self._tx))
        await asyncio.shield(self._commit)
        self._committed = True
        self._audit(_EVENTS[self._kind], Outcome.COMMITTED, detail=detail)

    def _after_detached_commit(self, future: asyncio.Future[StoreView]) -> None:
        if future.cancelled() or future.exception() is not None:
            self._audit(_EVENTS[self._kind], Outcome.ROLLED_BACK, reason="STORE_FAILURE")
        else:
            self._committed = True
            self._audit(
                _EVENTS[self._kind], Outcome.COMMITTED, detail="committed as the stream ended"
            )
            self._on_late_commit()

    def _audit(self, event: Event, outcome: Outcome, *, reason: str = "", detail: str = "") -> None:
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
