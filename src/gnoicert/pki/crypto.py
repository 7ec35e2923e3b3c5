"""Certificate and key material: generation, parsing, CSRs, and the checks every load must pass.

Everything here is blocking and pure: callers on an event loop run key generation through
asyncio.to_thread. Error messages name subjects, IDs and fingerprints, never key bytes.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from gnoicert.pki.errors import (
    BadEncoding,
    BadKeyUsage,
    CertificateExpired,
    CertificateNotYetValid,
    ChainVerificationFailed,
    CsrKeyMismatch,
    InvalidCertificateId,
    InvalidCsrParameters,
    KeyMismatch,
    UnsupportedKey,
)

CA_BUNDLE_ID = "gnoi-ca-bundle"
SUPPORTED_RSA_KEY_SIZES: tuple[int, ...] = (1024, 2048, 3072, 4096)
DEFAULT_RSA_KEY_SIZE = 2048
CLOCK_SKEW = dt.timedelta(minutes=5)

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

_CERT_ID_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
_CERT_ID_RULE = "1 to 64 characters of A-Z a-z 0-9 . _ -, not starting with '.'"
_MIN_RSA_BITS = 1024
_MAX_RSA_BITS = 16384
_EC_CURVES: tuple[type[ec.EllipticCurve], ...] = (ec.SECP256R1, ec.SECP384R1)
_KEYS_ACCEPTED = (
    "an unencrypted PEM (PKCS#1, PKCS#8 or SEC1) or DER private key: RSA of at least 1024 bits, "
    "or ECDSA P-256 or P-384"
)
_COUNTRY_RE = re.compile(r"[A-Za-z]{2}")
_EMAIL_RE = re.compile(r"[!-?A-~]+@[!-?A-~]+")
_DNS_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOST_RE = re.compile(rf"(?:\*\.)?{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
_PEM_MARK = b"-----BEGIN"
_DER_SEQUENCE = 0x30


@dataclass(frozen=True, slots=True, kw_only=True)
class CsrSubject:
    """The CSRParams subject fields (semantics section 5); empty string means absent."""

    common_name: str = ""
    country: str = ""
    state: str = ""
    city: str = ""
    organization: str = ""
    organizational_unit: str = ""
    ip_address: str = ""
    email_id: str = ""


def validate_certificate_id(cert_id: str) -> str:
    """Return cert_id if it is 1-64 chars of [A-Za-z0-9._-] not starting with '.'.

    Raises InvalidCertificateId otherwise (also for the reserved CA_BUNDLE_ID). IDs become file
    names: this is the gate against path tricks.
    """
    if not isinstance(cert_id, str):
        raise InvalidCertificateId(f"certificate ID must be a string of {_CERT_ID_RULE}")
    if cert_id == CA_BUNDLE_ID:
        raise InvalidCertificateId(
            f"certificate ID {CA_BUNDLE_ID!r} is reserved for the CA bundle; choose another ID"
        )
    if _CERT_ID_RE.fullmatch(cert_id) is None:
        shown = cert_id if len(cert_id) <= 80 else cert_id[:80] + "..."
        raise InvalidCertificateId(f"invalid certificate ID {shown!r}: use {_CERT_ID_RULE}")
    return cert_id


def choose_rsa_key_size(
    min_key_size: int, supported: Sequence[int] = SUPPORTED_RSA_KEY_SIZES
) -> int:
    """Smallest supported size >= min_key_size; 0 means DEFAULT_RSA_KEY_SIZE.

    Raises UnsupportedKey, naming the supported sizes.
    """
    sizes = sorted(set(supported))
    if not sizes:
        raise UnsupportedKey("no RSA key size is configured on the target")
    listed = ", ".join(str(size) for size in sizes)
    if min_key_size < 0:
        raise UnsupportedKey(f"invalid RSA key size {min_key_size}; supported sizes: {listed}")
    if min_key_size == 0:
        return DEFAULT_RSA_KEY_SIZE if DEFAULT_RSA_KEY_SIZE in sizes else sizes[0]
    for size in sizes:
        if size >= min_key_size:
            return size
    raise UnsupportedKey(
        f"RSA keys of at least {min_key_size} bits are not supported; supported sizes: {listed}"
    )


def generate_rsa_key(size: int) -> rsa.RSAPrivateKey:
    """A fresh RSA key (e=65537). Blocking (up to seconds for 4096): run off the event loop."""
    if not _MIN_RSA_BITS <= size <= _MAX_RSA_BITS:
        raise UnsupportedKey(f"cannot generate an RSA key of {size} bits")
    return rsa.generate_private_key(public_exponent=65537, key_size=size)


def build_csr(key: PrivateKey, subject: CsrSubject) -> bytes:
    """PEM CSR, SHA-256, subject and SANs as semantics section 5. Raises InvalidCsrParameters."""
    for label, value, limit in (
        ("common_name", subject.common_name, 64),
        ("country", subject.country, 64),
        ("state", subject.state, 128),
        ("city", subject.city, 128),
        ("organization", subject.organization, 64),
        ("organizational_unit", subject.organizational_unit, 64),
        ("ip_address", subject.ip_address, 64),
        ("email_id", subject.email_id, 255),
    ):
        _check_csr_text(label, value, limit)
    if subject.country and _COUNTRY_RE.fullmatch(subject.country) is None:
        raise InvalidCsrParameters(
            f"country {subject.country!r} is not a two-letter ISO 3166 code (such as 'US')"
        )
    if subject.email_id and _EMAIL_RE.fullmatch(subject.email_id) is None:
        raise InvalidCsrParameters(
            f"email_id {subject.email_id!r} is not an e-mail address (ASCII, one '@', "
            "a local part and a domain)"
        )
    attributes = [
        x509.NameAttribute(oid, value)
        for oid, value in (
            (NameOID.COMMON_NAME, subject.common_name),
            (NameOID.COUNTRY_NAME, subject.country),
            (NameOID.STATE_OR_PROVINCE_NAME, subject.state),
            (NameOID.LOCALITY_NAME, subject.city),
            (NameOID.ORGANIZATION_NAME, subject.organization),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, subject.organizational_unit),
            (NameOID.EMAIL_ADDRESS, subject.email_id),
        )
        if value
    ]
    sans: list[x509.GeneralName] = []
    if _is_host_name(subject.common_name):
        sans.append(x509.DNSName(subject.common_name))
    if subject.ip_address:
        sans.append(x509.IPAddress(_parse_ip(subject.ip_address, "ip_address")))
    if subject.email_id:
        try:
            sans.append(x509.RFC822Name(subject.email_id))
        except ValueError:
            # cryptography also insists on what email.utils.parseaddr accepts.
            raise InvalidCsrParameters(
                f"email_id {subject.email_id!r} is not an e-mail address"
            ) from None
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    try:
        csr = builder.sign(key, hashes.SHA256())
    except ValueError as exc:
        # The checks above should make this unreachable; the message holds no key material.
        raise InvalidCsrParameters(f"the CSR parameters were refused: {exc}") from None
    return csr.public_bytes(serialization.Encoding.PEM)


def _check_csr_text(label: str, value: str, limit: int) -> None:
    """Refuse CSR fields a CA would refuse too: too long, control characters, not UTF-8."""
    if not isinstance(value, str):
        raise InvalidCsrParameters(f"{label} must be a string")
    if len(value) > limit:
        raise InvalidCsrParameters(f"{label} is {len(value)} characters long; the limit is {limit}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidCsrParameters(f"{label} is not valid UTF-8 text") from None
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in value):
        raise InvalidCsrParameters(f"{label} contains control characters")


def _is_host_name(name: str) -> bool:
    """True for a DNS host name (LDH labels, optional leading '*.'), never for an IP address."""
    if not name or len(name) > 253 or _HOST_RE.fullmatch(name) is None:
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return True
    return False


def _parse_ip(text: str, label: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IPv4 or IPv6 address without zone; InvalidCsrParameters otherwise."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidCsrParameters(
            f"{label} {text!r} is not an IPv4 or IPv6 address (such as 192.0.2.1 or 2001:db8::1)"
        ) from None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        raise InvalidCsrParameters(f"{label} {text!r} carries a zone; send the bare address")
    return address


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """One or more PEM blocks (order kept) or one DER certificate. Raises BadEncoding."""
    raw = bytes(data)
    # DER is binary: stripping "whitespace" could cut a signature byte, so try it untouched first.
    if raw[:1] == bytes((_DER_SEQUENCE,)):
        try:
            return [x509.load_der_x509_certificate(raw)]
        except ValueError:
            if _PEM_MARK not in raw:
                raise BadEncoding(
                    "the certificate is not a valid DER X.509 certificate; send one or more PEM "
                    "'CERTIFICATE' blocks or one DER certificate"
                ) from None
    text = raw.strip()
    if not text:
        raise BadEncoding("no certificate: the certificate data is empty")
    if _PEM_MARK not in text:
        raise BadEncoding(
            "the certificate is neither PEM nor DER; send one or more PEM 'CERTIFICATE' blocks "
            "or one DER certificate"
        )
    try:
        # One call for the whole bundle: a 20,000-certificate CA bundle must load in seconds.
        certificates = x509.load_pem_x509_certificates(text)
    except ValueError:
        raise BadEncoding(
            "the PEM data holds no valid 'CERTIFICATE' block (bad framing, base64 or X.509 "
            "contents); send one or more PEM 'CERTIFICATE' blocks or one DER certificate"
        ) from None
    if not certificates:
        raise BadEncoding("the PEM data holds no 'CERTIFICATE' block")
    return certificates


def load_private_key(data: bytes, *, trusted: bool = False) -> PrivateKey:
    """Unencrypted PEM (PKCS#1, PKCS#8, SEC1) or DER; RSA >= 1024 or EC P-256/P-384.

    trusted skips RSA key validation (~40 ms for 2048 bits): only for keys the target made or
    already validated when they were loaded. Raises BadEncoding; the message says what is
    accepted and never echoes the key bytes.
    """
    raw = bytes(data)
    text = raw.strip()
    if not text:
        raise BadEncoding(f"no private key: the key data is empty; send {_KEYS_ACCEPTED}")
    pem = _PEM_MARK in text
    if pem and b"ENCRYPTED" in text:
        raise BadEncoding(f"the private key is encrypted; send {_KEYS_ACCEPTED}")
    try:
        if pem:
            loaded = serialization.load_pem_private_key(
                text, password=None, unsafe_skip_rsa_key_validation=trusted
            )
        else:
            loaded = serialization.load_der_private_key(
                raw, password=None, unsafe_skip_rsa_key_validation=trusted
            )
    except TypeError:
        # cryptography's way of saying "this key needs a password".
        raise BadEncoding(f"the private key is encrypted; send {_KEYS_ACCEPTED}") from None
    except UnsupportedAlgorithm:
        raise BadEncoding(
            f"the private key uses an unsupported algorithm; send {_KEYS_ACCEPTED}"
        ) from None
    except ValueError:
        raise BadEncoding(f"the private key could not be parsed; send {_KEYS_ACCEPTED}") from None
    if isinstance(loaded, rsa.RSAPrivateKey):
        if loaded.key_size < _MIN_RSA_BITS:
            raise BadEncoding(
                f"the RSA private key has {loaded.key_size} bits; send {_KEYS_ACCEPTED}"
            )
        return loaded
    if isinstance(loaded, ec.EllipticCurvePrivateKey):
        if not isinstance(loaded.curve, _EC_CURVES):
            raise BadEncoding(
                f"the EC private key is on curve {loaded.curve.name}; send {_KEYS_ACCEPTED}"
            )
        return loaded
    raise BadEncoding(
        f"private keys of type {_key_kind(loaded)} are not supported; send {_KEYS_ACCEPTED}"
    )


def load_public_key(data: bytes) -> PublicKey | None:
    """A PEM or DER public key, or None when data is empty or not a public key.

    None means "ignore it": one common client puts its DER CSR in KeyPair.public_key.
    """
    raw = bytes(data)
    text = raw.strip()
    if not text:
        return None
    try:
        if _PEM_MARK in text:
            loaded = serialization.load_pem_public_key(text)
        else:
            loaded = serialization.load_der_public_key(raw)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    if isinstance(loaded, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return loaded
    return None


def private_key_to_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM (what grpcio accepts)."""
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def certificates_to_pem(certificates: Sequence[x509.Certificate]) -> bytes:
    """Concatenated PEM blocks in the given order."""
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certificates)


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the DER encoding, lowercase hex without separators."""
    return certificate.fingerprint(hashes.SHA256()).hex()


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


def check_key_matches(certificate: x509.Certificate, key: PrivateKey) -> None:
    """Raise KeyMismatch unless the certificate's public key is the key's public key."""
    if not _same_public_key(certificate, key.public_key()):
        raise KeyMismatch(
            f"the private key does not belong to certificate {_describe(certificate)} "
            f"(sha256 {fingerprint(certificate)})"
        )


def check_csr_key(certificate: x509.Certificate, csr_public_key: PublicKey) -> None:
    """Raise CsrKeyMismatch unless the certificate carries the pending CSR's public key."""
    if not _same_public_key(certificate, csr_public_key):
        raise CsrKeyMismatch(
            f"certificate {_describe(certificate)} (sha256 {fingerprint(certificate)}) does not "
            "carry the public key of the pending CSR; sign the CSR that the target generated"
        )


