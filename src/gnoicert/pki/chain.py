"""Chain verification: does a certificate chain to a trusted CA, and may it be used for TLS?

cryptography's verifier decides; a walk of our own is used only for what the verifier
refuses as unsupported (RSA-1024 issuers, some algorithms), and its own verdict then decides.
Error messages name subjects and fingerprints, never key bytes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import TypeAlias, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from gnoicert.pki.crypto import name_text, subject_text
from gnoicert.pki.errors import (
    BadEncoding,
    BadKeyUsage,
    CertificateExpired,
    CertificateNotYetValid,
    ChainVerificationFailed,
)

CLOCK_SKEW = dt.timedelta(minutes=5)


class TrustSet:
    """A CA bundle prepared for verification: build once per bundle, verify against it often.

    check_leaf and chain_verifies accept a plain sequence too, but then rebuild the verification
    Store (and, on the fallback path, a subject index) on every call; with a bundle of thousands
    of CAs a caller that verifies often should keep a TrustSet beside the bundle. Immutable in
    effect and safe to share between threads (the lazy index may at worst be built twice).
    """

    __slots__ = ("_anchors", "_by_subject", "_store")

    def __init__(self, anchors: Iterable[x509.Certificate]) -> None:
        self._anchors: tuple[x509.Certificate, ...] = tuple(anchors)
        self._store: Store | None = Store(list(self._anchors)) if self._anchors else None
        self._by_subject: dict[bytes, list[x509.Certificate]] | None = None

    @property
    def anchors(self) -> tuple[x509.Certificate, ...]:
        """The trust anchors, in the order given."""
        return self._anchors

    def __len__(self) -> int:
        return len(self._anchors)

    def __repr__(self) -> str:
        return f"TrustSet({len(self._anchors)} anchors)"

    def _store_or_none(self) -> Store | None:
        return self._store

    def _issuers_named(self, name: bytes) -> list[x509.Certificate]:
        """Anchors whose subject is name (DER); the index is built on first use only."""
        if self._by_subject is None:
            index: dict[bytes, list[x509.Certificate]] = {}
            for anchor in self._anchors:
                index.setdefault(anchor.subject.public_bytes(), []).append(anchor)
            self._by_subject = index
        return self._by_subject.get(name, [])

    def _contains(self, certificate: x509.Certificate) -> bool:
        return bool(self._anchors) and certificate in self._issuers_named(
            certificate.subject.public_bytes()
        )


Anchors: TypeAlias = Sequence[x509.Certificate] | TrustSet


def check_leaf(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust_anchors: Anchors,
    *,
    now: dt.datetime | None = None,
) -> None:
    """Every check a certificate must pass before it is installed (docs/behaviour.md §3).

    Validity window with CLOCK_SKEW (CertificateNotYetValid, CertificateExpired); not a CA and
    EKU/key usage allowing TLS (BadKeyUsage); chains through intermediates to one of
    trust_anchors (ChainVerificationFailed, also when trust_anchors is empty). trust_anchors may
    be a prebuilt TrustSet.
    """
    at = _utc(now)
    name = subject_text(leaf)
    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if not_before > at + CLOCK_SKEW:
        raise CertificateNotYetValid(
            f"certificate {name} is not valid before {_when(not_before)} (target time "
            f"{_when(at)}, {_SKEW_TEXT} of clock skew allowed)"
        )
    if not_after < at - CLOCK_SKEW:
        raise CertificateExpired(
            f"certificate {name} expired at {_when(not_after)} (target time {_when(at)}, "
            f"{_SKEW_TEXT} of clock skew allowed)"
        )
    extensions = _extensions(leaf)
    constraints = _extension(extensions, x509.BasicConstraints)
    if constraints is not None and constraints.ca:
        raise BadKeyUsage(
            f"certificate {name} is a CA certificate; install an end-entity certificate"
        )
    usages = _extension(extensions, x509.ExtendedKeyUsage)
    if usages is not None and not any(oid in _TLS_EKUS for oid in usages):
        raise BadKeyUsage(
            f"the extended key usage of certificate {name} allows neither serverAuth nor "
            "clientAuth; issue it for TLS use"
        )
    key_usage = _extension(extensions, x509.KeyUsage)
    if key_usage is not None and not _key_usage_allows_tls(key_usage, leaf):
        raise BadKeyUsage(
            f"the key usage of certificate {name} allows no TLS use; it needs digitalSignature "
            "(or keyEncipherment for RSA, keyAgreement for EC)"
        )
    trust = _trust_set(trust_anchors)
    if not len(trust):
        raise ChainVerificationFailed(
            f"certificate {name} cannot be verified: no CA bundle is loaded on the target and "
            "none was sent with the certificate; send the issuing CA in ca_certificates or load "
            "a CA bundle first"
        )
    # The library knows no clock skew: check the chain at a moment inside the leaf's own window
    # (at most CLOCK_SKEW away from now, see above).
    reason = _verify_chain(leaf, intermediates, trust, min(max(at, not_before), not_after), at)
    if reason is not None:
        raise ChainVerificationFailed(
            f"certificate {name} does not chain to a trusted CA: {reason}"
        )


def chain_verifies(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust_anchors: Anchors,
) -> bool:
    """True when leaf chains to trust_anchors by signature and CA constraints (no time or EKU
    policy): the lockout guard's question "would this bundle still verify that certificate?"."""
    trust = _trust_set(trust_anchors)
    if not len(trust):
        return False
    at = min(max(_utc(None), leaf.not_valid_before_utc), leaf.not_valid_after_utc)
    return _verify_chain(leaf, intermediates, trust, at, None) is None


