"""The device PKI: certificate material, chain checks and the crash-safe store. No gRPC here."""

from __future__ import annotations

from gnoicert.pki.chain import CLOCK_SKEW, TrustSet, chain_verifies, check_leaf
from gnoicert.pki.crypto import (
    CA_BUNDLE_ID,
    DEFAULT_RSA_KEY_SIZE,
    SUPPORTED_RSA_KEY_SIZES,
    CsrSubject,
    build_csr,
    fingerprint,
    generate_rsa_key,
    load_certificates,
    load_private_key,
    validate_certificate_id,
)
from gnoicert.pki.errors import PkiError
from gnoicert.pki.store import (
    CertificateEntity,
    KeyOrigin,
    Store,
    StoreView,
    Transaction,
)

__all__ = (
    "CA_BUNDLE_ID",
    "CLOCK_SKEW",
    "DEFAULT_RSA_KEY_SIZE",
    "SUPPORTED_RSA_KEY_SIZES",
    "CertificateEntity",
    "CsrSubject",
    "KeyOrigin",
    "PkiError",
    "Store",
    "StoreView",
    "Transaction",
    "TrustSet",
    "build_csr",
    "chain_verifies",
    "check_leaf",
    "fingerprint",
    "generate_rsa_key",
    "load_certificates",
    "load_private_key",
    "validate_certificate_id",
)
