"""The durable, crash-safe certificate store: the target's single source of truth.

State: certificate entities by ID, one CA bundle (`gnoi-ca-bundle`), pending CSR keys with an
expiry, and the factory certificate. Changes go through a Transaction: lock, stage, optionally
apply (visible through Store.view() to readers such as the TLS manager, not durable), then commit
(durable, atomic) or roll back. A crash before commit leaves the previous committed state; after
commit, the new one. Everything here is blocking; async callers use asyncio.to_thread.

On disk (all directories 0700, keys 0600; operators may read it, never edit it)::

    state_dir/LOCK                      flock held for the process lifetime
    state_dir/current -> generations/N  the committed generation, swapped atomically
    state_dir/generations/N/            manifest.json, gnoi-ca-bundle.pem,
                                        certificates/<id>/{certificate,chain,key}.pem
    state_dir/pending/<id>.json         pending CSR keys, one atomic file each
    state_dir/factory/                  certificate.pem, key.pem

A commit builds generation N+1 beside N (hard-linking unchanged files), fsyncs all of it at once,
then swaps `current` and removes N in the background; recovery at open keeps only what `current`
names. Applied changes live in memory only, so a crash drops them: that is the rollback the
specification requires.
"""

from __future__ import annotations

import concurrent.futures
import errno
import fcntl
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from gnoicert.common.files import fsync_directory, in_background, write_atomic
from gnoicert.pki import _store_files as files
from gnoicert.pki import _store_recovery as recovery
from gnoicert.pki import crypto
from gnoicert.pki.errors import ResourceBusy, StoreFailure, StoreInUse
from gnoicert.pki.store_transaction import (
    PendingKey,
    Transaction,
    TransactionHost,
    TransactionState,
)
from gnoicert.pki.store_view import (
    CertificateEntity,
    KeyOrigin,
    StoreView,
    leaf_fingerprint,
    make_view,
    same_content,
)

__all__ = ("CertificateEntity", "KeyOrigin", "Store", "StoreView", "Transaction")

_LOG = logging.getLogger(__name__)


