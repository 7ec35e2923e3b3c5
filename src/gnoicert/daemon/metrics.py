"""The daemon's Prometheus endpoint (docs/operator-guide.md, "Monitoring").

Certificate series are read from the store's committed view at scrape time (a rotation shows at
the next scrape, an applied but unfinalized one does not); operation counters are fed by the
audit log, the one home of an operation's outcome (docs/behaviour.md §8); durations come from a
server interceptor. No label carries key material, a password or a user name: certificate IDs,
names from certificates, fingerprints, RPC method names and audit reasons only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

import prometheus_client
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gnoicert.daemon import policy
from gnoicert.daemon.audit import AuditRecord, Event
from gnoicert.daemon.in_flight import around_handler
from gnoicert.daemon.tls import ServedCredentials
from gnoicert.pki import crypto
from gnoicert.pki.store import Store

FACTORY_ID = "factory"
_LABEL_TEXT_MAX = 200  # names come from the certificate's sender and may be huge
# A Rotate may wait for its finalize up to grpc.finalize_timeout_s (300 s by default).
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# Timed: the gNOI services; health Watch and reflection streams last as long as their client.
_TIMED_SERVICES = ("/gnoi.certificate.CertificateManagement/", "/gnoi.system.System/")


def method_name(rpc: str) -> str:
    """'/gnoi.certificate.CertificateManagement/Rotate' -> 'Rotate'."""
    return rpc.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class _CertFacts:
    not_before: float
    not_after: float
    subject: str
    issuer: str
    key_type: str
    fingerprint: str


def _label_text(text: str) -> str:
    return text if len(text) <= _LABEL_TEXT_MAX else text[:_LABEL_TEXT_MAX] + "..."


def _name(name: x509.Name) -> str:
    try:
        return _label_text(name.rfc4514_string())
    except ValueError:
        return "<unprintable name>"


def key_type(certificate: x509.Certificate) -> str:
    """'RSA-2048', 'EC-secp256r1', 'Ed25519', ...: the public key's kind, never the key."""
    try:
        key = certificate.public_key()
    except (ValueError, TypeError):
        return "unknown"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC-{key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(key).__name__.lstrip("_").removesuffix("PublicKey")


def _facts(certificate: x509.Certificate) -> _CertFacts:
    return _CertFacts(
        not_before=certificate.not_valid_before_utc.timestamp(),
        not_after=certificate.not_valid_after_utc.timestamp(),
        subject=_name(certificate.subject),
        issuer=_name(certificate.issuer),
        key_type=key_type(certificate),
        fingerprint=crypto.fingerprint(certificate),
    )


class StoreCollector(Collector):
    """Certificate, CA-bundle and served-certificate series from the store at scrape time.

    Parsed facts are cached by the PEM bytes (a bundle may hold 20,000 certificates), so a
    scrape parses only what changed since the last one.
    """

    def __init__(
        self,
        store: Store,
        served: Callable[[], ServedCredentials | None],
    ) -> None:
        self._store = store
        self._served = served
        self._lock = threading.Lock()  # scrapes may overlap (threaded HTTP server)
        self._leaf_cache: dict[bytes, _CertFacts] = {}
        self._bundle_cache: tuple[bytes, int, float | None] = (b"", 0, None)

    def describe(self) -> list[Any]:
        return []  # collected at scrape time; nothing to check at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        view = self._store.committed_view()
        served = self._served()
        pems = {cert_id: entity.certificate_pem for cert_id, entity in view.entities.items()}
        factory = self._store.factory_credentials()
        if factory is not None and FACTORY_ID not in pems:
            pems[FACTORY_ID] = factory[0]
        with self._lock:
            facts = {cert_id: self._leaf(pem) for cert_id, pem in pems.items()}
            count, earliest = self._bundle(view.ca_bundle_pem)

        not_after = _per_certificate(
            "not_after_seconds", "End of the certificate's validity (Unix time)."
        )
        not_before = _per_certificate(
            "not_before_seconds", "Start of the certificate's validity (Unix time)."
        )
        info = _per_certificate(
            "info",
            "One series per stored certificate (the factory one as 'factory'), always 1.",
            "subject",
            "issuer",
            "key_type",
            "fingerprint",
            "endpoint",
        )
        served_id = served.source if served is not None else None
        for cert_id, fact in facts.items():
            if fact is None:
                continue
            not_after.add_metric([cert_id], fact.not_after)
            not_before.add_metric([cert_id], fact.not_before)
            endpoint = policy.SERVER_ENDPOINT if cert_id == served_id else ""
            info.add_metric(
                [cert_id, fact.subject, fact.issuer, fact.key_type, fact.fingerprint, endpoint], 1
            )
        yield not_after
        yield not_before
        yield info

        yield GaugeMetricFamily(
            "gnoicert_ca_bundle_certificates",
            "Certificates in the CA bundle (0 when none is loaded).",
            value=count,
        )
        earliest_family = GaugeMetricFamily(
            "gnoicert_ca_bundle_earliest_not_after_seconds",
            "The earliest end of validity in the CA bundle (Unix time; absent without a bundle).",
        )
        if earliest is not None:
            earliest_family.add_metric([], earliest)
        yield earliest_family

        served_family = GaugeMetricFamily(
            "gnoicert_served_certificate_info",
            "The certificate the gRPC listener presents, always 1 (absent with --insecure).",
            labels=["certificate_id", "fingerprint", "tls_mode"],
        )
        if served is not None:
            served_family.add_metric([served.source, served.fingerprint, served.mode.value], 1)
        yield served_family

    def _leaf(self, pem: bytes) -> _CertFacts | None:
        fact = self._leaf_cache.get(pem)
        if fact is None:
            try:
                fact = _facts(x509.load_pem_x509_certificate(pem))
            except ValueError:
                return None  # the store validated it; never fail a scrape over one entry
            if len(self._leaf_cache) > 4096:
                self._leaf_cache.clear()
            self._leaf_cache[pem] = fact
        return fact

    def _bundle(self, pem: bytes) -> tuple[int, float | None]:
        cached_pem, count, earliest = self._bundle_cache
        if pem != cached_pem:
            try:
                bundle = x509.load_pem_x509_certificates(pem) if pem else []
            except ValueError:
                bundle = []
            count = len(bundle)
            ends = [c.not_valid_after_utc.timestamp() for c in bundle]
            earliest = min(ends) if ends else None
            self._bundle_cache = (pem, count, earliest)
        return count, earliest


class DaemonMetrics:
    """The registry, the counters the audit log feeds, the RPC timer and the HTTP server."""

    def __init__(self, store: Store, served: Callable[[], ServedCredentials | None]) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        prometheus_client.ProcessCollector(registry=self.registry)
        prometheus_client.PlatformCollector(registry=self.registry)
        prometheus_client.GCCollector(registry=self.registry)
        self.registry.register(StoreCollector(store, served))
        self.operations = prometheus_client.Counter(
            "gnoicert_operations",
            "Audited operations by RPC method, audit outcome and refusal reason.",
            ["rpc", "outcome", "reason"],
            registry=self.registry,
        )
        self.durations = prometheus_client.Histogram(
            "gnoicert_operation_duration_seconds",
            "Time from the start of a gNOI call to its end, by RPC method.",
            ["rpc"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.auth_failures = prometheus_client.Counter(
            "gnoicert_auth_failures",
            "Calls refused by authentication or authorization, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.rate_limited = prometheus_client.Counter(
            "gnoicert_rate_limited",
            "Calls refused by the authentication rate limit (also in auth_failures).",
            registry=self.registry,
        )
        self.rpc_timer = RpcTimer(self.observe_duration)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def observe_audit(self, record: AuditRecord) -> None:
        """AuditLog observer: one count per audited record of an RPC."""
        if not record.rpc:
            return  # configuration reloads, mode switches: not operations
        rpc = method_name(record.rpc)
        self.operations.labels(rpc, record.outcome.value, record.reason).inc()
        if record.event is Event.AUTH_FAILED:
            self.auth_failures.labels(record.reason).inc()
            if record.reason == "RATE_LIMITED":
                self.rate_limited.inc()

    def observe_duration(self, rpc: str, seconds: float) -> None:
        self.durations.labels(method_name(rpc)).observe(seconds)

    def start(self, host: str, port: int) -> int:
        """Serve /metrics on host:port (port 0: a free one) in a thread; the bound port."""
        server, thread = prometheus_client.start_http_server(
            port, addr=host, registry=self.registry
        )
        self._server, self._thread = server, thread
        return int(server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


class RpcTimer:
    """Times each gNOI handler from its start to its end, whatever the outcome."""

    def __init__(self, observe: Callable[[str, float], None]) -> None:
        self._observe = observe

    def wrap(self, handler: Any, rpc: str) -> Any:
        if not rpc.startswith(_TIMED_SERVICES):
            return handler
        observe = self._observe
        return around_handler(
            handler, time.monotonic, lambda start: observe(rpc, time.monotonic() - start)
        )


def _per_certificate(name: str, documentation: str, *more_labels: str) -> GaugeMetricFamily:
    """A gnoicert_certificate_* family: one series per certificate ID (and more labels)."""
    return GaugeMetricFamily(
        f"gnoicert_certificate_{name}", documentation, labels=["certificate_id", *more_labels]
    )