def check_leaf(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust_anchors: Anchors,
    *,
    now: dt.datetime | None = None,
) -> None:
    """Every check a certificate must pass before it is installed (semantics section 3).

    Validity window with CLOCK_SKEW (CertificateNotYetValid, CertificateExpired); not a CA and
    EKU/key usage allowing TLS (BadKeyUsage); chains through intermediates to one of
    trust_anchors (ChainVerificationFailed, also when trust_anchors is empty). trust_anchors may
    be a prebuilt TrustSet.
    """
    at = _utc(now)
    name = _describe(leaf)
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


def make_self_signed_certificate(
    key: PrivateKey,
    *,
    common_name: str,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    days: int = 3650,
) -> x509.Certificate:
    """A self-signed TLS server certificate (the factory certificate).

    Raises ValueError for a bad name, address or lifetime (these come from configuration).
    """
    if days < 1:
        raise ValueError("a self-signed certificate must be valid for at least one day")
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(address)) for address in ip_addresses]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    rsa_key = isinstance(key, rsa.RSAPrivateKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Back-dated a little so that a client whose clock runs behind still accepts it.
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=rsa_key,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


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
            return f"certificate {_describe(leaf)} has an unrecognised critical extension"
    except ValueError:
        return f"certificate {_describe(leaf)} has malformed extensions"
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
    name = _describe(issuer)
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
        return f"the signature of {_describe(child)} does not match the key of {name}"
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return f"the signature of {_describe(child)} by {name} cannot be verified"
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
            f"certificate {_describe(certificate)} has malformed or duplicate extensions"
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


def _same_public_key(certificate: x509.Certificate, key: PublicKey) -> bool:
    """Compare SubjectPublicKeyInfo encodings: exact, and fine across key types."""
    try:
        ours = certificate.public_key().public_bytes(_DER, _SPKI)
    except (ValueError, UnsupportedAlgorithm):
        return False
    return ours == key.public_bytes(_DER, _SPKI)


_DER = serialization.Encoding.DER
_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


def _utc(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        return now.replace(tzinfo=dt.UTC)
    return now.astimezone(dt.UTC)


def _when(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _name(name: x509.Name) -> str:
    """RFC 4514 text of a name, shortened: names come from the sender and may be huge."""
    try:
        text = name.rfc4514_string()
    except ValueError:
        text = "<unprintable name>"
    return repr(text if len(text) <= 120 else text[:120] + "...")


def _no_path(certificate: x509.Certificate) -> str:
    return (
        f"no path to a trusted CA from {_describe(certificate)} (issuer "
        f"{_name(certificate.issuer)}); send the missing intermediates or the issuing CA"
    )


def _describe(certificate: x509.Certificate) -> str:
    return _name(certificate.subject)


def _key_kind(key: object) -> str:
    """A short, key-free name for a key's type, for messages."""
    return type(key).__name__.lstrip("_").removesuffix("PrivateKey").removesuffix("PublicKey")
