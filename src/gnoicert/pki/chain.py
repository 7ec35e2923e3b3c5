"""Chain verification: does a certificate chain to a trusted CA, and may it be used for TLS?

Trust is the TLS stack's (docs/behaviour.md §3): our own path building (pki/path.py) decides
which paths exist; each found path must then also pass cryptography's verifier when the path
is inside what that verifier can judge (v3 certificates, RSA of 2048 bits or more, the usual EC
curves and signature algorithms), checked by us before calling it. The verifier's verdict is
its exception type, never the wording of its message. A path with name constraints that the
verifier cannot judge is refused. Error messages name subjects and fingerprints, never key bytes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from gnoicert.pki import path as pki_path
from gnoicert.pki.crypto import subject_text
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

    Every certificate of the bundle is an anchor, as for grpcio's TLS stack (it verifies with
    partial chains allowed, so a bundle holding only an intermediate CA verifies its leaves).
    check_leaf and chain_verifies accept a plain sequence too, but then index the bundle again
    on every call; with a bundle of thousands of CAs a caller that verifies often should keep a
    TrustSet beside the bundle. Immutable in effect and safe to share between threads (the
    lazy index may at worst be built twice).
    """

    __slots__ = ("_anchors", "_by_subject")

    def __init__(self, anchors: Iterable[x509.Certificate]) -> None:
        self._anchors: tuple[x509.Certificate, ...] = tuple(anchors)
        self._by_subject: dict[bytes, list[x509.Certificate]] | None = None

    @property
    def anchors(self) -> tuple[x509.Certificate, ...]:
        """The trust anchors, in the order given."""
        return self._anchors

    def __len__(self) -> int:
        return len(self._anchors)

    def __repr__(self) -> str:
        return f"TrustSet({len(self._anchors)} anchors)"

    def _index(self) -> dict[bytes, list[x509.Certificate]]:
        """Anchors by subject DER; built on first use only."""
        if self._by_subject is None:
            index: dict[bytes, list[x509.Certificate]] = {}
            for anchor in self._anchors:
                index.setdefault(anchor.subject.public_bytes(), []).append(anchor)
            self._by_subject = index
        return self._by_subject


def acts_as_ca(certificate: x509.Certificate) -> bool:
    """True for what TLS accepts in a bundle as a CA: a v3 CA, or a self-signed v1 root."""
    if pki_path.is_v1(certificate):
        return pki_path.is_self_signed(certificate)
    try:
        constraints = pki_path.extension(certificate.extensions, x509.BasicConstraints)
    except ValueError:
        return False
    return constraints is not None and constraints.ca


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
    reason = _verify_chain(leaf, intermediates, trust, at, CLOCK_SKEW)
    if reason is not None:
        raise ChainVerificationFailed(
            f"certificate {name} does not chain to a trusted CA: {reason}"
        )


def chain_verifies(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust_anchors: Anchors,
) -> bool:
    """True when leaf chains to trust_anchors as the TLS stack would accept it now: the lockout
    guard's question "would this bundle still verify that certificate?" and the client's
    preflight. The CAs must be valid now (no clock skew: the handshake allows none); the leaf's
    own validity and EKU are not asked (a bundle does not change them)."""
    trust = _trust_set(trust_anchors)
    if not len(trust):
        return False
    now = _utc(None)
    return _verify_chain(leaf, intermediates, trust, now, dt.timedelta(0)) is None


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

# What cryptography's verifier can judge (its documented profile): outside it, the verifier
# refuses a chain the TLS stack accepts (v1 roots, RSA-1024 issuers), so our walk alone decides.
_VERIFIER_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
_VERIFIER_SIGNATURES = frozenset(
    {
        SignatureAlgorithmOID.RSA_WITH_SHA256,
        SignatureAlgorithmOID.RSA_WITH_SHA384,
        SignatureAlgorithmOID.RSA_WITH_SHA512,
        SignatureAlgorithmOID.ECDSA_WITH_SHA256,
        SignatureAlgorithmOID.ECDSA_WITH_SHA384,
        SignatureAlgorithmOID.ECDSA_WITH_SHA512,
    }
)
_MAX_SERIAL = 1 << 159  # 20 octets, positive (RFC 5280 4.1.2.2)


def _verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust: TrustSet,
    at: dt.datetime,
    skew: dt.timedelta,
) -> str | None:
    """None when a path from leaf to an anchor of trust passes every check, else
    the reason the last candidate path failed. CAs must be valid at `at` give or take skew."""
    reasons: list[str] = []
    for found in pki_path.paths(
        leaf, intermediates, trust._index(), at=at, skew=skew, reasons=reasons
    ):
        problem = _verifier_problem(found, at)
        if problem is None:
            return None
        reasons.append(problem)
    return _shorten(reasons[-1]) if reasons else pki_path.no_path(leaf)


