"""One unit of change to the store: lock, stage, apply, then commit or roll back.

The boundary with the Store is explicit: a Transaction reaches its store only through the
TransactionHost the store hands it, and the store reads and closes a transaction only through
its TransactionState. Neither touches the other's private attributes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gnoicert.common.closeable import Closeable
from gnoicert.pki import crypto
from gnoicert.pki.store_view import CertificateEntity, KeyOrigin, StoreView, leaf_fingerprint


@dataclass(slots=True, eq=False)
class PendingKey:
    """A pending CSR key; compared by identity so a commit never removes a newer one."""

    expires_ns: int
    key_pem: bytes = field(repr=False)


@dataclass(slots=True, eq=False)
class TransactionState:
    """What a transaction holds and stages: written by the Transaction (staging) and by the
    Store (locks, apply, close), each under its own lock as the Store documents."""

    serial: int
    closed: bool = False
    ids: set[str] = field(default_factory=set)
    holds_bundle: bool = False
    staged: dict[str, CertificateEntity | None] = field(default_factory=dict)  # None: delete
    staged_bundle: bytes | None = None  # None: unchanged
    consumed: dict[str, PendingKey] = field(default_factory=dict)
    applied: bool = False
    applied_entities: dict[str, CertificateEntity | None] = field(default_factory=dict)
    applied_bundle: bytes | None = None

    @property
    def has_changes(self) -> bool:
        return bool(self.staged or self.consumed) or self.staged_bundle is not None

    def check_open(self) -> None:
        if self.closed:
            raise RuntimeError(f"transaction #{self.serial} is already committed or rolled back")

    def forget(self) -> None:
        """Closed: drop the locks it names and every reference to key material."""
        self.closed = True
        self.ids.clear()
        self.holds_bundle = False
        self.staged.clear()
        self.applied_entities.clear()
        self.consumed.clear()
        self.staged_bundle = self.applied_bundle = None


@dataclass(frozen=True, slots=True)
class TransactionHost:
    """The store operations a Transaction calls (bound methods of its Store)."""

    committed_view: Callable[[], StoreView]
    acquire: Callable[[TransactionState, str | None], None]  # None: the CA bundle
    holder: Callable[[str | None], TransactionState | None]
    pending_entry: Callable[[str], PendingKey | None]
    apply: Callable[[TransactionState], StoreView]
    commit: Callable[[TransactionState], StoreView]
    finish: Callable[[TransactionState], None]
    notify: Callable[[], None]


class Transaction(Closeable):
    """One unit of change. Use as a context manager: leaving without commit() rolls back.

    Locks are exclusive across open transactions of the same Store: lock() raises ResourceBusy
    when another open transaction holds the ID (or the bundle), and locks are released at
    commit or rollback. Staging an ID or the bundle requires holding its lock.
    """

    def __init__(self, host: TransactionHost, state: TransactionState) -> None:
        """Private: use Store.begin()."""
        self._host = host
        self._state = state
        # Serializes this transaction's own methods: a rollback from a timer thread waits for a
        # commit in flight instead of "rolling back" what is being made durable.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = self._state
        status = "closed" if state.closed else ("applied" if state.applied else "open")
        return f"<Transaction #{state.serial} {status} ids={sorted(state.ids)}>"

    def lock(self, cert_id: str) -> None:
        """Hold cert_id (validated) for this transaction; ResourceBusy if another holds it."""
        crypto.validate_certificate_id(cert_id)
        with self._lock:
            self._host.acquire(self._state, cert_id)

    def lock_bundle(self) -> None:
        with self._lock:
            self._host.acquire(self._state, None)

    def holds(self, cert_id: str) -> bool:
        return self._host.holder(cert_id) is self._state

    def put(
        self,
        cert_id: str,
        *,
        certificate_pem: bytes,
        chain_pem: bytes,
        private_key_pem: bytes,
        key_origin: KeyOrigin,
    ) -> CertificateEntity:
        """Stage an install or replacement; returns the entity as it will be committed.

        The leaf must parse (BadEncoding otherwise); everything else is the caller's to check.
        """
        with self._lock:
            self._check_holds(cert_id)
            certificate_pem = bytes(certificate_pem)
            leaf_fingerprint(certificate_pem)  # parse now: the commit must not fail on it
            old = self._host.committed_view().entities.get(cert_id)
            now = time.time_ns()
            entity = CertificateEntity(
                cert_id=cert_id,
                certificate_pem=certificate_pem,
                chain_pem=bytes(chain_pem),
                private_key_pem=bytes(private_key_pem),
                key_origin=KeyOrigin(key_origin),
                created_ns=now if old is None else old.created_ns,
                modified_ns=now,
                version=1 if old is None else old.version + 1,
            )
            self._state.staged[cert_id] = entity
            return entity

    def delete(self, cert_id: str) -> None:
        """Stage removal of cert_id and its key (no error if absent)."""
        with self._lock:
            self._check_holds(cert_id)
            if cert_id in self._host.committed_view().entities:
                self._state.staged[cert_id] = None
            else:
                self._state.staged.pop(cert_id, None)

    def replace_bundle(self, ca_bundle_pem: bytes) -> None:
        """Stage a new CA bundle (b"" empties it)."""
        with self._lock:
            self._check_holds(None)
            bundle = bytes(ca_bundle_pem)
            same = bundle == self._host.committed_view().ca_bundle_pem
            self._state.staged_bundle = None if same else bundle

    def consume_pending_key(self, cert_id: str) -> None:
        """Stage removal of cert_id's pending CSR key, done durably with the commit."""
        with self._lock:
            self._check_holds(cert_id)
            pending = self._host.pending_entry(cert_id)
            if pending is None:
                self._state.consumed.pop(cert_id, None)
            else:
                self._state.consumed[cert_id] = pending

    @property
    def has_changes(self) -> bool:
        return self._state.has_changes

    def apply(self) -> StoreView:
        """Make the staged changes visible in Store.view() (not durable); notify subscribers."""
        with self._lock:
            self._check_open()
            view = self._host.apply(self._state)
        self._host.notify()
        return view

    def commit(self) -> StoreView:
        """Make the staged changes durable and atomic; returns the new committed view.

        Raises StoreFailure (after rolling back) when the disk write fails.
        """
        try:
            with self._lock:
                self._check_open()
                return self._host.commit(self._state)
        finally:
            self._host.notify()

    def rollback(self) -> None:
        """Drop staged/applied changes, notify subscribers if the view changes; idempotent."""
        with self._lock:
            if self._state.closed:
                return
            self._host.finish(self._state)
        self._host.notify()

    @property
    def closed(self) -> bool:
        return self._state.closed

    def close(self) -> None:
        """End the transaction (leaving its `with` block does): rolls back unless committed."""
        self.rollback()

    def _check_open(self) -> None:
        if self._state.closed:
            raise RuntimeError(f"{self!r} is already committed or rolled back")

    def _check_holds(self, cert_id: str | None) -> None:
        """Staging without the lock is a programming error, not a refusal."""
        self._check_open()
        if cert_id is None:
            if not self._state.holds_bundle:
                raise RuntimeError("stage the CA bundle only after lock_bundle()")
        elif cert_id not in self._state.ids:
            raise RuntimeError(f"stage certificate ID {cert_id!r} only after lock({cert_id!r})")
