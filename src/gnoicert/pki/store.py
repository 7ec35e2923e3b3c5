"""The durable, crash-safe certificate store: the target's single source of truth.

API CONTRACT (stub; to be implemented).

State: certificate entities by ID, one CA bundle (`gnoi-ca-bundle`), pending CSR keys with an
expiry, and the factory certificate. Changes go through a Transaction: lock, stage, optionally
apply (visible through Store.view() to readers such as the TLS manager, not durable), then commit
(durable, atomic) or roll back. A crash before commit leaves the previous committed state; after
commit, the new one. Everything here is blocking; async callers use asyncio.to_thread.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from cryptography import x509


class KeyOrigin(enum.StrEnum):
    """Who made the private key: the target (CSR flow) or the client (key pair sent)."""

    TARGET = "target"
    CLIENT = "client"


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateEntity:
    """One certificate ID: leaf, intermediates, private key and bookkeeping."""

    cert_id: str
    certificate_pem: bytes  # the leaf, one PEM block
    chain_pem: bytes  # intermediates, zero or more PEM blocks, leaf excluded
    private_key_pem: bytes = field(repr=False)  # unencrypted PKCS#8 PEM (in memory only)
    key_origin: KeyOrigin
    created_ns: int
    modified_ns: int
    version: int  # 1 on install, +1 on every change

    @property
    def full_chain_pem(self) -> bytes:
        """Leaf then intermediates: what a TLS server presents."""
        raise NotImplementedError

    @property
    def certificate(self) -> x509.Certificate:
        raise NotImplementedError

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the leaf (crypto.fingerprint)."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreView:
    """An immutable snapshot: committed state, or committed plus applied transactions."""

    entities: Mapping[str, CertificateEntity]
    ca_bundle_pem: bytes  # b"" when no bundle is loaded
    generation: int  # committed generation this view is based on

    @property
    def ca_bundle(self) -> tuple[x509.Certificate, ...]:
        """Parsed bundle (parse once per view; a bundle may hold 20,000 certificates)."""
        raise NotImplementedError


class Transaction:
    """One unit of change. Use as a context manager: leaving without commit() rolls back.

    Locks are exclusive across open transactions of the same Store: lock() raises ResourceBusy
    when another open transaction holds the ID (or the bundle), and locks are released at
    commit or rollback. Staging an ID or the bundle requires holding its lock.
    """

    def lock(self, cert_id: str) -> None:
        """Hold cert_id (validated) for this transaction; ResourceBusy if another holds it."""
        raise NotImplementedError

    def lock_bundle(self) -> None:
        raise NotImplementedError

    def holds(self, cert_id: str) -> bool:
        raise NotImplementedError

    def put(
        self,
        cert_id: str,
        *,
        certificate_pem: bytes,
        chain_pem: bytes,
        private_key_pem: bytes,
        key_origin: KeyOrigin,
    ) -> CertificateEntity:
        """Stage an install or replacement; returns the entity as it will be committed."""
        raise NotImplementedError

    def delete(self, cert_id: str) -> None:
        """Stage removal of cert_id and its key (no error if absent)."""
        raise NotImplementedError

    def replace_bundle(self, ca_bundle_pem: bytes) -> None:
        """Stage a new CA bundle (b"" empties it)."""
        raise NotImplementedError

    def consume_pending_key(self, cert_id: str) -> None:
        """Stage removal of cert_id's pending CSR key, done durably with the commit."""
        raise NotImplementedError

    @property
    def has_changes(self) -> bool:
        raise NotImplementedError

    def apply(self) -> StoreView:
        """Make the staged changes visible in Store.view() (not durable); notify subscribers."""
        raise NotImplementedError

    def commit(self) -> StoreView:
        """Make the staged changes durable and atomic; returns the new committed view.

        Raises StoreFailure (after rolling back) when the disk write fails.
        """
        raise NotImplementedError

    def rollback(self) -> None:
        """Drop staged/applied changes, notify subscribers if the view changes; idempotent."""
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    def __enter__(self) -> Transaction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.closed:
            self.rollback()


class Store:
    """A state directory opened by one process at a time (an flock on the directory)."""

    @classmethod
    def open(cls, state_dir: Path, *, key_secret: bytes | None = None) -> Store:
        """Open (creating if needed) and recover: remove uncommitted generations and temp files.

        key_secret, when given, encrypts private keys at rest (bytes read from a machine secret
        file by the caller); keys written without it cannot be read with it and vice versa.
        """
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @property
    def path(self) -> Path:
        raise NotImplementedError

    def view(self) -> StoreView:
        """Effective state: committed plus every applied, unfinished transaction."""
        raise NotImplementedError

    def committed_view(self) -> StoreView:
        raise NotImplementedError

    def subscribe(self, callback: Callable[[StoreView], None]) -> Callable[[], None]:
        """Call callback(view()) after every change of the effective view; returns unsubscribe."""
        raise NotImplementedError

    def begin(self) -> Transaction:
        raise NotImplementedError

    def is_locked(self, cert_id: str) -> bool:
        raise NotImplementedError

    # Pending CSR keys (unary GenerateCSR): durable, one per ID, replaced by a newer one.
    def put_pending_key(self, cert_id: str, private_key_pem: bytes, *, expires_ns: int) -> None:
        raise NotImplementedError

    def pending_key(self, cert_id: str, *, now_ns: int | None = None) -> bytes | None:
        """The unexpired pending key PEM for cert_id, or None (an expired one is removed)."""
        raise NotImplementedError

    # The factory certificate: not an entity, never listed or revocable.
    def factory_credentials(self) -> tuple[bytes, bytes] | None:
        """(certificate_pem, private_key_pem) or None before the first start made one."""
        raise NotImplementedError

    def save_factory_credentials(self, certificate_pem: bytes, private_key_pem: bytes) -> None:
        raise NotImplementedError

    def factory_reset(self) -> None:
        """Durably remove every entity, key, pending key, the bundle and the factory certificate."""
        raise NotImplementedError
