"""Certificate and key material: generation, parsing, CSRs, and the checks every load must pass.

API CONTRACT (stub; to be implemented). Everything here is blocking and pure: callers on an
event loop run key generation through asyncio.to_thread.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

CA_BUNDLE_ID = "gnoi-ca-bundle"
SUPPORTED_RSA_KEY_SIZES: tuple[int, ...] = (1024, 2048, 3072, 4096)
DEFAULT_RSA_KEY_SIZE = 2048
CLOCK_SKEW = dt.timedelta(minutes=5)

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


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

    Raises InvalidCertificateId otherwise (also for the reserved CA_BUNDLE_ID).
    """
    raise NotImplementedError


def choose_rsa_key_size(min_key_size: int, supported: Sequence[int] = SUPPORTED_RSA_KEY_SIZES) -> int:
    """Smallest supported size >= min_key_size; 0 means DEFAULT_RSA_KEY_SIZE. Raises UnsupportedKey."""
    raise NotImplementedError


def generate_rsa_key(size: int) -> rsa.RSAPrivateKey:
    """A fresh RSA key (e=65537). Blocking (up to seconds for 4096): run off the event loop."""
    raise NotImplementedError


def build_csr(key: PrivateKey, subject: CsrSubject) -> bytes:
    """PEM CSR, SHA-256, subject and SANs as semantics section 5. Raises InvalidCsrParameters."""
    raise NotImplementedError


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """One or more PEM blocks (order kept) or one DER certificate. Raises BadEncoding."""
    raise NotImplementedError


def load_private_key(data: bytes) -> PrivateKey:
    """Unencrypted PEM (PKCS#1, PKCS#8, SEC1) or DER; RSA >= 1024 or EC P-256/P-384. Raises BadEncoding."""
    raise NotImplementedError


def load_public_key(data: bytes) -> PublicKey | None:
    """A PEM or DER public key, or None when data is empty or not a public key (it is then ignored)."""
    raise NotImplementedError


def private_key_to_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM (what grpcio accepts)."""
    raise NotImplementedError


def certificates_to_pem(certificates: Sequence[x509.Certificate]) -> bytes:
    """Concatenated PEM blocks in the given order."""
    raise NotImplementedError


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the DER encoding, lowercase hex without separators."""
    raise NotImplementedError


def check_key_matches(certificate: x509.Certificate, key: PrivateKey) -> None:
    """Raise KeyMismatch unless the certificate's public key is the key's public key."""
    raise NotImplementedError


def check_csr_key(certificate: x509.Certificate, csr_public_key: PublicKey) -> None:
    """Raise CsrKeyMismatch unless the certificate carries the pending CSR's public key."""
    raise NotImplementedError


def check_leaf(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust_anchors: Sequence[x509.Certificate],
    *,
    now: dt.datetime | None = None,
) -> None:
    """Every check a certificate must pass before it is installed (semantics section 3).

    Validity window with CLOCK_SKEW (CertificateNotYetValid, CertificateExpired); not a CA and
    EKU/key usage allowing TLS (BadKeyUsage); chains through intermediates to one of
    trust_anchors (ChainVerificationFailed, also when trust_anchors is empty).
    """
    raise NotImplementedError


def chain_verifies(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust_anchors: Sequence[x509.Certificate],
) -> bool:
    """True when leaf chains to trust_anchors by signature and CA constraints (no time or EKU
    policy): the lockout guard's question "would this bundle still verify that certificate?"."""
    raise NotImplementedError


def make_self_signed_certificate(
    key: PrivateKey,
    *,
    common_name: str,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    days: int = 3650,
) -> x509.Certificate:
    """A self-signed TLS server certificate (the factory certificate)."""
    raise NotImplementedError
