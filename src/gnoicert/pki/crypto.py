"""Certificate and key material: generation, parsing, CSRs, and the checks every load must pass.

Everything here is blocking and pure: callers on an event loop run key generation through
asyncio.to_thread. Error messages name subjects, IDs and fingerprints, never key bytes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import ipaddress
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from gnoicert.common.constants import CA_BUNDLE_ID as CA_BUNDLE_ID
from gnoicert.common.constants import DEFAULT_RSA_KEY_SIZE as DEFAULT_RSA_KEY_SIZE
from gnoicert.common.constants import SUPPORTED_RSA_KEY_SIZES as SUPPORTED_RSA_KEY_SIZES
from gnoicert.pki import profiles
from gnoicert.pki.errors import (
    BadEncoding,
    CsrKeyMismatch,
    InvalidCertificateId,
    InvalidCsrParameters,
    KeyMismatch,
    UnsupportedKey,
)

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
    """The CSRParams subject fields (docs/behaviour.md §5); empty string means absent."""

    common_name: str = ""
    country: str = ""
    state: str = ""
    city: str = ""
    organization: str = ""
    organizational_unit: str = ""
    ip_address: str = ""
    email_id: str = ""


CSR_SUBJECT_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(CsrSubject))
"""The subject field names, in order; also the names CSRParams and the client use."""


def subject_fields(source: object) -> dict[str, str]:
    """The CSR subject fields read by name from anything that carries them (a CsrSubject or a
    subclass, a CSRParams message, parsed command-line arguments): the one field-by-field map."""
    return {name: getattr(source, name) for name in CSR_SUBJECT_FIELDS}


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
    min_key_size: int,
    supported: Sequence[int] = SUPPORTED_RSA_KEY_SIZES,
    default: int = DEFAULT_RSA_KEY_SIZE,
) -> int:
    """Smallest supported size >= max(min_key_size, default) (docs/behaviour.md §5).

    A small min_key_size (common clients ask 1024) never downgrades the key below default; a
    default above every supported size means the largest. Raises UnsupportedKey, naming the
    supported sizes, when min_key_size is above them all.
    """
    sizes = sorted(set(supported))
    if not sizes:
        raise UnsupportedKey("no RSA key size is configured on the target")
    listed = ", ".join(str(size) for size in sizes)
    if min_key_size < 0:
        raise UnsupportedKey(f"invalid RSA key size {min_key_size}; supported sizes: {listed}")
    if min_key_size > sizes[-1]:
        raise UnsupportedKey(
            f"RSA keys of at least {min_key_size} bits are not supported; supported sizes: {listed}"
        )
    floor = max(min_key_size, min(default, sizes[-1]))
    return next(size for size in sizes if size >= floor)


def generate_rsa_key(size: int) -> rsa.RSAPrivateKey:
    """A fresh RSA key (e=65537). Blocking (up to seconds for 4096): run off the event loop."""
    if not _MIN_RSA_BITS <= size <= _MAX_RSA_BITS:
        raise UnsupportedKey(f"cannot generate an RSA key of {size} bits")
    return rsa.generate_private_key(public_exponent=65537, key_size=size)


def validate_csr_subject(subject: CsrSubject) -> None:
    """Raise InvalidCsrParameters for fields no CSR may carry (docs/behaviour.md §5): the checks
    of build_csr, without a key, so a client can refuse bad input before it dials."""
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
    if subject.ip_address:
        _parse_ip(subject.ip_address, "ip_address")


def build_csr(key: PrivateKey, subject: CsrSubject) -> bytes:
    """PEM CSR, SHA-256, subject and SANs as docs/behaviour.md §5. Raises InvalidCsrParameters."""
    validate_csr_subject(subject)
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
    """Refuse CSR fields a CA would refuse too: too long, control characters, not UTF-8.

    The limit counts UTF-8 bytes, as cryptography does for the common name (docs/behaviour.md
    §5): 17 four-byte characters are 68 bytes, over the common name's 64.
    """
    if not isinstance(value, str):
        raise InvalidCsrParameters(f"{label} must be a string")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidCsrParameters(f"{label} is not valid UTF-8 text") from None
    if size > limit:
        characters = "" if size == len(value) else f" ({len(value)} characters)"
        raise InvalidCsrParameters(
            f"{label} is {size} bytes long in UTF-8{characters}; the limit is {limit} bytes"
        )
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


def bundle_fingerprint(bundle_pem: bytes) -> str:
    """SHA-256 of a CA bundle as stored (its PEM bytes), hex; "" for no bundle. The audit log
    names a bundle by it, so a restart can tell which bundle the store holds."""
    return hashlib.sha256(bundle_pem).hexdigest() if bundle_pem.strip() else ""


def check_key_matches(certificate: x509.Certificate, key: PrivateKey) -> None:
    """Raise KeyMismatch unless the certificate's public key is the key's public key."""
    if not _same_public_key(certificate, key.public_key()):
        raise KeyMismatch(
            f"the private key does not belong to certificate {subject_text(certificate)} "
            f"(sha256 {fingerprint(certificate)})"
        )


def check_csr_key(certificate: x509.Certificate, csr_public_key: PublicKey) -> None:
    """Raise CsrKeyMismatch unless the certificate carries the pending CSR's public key."""
    if not _same_public_key(certificate, csr_public_key):
        raise CsrKeyMismatch(
            f"certificate {subject_text(certificate)} (sha256 {fingerprint(certificate)}) does not "
            "carry the public key of the pending CSR; sign the CSR that the target generated"
        )


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
        .add_extension(profiles.leaf_key_usage(key.public_key()), critical=True)
        .add_extension(profiles.extended_key_usage(profiles.SERVER_ONLY), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


def _same_public_key(certificate: x509.Certificate, key: PublicKey) -> bool:
    """Compare SubjectPublicKeyInfo encodings: exact, and fine across key types."""
    try:
        ours = certificate.public_key().public_bytes(_DER, _SPKI)
    except (ValueError, UnsupportedAlgorithm):
        return False
    return ours == key.public_bytes(_DER, _SPKI)


_DER = serialization.Encoding.DER
_SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


def name_text(name: x509.Name) -> str:
    """RFC 4514 text of a name, shortened: names come from the sender and may be huge."""
    try:
        text = name.rfc4514_string()
    except ValueError:
        text = "<unprintable name>"
    return repr(text if len(text) <= 120 else text[:120] + "...")


def subject_text(certificate: x509.Certificate) -> str:
    return name_text(certificate.subject)


def _key_kind(key: object) -> str:
    """A short, key-free name for a key's type, for messages."""
    return type(key).__name__.lstrip("_").removesuffix("PrivateKey").removesuffix("PublicKey")