class Store:
    """A state directory opened by one process at a time (an flock on the directory)."""

    def __init__(self, state_dir: Path, key_secret: bytes | None, lock_fd: int) -> None:
        """Private: use Store.open(), which takes the directory lock and recovers."""
        self._path = state_dir
        self._generations = state_dir / files.GENERATIONS_NAME
        self._pending_dir = state_dir / files.PENDING_NAME
        self._factory_dir = state_dir / files.FACTORY_NAME
        self._codec = recovery.KeyCodec(key_secret)
        self._lock_fd = lock_fd
        # _mutex guards the in-memory state below and is never held during disk I/O, so view()
        # never waits for a write. _writer serializes disk writes of generations and the
        # factory files; _pending_lock the pending keys. Order: _writer, _pending_lock, _mutex.
        self._mutex = threading.Lock()
        self._writer = threading.Lock()
        self._pending_lock = threading.Lock()
        self._notify_lock = threading.RLock()
        self._committed = make_view({}, b"", 0)
        self._effective = self._committed
        self._notified = self._committed
        self._manifest = files.EMPTY_MANIFEST
        self._next_generation = 1
        self._open: dict[int, Transaction] = {}
        self._applied: dict[int, TransactionState] = {}
        self._id_locks: dict[str, TransactionState] = {}
        self._bundle_holder: TransactionState | None = None
        self._host = TransactionHost(
            committed_view=self.committed_view,
            acquire=self._acquire,
            holder=self._holder,
            pending_entry=self._pending_entry,
            apply=self._apply,
            commit=self._commit,
            finish=self._finish,
            notify=self._notify,
        )
        self._serials = itertools.count(1)
        self._subscribers: dict[int, Callable[[StoreView], None]] = {}
        self._pending: dict[str, PendingKey] = {}
        self._factory: tuple[bytes, bytes] | None = None
        self._resetting = False
        self._closing = False
        self._closed = False
        self._sweeps: set[concurrent.futures.Future[None]] = set()  # old generations going

    @classmethod
    def open(cls, state_dir: Path, *, key_secret: bytes | None = None) -> Store:
        """Open (creating if needed) and recover: remove uncommitted generations and temp files.

        key_secret, when given, encrypts private keys at rest (bytes read from a machine secret
        file by the caller); keys written without it cannot be read with it and vice versa.
        """
        recovery.KeyCodec(key_secret)  # refuses an empty secret before anything is touched
        state_dir = Path(state_dir)
        try:
            state_dir.mkdir(mode=files.DIR_MODE, parents=True, exist_ok=True)
            os.chmod(state_dir, files.DIR_MODE)
            lock_fd = os.open(
                state_dir / files.LOCK_NAME,
                os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                files.SECRET_MODE,
            )
        except OSError as exc:
            raise StoreFailure(f"cannot open the state directory {state_dir}: {exc}") from exc
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(lock_fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StoreInUse(f"state directory {state_dir} in use by another process") from None
            raise StoreFailure(f"cannot lock the state directory {state_dir}: {exc}") from exc
        store = cls(state_dir, key_secret, lock_fd)
        try:
            store._recover()
        except BaseException:
            os.close(lock_fd)  # releases the flock
            raise
        return store

    def close(self) -> None:
        """Roll back every open transaction, wait for a commit in flight, release the lock."""
        with self._mutex:
            if self._closing:
                return
            self._closing = True
            open_transactions = list(self._open.values())
        for txn in open_transactions:
            txn.rollback()
        with self._writer, self._pending_lock:
            with self._mutex:
                sweeps = list(self._sweeps)
            concurrent.futures.wait(sweeps)  # no removal outlives the directory lock
            with self._mutex:
                self._closed = True
                os.close(self._lock_fd)

    @property
    def path(self) -> Path:
        return self._path

    def view(self) -> StoreView:
        """Effective state: committed plus every applied, unfinished transaction."""
        with self._mutex:
            return self._effective

    def committed_view(self) -> StoreView:
        with self._mutex:
            return self._committed

    def subscribe(self, callback: Callable[[StoreView], None]) -> Callable[[], None]:
        """Call callback(view()) after every change of the effective view; returns unsubscribe.

        Called in the thread that made the change, without the store's state lock held (a
        callback may read or change the store), in order, never with a view older than one
        already delivered, and only when the entities or the bundle differ (committing exactly
        what was applied calls nobody). An exception is logged, not propagated.
        """
        token = next(self._serials)
        with self._mutex:
            self._subscribers[token] = callback

        def unsubscribe() -> None:
            with self._mutex:
                self._subscribers.pop(token, None)

        return unsubscribe

    def begin(self) -> Transaction:
        with self._mutex:
            self._check_usable()
            state = TransactionState(serial=next(self._serials))
            txn = Transaction(self._host, state)
            self._open[state.serial] = txn
            return txn

    def is_locked(self, cert_id: str) -> bool:
        return self._holder(cert_id) is not None

    # Pending CSR keys (unary GenerateCSR): durable, one per ID, replaced by a newer one.
    def put_pending_key(self, cert_id: str, private_key_pem: bytes, *, expires_ns: int) -> None:
        crypto.validate_certificate_id(cert_id)
        key_pem = bytes(private_key_pem)
        stored = self._codec.encode(key_pem)
        with self._pending_lock:
            self._check_usable()
            try:
                files.write_pending(self._pending_dir, cert_id, expires_ns, stored)
            except OSError as exc:
                raise StoreFailure(
                    f"cannot store the pending key of certificate ID {cert_id!r}: {exc}"
                ) from exc
            self._pending[cert_id] = PendingKey(expires_ns, key_pem)
        _LOG.info("stored pending key for certificate ID %r", cert_id)

    def pending_key(self, cert_id: str, *, now_ns: int | None = None) -> bytes | None:
        """The unexpired pending key PEM for cert_id, or None (an expired one is removed)."""
        crypto.validate_certificate_id(cert_id)
        now = time.time_ns() if now_ns is None else now_ns
        with self._pending_lock:
            entry = self._pending.get(cert_id)
            if entry is None:
                return None
            if entry.expires_ns > now:
                return entry.key_pem
            del self._pending[cert_id]
            self._remove_pending_file(cert_id, "expired")
            return None

    # The factory certificate: not an entity, never listed or revocable.
    def factory_credentials(self) -> tuple[bytes, bytes] | None:
        """(certificate_pem, private_key_pem) or None before the first start made one."""
        with self._mutex:
            return self._factory

    def save_factory_credentials(self, certificate_pem: bytes, private_key_pem: bytes) -> None:
        certificate_pem, private_key_pem = bytes(certificate_pem), bytes(private_key_pem)
        stored_key = self._codec.encode(private_key_pem)
        with self._writer:
            self._check_usable()
            try:
                # Key first: a crash between the two leaves a mismatched pair, which open()
                # detects and reports as "no factory credentials" (the server makes new ones).
                write_atomic(self._factory_dir / files.KEY_FILE, stored_key, mode=files.SECRET_MODE)
                write_atomic(self._factory_dir / files.CERTIFICATE_FILE, certificate_pem)
            except OSError as exc:
                raise StoreFailure(f"cannot store the factory credentials: {exc}") from exc
            with self._mutex:
                self._factory = (certificate_pem, private_key_pem)
        _LOG.info("stored factory credentials (%s)", leaf_fingerprint(certificate_pem))

    def factory_reset(self) -> None:
        """Durably remove every entity, key, pending key, the bundle and the factory certificate."""
        with self._writer:
            with self._mutex:
                self._check_usable()
                if self._open:
                    raise ResourceBusy(
                        f"factory reset refused: {len(self._open)} operation(s) in progress; "
                        "retry when they end"
                    )
                self._resetting = True
            try:
                committed = self.committed_view()
                if committed.entities or committed.ca_bundle_pem:
                    self._write_and_swap({}, b"", changed=set(), bundle_changed=True)
                with self._pending_lock:
                    for path in self._pending_dir.iterdir():
                        files.remove_path(path)
                    fsync_directory(self._pending_dir)
                    self._pending.clear()
                for name in (files.CERTIFICATE_FILE, files.KEY_FILE):
                    files.remove_path(self._factory_dir / name)
                fsync_directory(self._factory_dir)
                with self._mutex:
                    self._factory = None
            except OSError as exc:
                raise StoreFailure(f"factory reset failed part way; retry it: {exc}") from exc
            finally:
                with self._mutex:
                    self._resetting = False
        _LOG.warning("factory reset: every certificate, key and the CA bundle were removed")
        self._notify()

    # --- transactions (the TransactionHost; called with the transaction's own lock held) -----

    def _check_usable(self) -> None:
        if self._closing:
            raise RuntimeError(f"the store at {self._path} is closed")

    def _holder(self, cert_id: str | None) -> TransactionState | None:
        with self._mutex:
            return self._bundle_holder if cert_id is None else self._id_locks.get(cert_id)

    def _acquire(self, txn: TransactionState, cert_id: str | None) -> None:
        with self._mutex:
            txn.check_open()
            if self._resetting:
                raise ResourceBusy("the store is being factory reset; retry when it ends")
            holder = self._bundle_holder if cert_id is None else self._id_locks.get(cert_id)
            if holder is txn:
                return
            if holder is not None:
                what = (
                    f"the CA bundle ({crypto.CA_BUNDLE_ID})"
                    if cert_id is None
                    else f"certificate ID {cert_id!r}"
                )
                raise ResourceBusy(
                    f"{what} is being changed by another operation; retry when it ends"
                )
            if cert_id is None:
                self._bundle_holder = txn
                txn.holds_bundle = True
            else:
                self._id_locks[cert_id] = txn
                txn.ids.add(cert_id)

    def _pending_entry(self, cert_id: str) -> PendingKey | None:
        with self._pending_lock:
            return self._pending.get(cert_id)

    def _apply(self, txn: TransactionState) -> StoreView:
        with self._mutex:
            txn.applied_entities = dict(txn.staged)
            txn.applied_bundle = txn.staged_bundle
            txn.applied = True
            self._applied[txn.serial] = txn
            self._rebuild_effective()
            return self._effective

    def _finish(self, txn: TransactionState) -> None:
        """Close txn: release its locks and drop its overlay (the caller holds its lock)."""
        with self._mutex:
            self._close_locked(txn)

    def _close_locked(self, txn: TransactionState) -> None:
        for cert_id in txn.ids:
            if self._id_locks.get(cert_id) is txn:
                del self._id_locks[cert_id]
        if self._bundle_holder is txn:
            self._bundle_holder = None
        self._open.pop(txn.serial, None)
        applied = self._applied.pop(txn.serial, None) is not None
        txn.forget()  # also drops references to key material held by a finished transaction
        if applied:
            self._rebuild_effective()

    def _rebuild_effective(self) -> None:
        """Recompute the effective view (with _mutex held). IDs are locked exclusively, so the
        overlays of applied transactions never touch the same ID or both the bundle."""
        if not self._applied:
            self._effective = self._committed
            return
        entities = dict(self._committed.entities)
        bundle = self._committed.ca_bundle_pem
        for txn in self._applied.values():
            for cert_id, entity in txn.applied_entities.items():
                if entity is None:
                    entities.pop(cert_id, None)
                else:
                    entities[cert_id] = entity
            if txn.applied_bundle is not None:
                bundle = txn.applied_bundle
        self._effective = make_view(entities, bundle, self._committed.generation)

    def _commit(self, txn: TransactionState) -> StoreView:
        if not txn.has_changes:
            self._finish(txn)
            return self.committed_view()
        with self._writer:
            base = self.committed_view()
            entities = dict(base.entities)
            for cert_id, entity in txn.staged.items():
                if entity is None:
                    entities.pop(cert_id, None)
                else:
                    entities[cert_id] = entity
            bundle = base.ca_bundle_pem if txn.staged_bundle is None else txn.staged_bundle
            changed = set(txn.staged)
            consumed = dict(txn.consumed)
            summary = _summarize(txn)
            try:
                view = self._write_and_swap(
                    entities,
                    bundle,
                    changed=changed,
                    bundle_changed=txn.staged_bundle is not None,
                    closing=txn,
                )
            except BaseException:
                self._finish(txn)
                raise
            self._remove_consumed(consumed)
        _LOG.info("committed generation %d: %s", view.generation, summary)
        return view

    def _write_and_swap(
        self,
        entities: Mapping[str, CertificateEntity],
        bundle: bytes,
        *,
        changed: set[str],
        bundle_changed: bool,
        closing: TransactionState | None = None,
    ) -> StoreView:
        """Write generation N+1, point `current` at it, swap it in memory (with _writer held).

        `closing` (the committing transaction) is closed in the same step as the swap, so no
        reader sees the new generation under that transaction's stale overlay. StoreFailure
        leaves both the disk and the memory at generation N.
        """
        base_generation = self._committed.generation
        base_dir = self._generations / str(base_generation) if base_generation else None
        base_manifest = self._manifest
        # A failed attempt may leave its directory behind; never reuse its number.
        generation = self._next_generation
        self._next_generation += 1
        records: dict[str, files.EntityRecord] = {}
        new_files: dict[str, files.EntityFiles] = {}
        for cert_id, entity in entities.items():
            old = base_manifest.entities.get(cert_id)
            if cert_id not in changed and old is not None and base_dir is not None:
                records[cert_id] = old
                continue
            stored_key = self._codec.encode(entity.private_key_pem)
            new_files[cert_id] = files.EntityFiles(
                entity.certificate_pem, entity.chain_pem, stored_key
            )
            records[cert_id] = files.EntityRecord(
                created_ns=entity.created_ns,
                modified_ns=entity.modified_ns,
                version=entity.version,
                key_origin=entity.key_origin.value,
                fingerprint=entity.fingerprint,
                certificate_sha256=files.sha256_hex(entity.certificate_pem),
                chain_sha256=files.sha256_hex(entity.chain_pem),
                key_sha256=files.sha256_hex(stored_key),
            )
        bundle_record: files.BundleRecord | None = None
        bundle_bytes: bytes | None = None
        if bundle:
            if not bundle_changed and base_manifest.bundle is not None and base_dir is not None:
                bundle_record = base_manifest.bundle
            else:
                bundle_record = files.BundleRecord(
                    sha256=files.sha256_hex(bundle), count=files.count_certificates(bundle)
                )
                bundle_bytes = bundle
        manifest = files.Manifest(generation=generation, entities=records, bundle=bundle_record)
        try:
            gen_dir = files.write_generation(
                self._generations, manifest, new_files, bundle_bytes, base_dir
            )
        except OSError as exc:
            raise StoreFailure(
                f"cannot write the certificate store, nothing changed: {exc}"
            ) from exc
        try:
            files.point_current(self._path, generation)
        except OSError as exc:
            self._revert_current(base_generation, gen_dir)
            raise StoreFailure(
                f"cannot write the certificate store, nothing changed: {exc}"
            ) from exc
        view = make_view(entities, bundle, generation)
        with self._mutex:
            self._committed = view
            self._manifest = manifest
            if closing is not None:
                self._close_locked(closing)
            self._rebuild_effective()
        if base_dir is not None:
            self._sweep(base_dir, base_generation)
        return view

    def _sweep(self, gen_dir: Path, generation: int) -> None:
        """Remove an old generation off the commit's path: the new one is durable and named by
        `current` already, and a crash before the removal leaves it to recovery at open."""

        def remove() -> None:
            try:
                files.remove_path(gen_dir)
            except OSError as exc:
                _LOG.warning(
                    "cannot remove old generation %d (removed at next start): %s", generation, exc
                )

        future = in_background(remove)
        with self._mutex:
            self._sweeps.add(future)
        future.add_done_callback(self._swept)

    def _swept(self, future: concurrent.futures.Future[None]) -> None:
        with self._mutex:
            self._sweeps.discard(future)

    def _revert_current(self, base_generation: int, gen_dir: Path) -> None:
        """After a failed swap, make sure `current` names the old generation again."""
        try:
            files.point_current(self._path, base_generation)
        except OSError as exc:
            _LOG.error(
                "cannot restore %s to generation %d after a failed commit: %s",
                files.CURRENT_NAME,
                base_generation,
                exc,
            )
            return  # keep gen_dir: `current` may still name it
        try:
            files.remove_path(gen_dir)
        except OSError as exc:
            _LOG.warning("cannot remove uncommitted %s (removed at next start): %s", gen_dir, exc)

    def _remove_consumed(self, consumed: Mapping[str, PendingKey]) -> None:
        """Remove pending keys a commit used, unless GenerateCSR has replaced them meanwhile."""
        if not consumed:
            return
        with self._pending_lock:
            for cert_id, entry in consumed.items():
                if self._pending.get(cert_id) is entry:
                    del self._pending[cert_id]
                    self._remove_pending_file(cert_id, "consumed")

    def _remove_pending_file(self, cert_id: str, why: str) -> None:
        """With _pending_lock held. Best effort: open() also drops expired and consumed keys."""
        try:
            files.remove_file_durably(files.pending_path(self._pending_dir, cert_id))
        except OSError as exc:
            _LOG.warning("cannot remove the %s pending key of %r: %s", why, cert_id, exc)

    def _notify(self) -> None:
        with self._notify_lock:
            with self._mutex:
                view = self._effective
                subscribers = list(self._subscribers.values())
            if same_content(view, self._notified):
                self._notified = view
                return
            self._notified = view
            for callback in subscribers:
                try:
                    callback(view)
                except Exception:
                    _LOG.exception(
                        "store subscriber %s failed", getattr(callback, "__qualname__", "?")
                    )

    # --- recovery -----------------------------------------------------------------------------

    def _recover(self) -> None:
        try:
            found = recovery.recover(self._path, self._codec)
        except files.CorruptState as exc:
            raise StoreFailure(f"state directory {self._path} is damaged: {exc}") from None
        except OSError as exc:
            raise StoreFailure(f"cannot read the state directory {self._path}: {exc}") from exc
        entities: dict[str, CertificateEntity] = {}
        for cert_id, stored in found.entities.items():
            record = found.manifest.entities[cert_id]
            try:
                key_origin = KeyOrigin(record.key_origin)
            except ValueError:
                raise StoreFailure(
                    f"state directory {self._path} is damaged: unknown key_origin "
                    f"{record.key_origin!r} for certificate ID {cert_id!r}"
                ) from None
            entities[cert_id] = CertificateEntity(
                cert_id=cert_id,
                certificate_pem=stored.certificate,
                chain_pem=stored.chain,
                private_key_pem=stored.key,
                key_origin=key_origin,
                created_ns=record.created_ns,
                modified_ns=record.modified_ns,
                version=record.version,
            )
        self._manifest = found.manifest
        self._committed = make_view(entities, found.bundle_pem, found.generation)
        self._effective = self._notified = self._committed
        self._next_generation = found.generation + 1
        self._pending = {
            cert_id: PendingKey(expires_ns, key_pem)
            for cert_id, (expires_ns, key_pem) in found.pending.items()
        }
        self._factory = found.factory
        _LOG.info(
            "opened store %s: generation %d, %d certificate(s), CA bundle %s, %d pending key(s)",
            self._path,
            found.generation,
            len(entities),
            "loaded" if found.bundle_pem else "empty",
            len(self._pending),
        )


def _summarize(txn: TransactionState) -> str:
    """What a commit changes, for the log: IDs and fingerprints, never key material."""
    parts = [
        f"delete {cert_id}"
        if entity is None
        else f"put {cert_id} v{entity.version} {entity.fingerprint}"
        for cert_id, entity in sorted(txn.staged.items())
    ]
    if txn.staged_bundle is not None:
        count = files.count_certificates(txn.staged_bundle)
        parts.append(f"CA bundle of {count} certificate(s)" if count else "empty CA bundle")
    parts.extend(f"consume pending key {cert_id}" for cert_id in sorted(txn.consumed))
    return ", ".join(parts) or "no change"