# --- chain verification -------------------------------------------------------------------


def _ca_key_usage(_policy: Policy, _cert: x509.Certificate, usage: x509.KeyUsage | None) -> None:
    """A CA's keyUsage, when present, must allow certificate signing (RFC 5280 4.2.1.3)."""
    if usage is not None and not usage.key_cert_sign:
        raise ValueError("the keyUsage of a CA certificate lacks keyCertSign")


# WebPKI's CA profile would also demand keyUsage on every CA, which the common "openssl req -x509"
# root lacks while every TLS stack accepts it; so: basicConstraints (cA, pathLen: enforced by the
# verifier) required, keyUsage checked when present, anything else permitted.
_CA_POLICY = (
    ExtensionPolicy.permit_all()
    .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, None)
    .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ca_key_usage)
)
# The leaf's usage is check_leaf's business (a server certificate has no clientAuth EKU).
_EE_POLICY = ExtensionPolicy.permit_all()

# Refusals of the library that say "I cannot judge this chain", not "this chain is bad": the
# minimum RSA modulus is fixed at 2048 and Ed25519 / some signature algorithms are forbidden.
_UNSUPPORTED = (
    "RSA key is too weak",
    "Forbidden public key algorithm",
    "Forbidden signature algorithm",
    "unsupported",
)
_NO_ISSUER = "no interior errors"
_TIME_REFUSAL = "not valid at validation time"
_MAX_DEPTH = 8
_MAX_SIGNATURE_CHECKS = 256


def _verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust: TrustSet,
    verify_at: dt.datetime,
    walk_at: dt.datetime | None,
) -> str | None:
    """None when the chain verifies, else the reason it does not.

    cryptography's verifier decides; only when it refuses a chain for a reason it cannot handle
    (see _UNSUPPORTED) does the walk of _walk_chain decide instead. walk_at None means the walk
    ignores validity periods (chain_verifies); the library path then also accepts a chain it
    refused only because a certificate was outside its validity period.
    """
    store = trust._store_or_none()
    if store is None:
        return "no trust anchor"
    verifier = (
        PolicyBuilder()
        .store(store)
        .time(verify_at)
        .max_chain_depth(_MAX_DEPTH)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, list(intermediates))
    except VerificationError as exc:
        raw = str(exc)
        fallback = any(marker in raw for marker in _UNSUPPORTED) or (
            walk_at is None and _TIME_REFUSAL in raw
        )
        if not fallback:
            return _no_path(leaf) if _NO_ISSUER in raw else _library_message(raw)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        pass  # an argument or algorithm the library cannot take: walk the chain ourselves
    else:
        return None
    return _walk_chain(leaf, intermediates, trust, walk_at)


def _library_message(raw: str) -> str:
    """The library's refusal in words an operator can act on (known cases), else as it is."""
    message = raw.removeprefix("validation failed: ").removeprefix("candidates exhausted: ")
    if _TIME_REFUSAL in message:
        message = "a CA certificate of the chain is outside its validity period"
    elif message == "signature does not match":
        message = "the signature of a certificate in the chain does not match its issuer's key"
    return message if len(message) <= 300 else message[:300] + "..."