def _verifier_problem(found: tuple[x509.Certificate, ...], at: dt.datetime) -> str | None:
    """Run cryptography's verifier on a path our walk accepted, when it can judge the path.

    It also checks name constraints, which our walk does not: a constrained path it cannot
    judge is refused. Times are ours (the walk checked the CAs, check_leaf the leaf): the
    verifier is asked at the moment nearest `at` when every certificate of the path is valid,
    and cannot judge a path that has no such moment.
    """
    if len(found) == 1:
        return None  # the leaf is itself in the bundle
    start = max(c.not_valid_before_utc for c in found)
    end = min(c.not_valid_after_utc for c in found)
    if start > end or not _verifier_can_judge(found):
        constrained = [c for c in found[1:] if _has_name_constraints(c)]
        if constrained:
            return (
                f"CA certificate {subject_text(constrained[0])} has name constraints, which "
                "cannot be checked for this chain"
            )
        return None
    if any(_has_name_constraints(c) for c in found[1:]) and _subject_names_unchecked(found[0]):
        # The TLS stack applies name constraints to the subject's CN and emailAddress too;
        # the verifier applies them to the SANs only. Refuse what the two might judge apart.
        return (
            f"certificate {subject_text(found[0])} carries names in its subject that the name "
            "constraints of its CA cannot be checked against here; give it DNS SANs"
        )
    verifier = (
        PolicyBuilder()
        .store(Store([found[-1]]))
        .time(min(max(at, start), end))
        .max_chain_depth(pki_path.MAX_DEPTH)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
        .build_client_verifier()
    )
    try:
        verifier.verify(found[0], list(found[1:-1]))
    except VerificationError as exc:
        return f"the X.509 path validator refuses the chain ({_shorten(str(exc))})"
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return "the X.509 path validator cannot process the chain"
    return None


def _verifier_can_judge(found: tuple[x509.Certificate, ...]) -> bool:
    """True when every certificate is inside the verifier's profile (checked here, before
    calling it): v3, a positive serial of at most 20 octets, an RSA key of 2048 bits or more
    or a P-256/384/521 key, and (but the anchor's self-signature) a usual signature algorithm."""
    for index, certificate in enumerate(found):
        if certificate.version is not x509.Version.v3:
            return False
        if not 0 < certificate.serial_number < _MAX_SERIAL:
            return False
        key = _public_key(certificate)
        if isinstance(key, rsa.RSAPublicKey):
            if key.key_size < 2048:
                return False
        elif not (
            isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, _VERIFIER_CURVES)
        ):
            return False
        if (
            index < len(found) - 1
            and certificate.signature_algorithm_oid not in _VERIFIER_SIGNATURES
        ):
            return False
    return True


def _has_name_constraints(certificate: x509.Certificate) -> bool:
    try:
        return pki_path.extension(certificate.extensions, x509.NameConstraints) is not None
    except ValueError:
        return True


def _subject_names_unchecked(leaf: x509.Certificate) -> bool:
    """True when the leaf's subject has an emailAddress, or a CN while it has no DNS SAN."""
    if leaf.subject.get_attributes_for_oid(x509.oid.NameOID.EMAIL_ADDRESS):
        return True
    if not leaf.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME):
        return False
    try:
        sans = pki_path.extension(leaf.extensions, x509.SubjectAlternativeName)
    except ValueError:
        return True
    return sans is None or not sans.get_values_for_type(x509.DNSName)


def _shorten(message: str) -> str:
    message = message.removeprefix("validation failed: ").removeprefix("candidates exhausted: ")
    return message if len(message) <= 300 else message[:300] + "..."


# --- small helpers --------------------------------------------------------------------------

_TLS_EKUS = frozenset(
    {
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
        ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    }
)
_SKEW_TEXT = f"{int(CLOCK_SKEW.total_seconds() // 60)} minutes"


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


_extension = pki_path.extension


def _key_usage_allows_tls(usage: x509.KeyUsage, certificate: x509.Certificate) -> bool:
    if usage.digital_signature:
        return True
    public_key = _public_key(certificate)
    if isinstance(public_key, rsa.RSAPublicKey):
        return usage.key_encipherment
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return usage.key_agreement
    return False


def _public_key(certificate: x509.Certificate) -> CertificatePublicKeyTypes | None:
    """The certificate's key; None when cryptography cannot read it (no check accepts that)."""
    try:
        return certificate.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return None


def _utc(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        return now.replace(tzinfo=dt.UTC)
    return now.astimezone(dt.UTC)


def _when(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
