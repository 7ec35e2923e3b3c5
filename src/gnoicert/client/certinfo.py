"""Certificates and CSRs described for a person: subject, SANs, key, validity, fingerprint."""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from gnoicert.client.listing import CertificateInfo, Endpoint
from gnoicert.pki.crypto import fingerprint, load_certificates
from gnoicert.pki.errors import BadEncoding

_NS_PER_S = 1_000_000_000

# cryptography builds a Name's attributes each time `.subject` or `.issuer` is read, and warns
# (UserWarning) about a country that is not two letters: gnxi's CSRs carry an empty C=, which
# ends up in certificates signed for them. Such a name is still usable; only that warning goes.
_SHORT_ATTRIBUTE = r"Attribute's length must be >= \d+ and <= \d+, but it was \d+"

NamedObject = x509.Certificate | x509.CertificateSigningRequest


@contextmanager
def lenient_names() -> Iterator[None]:
    """Read certificate and CSR names without cryptography's short-attribute warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_SHORT_ATTRIBUTE, category=UserWarning)
        yield


def subject_of(item: NamedObject) -> x509.Name:
    """The subject of a certificate or CSR (see lenient_names)."""
    with lenient_names():
        return item.subject


def issuer_of(certificate: x509.Certificate) -> x509.Name:
    """The issuer of a certificate (see lenient_names)."""
    with lenient_names():
        return certificate.issuer


def subject_text(item: NamedObject) -> str:
    """The subject as an RFC 4514 string, for a person."""
    return subject_of(item).rfc4514_string()


def san_strings(extensions: x509.Extensions) -> tuple[str, ...]:
    """Subject alternative names as "DNS:name", "IP:addr", "email:addr", "URI:uri"."""
    try:
        sans = extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    shown: list[str] = []
    for name in sans:
        if isinstance(name, x509.DNSName):
            shown.append(f"DNS:{name.value}")
        elif isinstance(name, x509.IPAddress):
            shown.append(f"IP:{name.value}")
        elif isinstance(name, x509.RFC822Name):
            shown.append(f"email:{name.value}")
        elif isinstance(name, x509.UniformResourceIdentifier):
            shown.append(f"URI:{name.value}")
        else:
            shown.append(f"{type(name).__name__}:{name.value}")
    return tuple(shown)


def key_description(public_key: object) -> tuple[str, int]:
    """("RSA", 2048), ("ECDSA", 256), ("Ed25519", 256) ... for a public key."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return "RSA", public_key.key_size
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "ECDSA", public_key.curve.key_size
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "Ed448", 456
    if isinstance(public_key, dsa.DSAPublicKey):
        return "DSA", public_key.key_size
    return type(public_key).__name__, 0


def common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not values:
        return ""
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8", errors="replace")


def days_left(not_after: dt.datetime, now: dt.datetime) -> int:
    """Whole days until not_after; negative once expired (-1 on the first day after)."""
    return math.floor((not_after - now).total_seconds() / 86400)


def modified_time(modification_ns: int) -> dt.datetime | None:
    """modification_time (ns since the epoch) as UTC, None when the target left it at 0."""
    if modification_ns <= 0:
        return None
    return dt.datetime.fromtimestamp(modification_ns / _NS_PER_S, tz=dt.UTC)


def describe_certificate(
    certificate_id: str,
    data: bytes,
    *,
    endpoints: Sequence[Endpoint] = (),
    modification_ns: int = 0,
    now: dt.datetime | None = None,
) -> CertificateInfo:
    """A parsed CertificateInfo; never raises for bad PEM (sets `parse_error` instead)."""
    now = now or dt.datetime.now(dt.UTC)
    pem = data.decode("ascii", errors="replace")
    try:
        chain = load_certificates(data)
    except BadEncoding as exc:
        return CertificateInfo(
            certificate_id=certificate_id,
            subject="",
            common_name="",
            sans=(),
            issuer="",
            key_type="",
            key_size=0,
            not_before=None,
            not_after=None,
            days_left=None,
            fingerprint="",
            serial="",
            chain_length=0,
            endpoints=tuple(endpoints),
            modified=modified_time(modification_ns),
            certificate_pem=pem,
            parse_error=str(exc),
        )
    leaf = chain[0]
    key_type, key_size = key_description(leaf.public_key())
    return CertificateInfo(
        certificate_id=certificate_id,
        subject=subject_text(leaf),
        common_name=common_name(subject_of(leaf)),
        sans=san_strings(leaf.extensions),
        issuer=issuer_of(leaf).rfc4514_string(),
        key_type=key_type,
        key_size=key_size,
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        days_left=days_left(leaf.not_valid_after_utc, now),
        fingerprint=fingerprint(leaf),
        serial=f"{leaf.serial_number:x}",
        chain_length=len(chain),
        endpoints=tuple(endpoints),
        modified=modified_time(modification_ns),
        certificate_pem=pem,
    )


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    """A PEM or DER CSR; BadEncoding otherwise."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_csr(data.strip())
        return x509.load_der_x509_csr(data)
    except ValueError:
        raise BadEncoding("the data is not a PEM or DER certificate signing request") from None