def _walk_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust: TrustSet,
    at: dt.datetime | None,
) -> str | None:
    """Depth-first path building from leaf to an anchor: signature, names, CA constraints.

    None when a path exists, else the reason the last candidate was refused. Intermediates
    may come in any order; a leaf that is itself an anchor is trusted (as by the library).
    """
    if trust._contains(leaf):
        return None
    try:
        if _has_unknown_critical(leaf.extensions):
            return f"certificate {subject_text(leaf)} has an unrecognised critical extension"
    except ValueError:
        return f"certificate {subject_text(leaf)} has malformed extensions"
    pool: dict[bytes, list[x509.Certificate]] = {}
    for certificate in intermediates:
        pool.setdefault(certificate.subject.public_bytes(), []).append(certificate)
    budget = [_MAX_SIGNATURE_CHECKS]
    reasons: list[str] = []

    def extend(path: list[x509.Certificate]) -> bool:
        child = path[-1]
        issuer_name = child.issuer.public_bytes()
        anchors = trust._issuers_named(issuer_name)
        candidates = [(anchor, True) for anchor in anchors] + [
            (cert, False) for cert in pool.get(issuer_name, []) if cert not in anchors
        ]
        if not candidates:
            reasons.append(_no_path(child))
            return False
        # Self-issued intermediates do not count against pathLenConstraint (RFC 5280 6.1.4).
        below = sum(1 for cert in path[1:] if cert.subject != cert.issuer)
        for candidate, is_anchor in candidates:
            if candidate in path:
                continue
            if len(path) >= _MAX_DEPTH:
                reasons.append(f"the chain is longer than {_MAX_DEPTH} certificates")
                return False
            if budget[0] <= 0:
                reasons.append("too many candidate issuers")
                return False
            budget[0] -= 1
            problem = _issuer_problem(child, candidate, below, at)
            if problem is not None:
                reasons.append(problem)
                continue
            if is_anchor or extend([*path, candidate]):
                return True
        return False

    if extend([leaf]):
        return None
    return reasons[-1] if reasons else "no path to a trusted CA"


def _issuer_problem(
    child: x509.Certificate, issuer: x509.Certificate, below: int, at: dt.datetime | None
) -> str | None:
    """Why issuer cannot have issued child in a valid path, or None."""
    name = subject_text(issuer)
    try:
        extensions = issuer.extensions
    except ValueError:
        return f"CA certificate {name} has malformed extensions"
    constraints = _extension(extensions, x509.BasicConstraints)
    if constraints is None or not constraints.ca:
        return f"certificate {name} is not a CA certificate (basicConstraints cA is not set)"
    if constraints.path_length is not None and below > constraints.path_length:
        return f"the path length constraint of CA certificate {name} is violated"
    key_usage = _extension(extensions, x509.KeyUsage)
    if key_usage is not None and not key_usage.key_cert_sign:
        return f"the keyUsage of CA certificate {name} lacks keyCertSign"
    if _extension(extensions, x509.NameConstraints) is not None:
        # Not checked by this walk, so never accepted by it.
        return f"CA certificate {name} has name constraints, which cannot be checked here"
    if _has_unknown_critical(extensions):
        return f"CA certificate {name} has an unrecognised critical extension"
    if at is not None and (
        issuer.not_valid_before_utc > at + CLOCK_SKEW
        or issuer.not_valid_after_utc < at - CLOCK_SKEW
    ):
        return f"CA certificate {name} is outside its validity period"
    try:
        child.verify_directly_issued_by(issuer)
    except InvalidSignature:
        return f"the signature of {subject_text(child)} does not match the key of {name}"
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return f"the signature of {subject_text(child)} by {name} cannot be verified"
    return None


# --- small helpers --------------------------------------------------------------------------

_TLS_EKUS = frozenset(
    {
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
        ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    }
)
_SKEW_TEXT = f"{int(CLOCK_SKEW.total_seconds() // 60)} minutes"

_ExtensionT = TypeVar("_ExtensionT", bound=x509.ExtensionType)


def _has_unknown_critical(extensions: x509.Extensions) -> bool:
    return any(
        ext.critical and isinstance(ext.value, x509.UnrecognizedExtension) for ext in extensions
    )


def _trust_set(anchors: Anchors) -> TrustSet:
    return anchors if isinstance(anchors, TrustSet) else TrustSet(anchors)


def _extensions(certificate: x509.Certificate) -> x509.Extensions:
    """The certificate's extensions; BadEncoding when they do not parse (duplicates, bad DER)."""
    try:
        return certificate.extensions
    except ValueError:
        raise BadEncoding(
            f"certificate {subject_text(certificate)} has malformed or duplicate extensions"
        ) from None


def _extension(extensions: x509.Extensions, kind: type[_ExtensionT]) -> _ExtensionT | None:
    try:
        return extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _key_usage_allows_tls(usage: x509.KeyUsage, certificate: x509.Certificate) -> bool:
    if usage.digital_signature:
        return True
    try:
        public_key = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return False
    if isinstance(public_key, rsa.RSAPublicKey):
        return usage.key_encipherment
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return usage.key_agreement
    return False


def _utc(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        return now.replace(tzinfo=dt.UTC)
    return now.astimezone(dt.UTC)


def _when(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _no_path(certificate: x509.Certificate) -> str:
    return (
        f"no path to a trusted CA from {subject_text(certificate)} (issuer "
        f"{name_text(certificate.issuer)}); send the missing intermediates or the issuing CA"
    )
