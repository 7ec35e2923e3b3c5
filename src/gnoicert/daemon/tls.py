"""The credential manager: what the gRPC listener serves, derived from the store and config.

It never keeps its own truth: on every change of the effective store view (apply, commit,
rollback) or of the configuration it derives the served credentials again. New handshakes pick
them up through grpcio's dynamic credentials fetcher; established connections are untouched.
The fetcher runs on gRPC threads, so it only hands back a configuration built earlier.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from gnoicert.daemon import policy
from gnoicert.daemon.audit import AuditRecord, Event, Outcome
from gnoicert.daemon.runtime import Runtime
from gnoicert.pki import crypto
from gnoicert.pki import errors as pki
from gnoicert.pki.store import StoreView

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServedCredentials:
    """One consistent set of listener credentials."""

    chain_pem: bytes
    key_pem: bytes = field(repr=False)
    client_ca_pem: bytes
    mode: policy.TlsMode
    fingerprint: str
    source: str  # a certificate ID, or "factory"


class CredentialManager:
    """Derives ServedCredentials and feeds them to grpcio (hot reload) or to a new listener."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._lock = threading.Lock()
        self._version = 0
        self._current = self._derive(runtime.store.view())
        self._listeners: list[Callable[[ServedCredentials], None]] = []
        self._unsubscribe = runtime.store.subscribe(self._on_view)
        log.info(
            "serving certificate %s (SHA-256 %s), %s",
            self._current.source,
            self._current.fingerprint,
            self._current.mode,
        )

    @property
    def current(self) -> ServedCredentials:
        with self._lock:
            return self._current

    def on_change(self, callback: Callable[[ServedCredentials], None]) -> None:
        """Called (on the thread that changed the store) after the served credentials change."""
        self._listeners.append(callback)

    def refresh(self) -> None:
        """Derive again (after a configuration reload)."""
        self._on_view(self._runtime.store.view())

    def close(self) -> None:
        self._unsubscribe()

    def server_credentials(self) -> grpc.ServerCredentials:
        """Credentials for a new listener in the current mode, hot-reloading within it."""
        with self._lock:
            current, served_version = self._current, self._version
        if current.mode is policy.TlsMode.INSECURE:
            raise ValueError("insecure mode has no server credentials")
        served = [served_version]

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            # gRPC thread: compare versions, hand back a prebuilt configuration or None.
            with self._lock:
                if self._version == served[0] or not self._runtime.grpc.hot_reloading:
                    return None
                latest, served[0] = self._current, self._version
            if latest.mode is not current.mode:
                return None  # a mode change needs a new listener; the server replaces it
            return _certificate_configuration(latest)

        return grpc.dynamic_ssl_server_credentials(
            _certificate_configuration(current),
            fetch,  # type: ignore[arg-type]  # grpcio documents None as "no change"
            require_client_authentication=current.mode is policy.TlsMode.MUTUAL,
        )

    def _on_view(self, view: StoreView) -> None:
        try:
            derived = self._derive(view)
        except (pki.PkiError, ValueError) as exc:
            # grpcio would silently keep the old pair on a bad one; keep it explicitly and say so.
            log.error("not serving the new credentials: %s; keeping the previous ones", exc)
            return
        with self._lock:
            if derived == self._current:
                return
            previous, self._current = self._current, derived
            self._version += 1
        if derived.fingerprint != previous.fingerprint or derived.mode is not previous.mode:
            log.info(
                "serving certificate %s (SHA-256 %s), %s",
                derived.source,
                derived.fingerprint,
                derived.mode,
            )
            self._runtime.audit.record(
                AuditRecord(
                    event=Event.CREDENTIALS,
                    rpc="",
                    outcome=Outcome.OK,
                    certificate_id=derived.source,
                    old_fingerprint=previous.fingerprint,
                    new_fingerprint=derived.fingerprint,
                    detail=f"{previous.mode} -> {derived.mode}",
                )
            )
        for callback in self._listeners:
            callback(derived)

    def _derive(self, view: StoreView) -> ServedCredentials:
        entity = policy.server_entity(self._runtime.grpc, view)
        if entity is not None:
            chain_pem, key_pem, source = (
                entity.full_chain_pem,
                entity.private_key_pem,
                entity.cert_id,
            )
        else:
            factory = self._runtime.store.factory_credentials()
            if factory is None:
                raise pki.StoreFailure("no factory certificate: the daemon makes one at start")
            chain_pem, key_pem = factory
            source = "factory"
        leaf = crypto.load_certificates(chain_pem)[0]
        if source != "factory":
            # The store's keys were validated at load (or made here): check the pair only.
            crypto.check_key_matches(leaf, crypto.load_private_key(key_pem, trusted=True))
        trust = self._runtime.client_trust(view.ca_bundle_pem)
        return ServedCredentials(
            chain_pem=chain_pem,
            key_pem=key_pem,
            client_ca_pem=trust.ca_pem,
            mode=policy.tls_mode(trust, insecure=self._runtime.insecure),
            fingerprint=crypto.fingerprint(leaf),
            source=source,
        )


def _certificate_configuration(creds: ServedCredentials) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(creds.key_pem, creds.chain_pem)],
        root_certificates=creds.client_ca_pem or None,
    )
