"""The device PKI: certificate material, chain checks and the crash-safe store. No gRPC here.

The names below load on first use (PEP 562): a client that only needs `pki.crypto` does not pay
for the store's modules at start (the `gnoicert get` start-up budget, docs/platform-notes.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOMES = {
    "chain": ("CLOCK_SKEW", "TrustSet", "chain_verifies", "check_leaf"),
    "crypto": (
        "CA_BUNDLE_ID",
        "DEFAULT_RSA_KEY_SIZE",
        "SUPPORTED_RSA_KEY_SIZES",
        "CsrSubject",
        "build_csr",
        "fingerprint",
        "generate_rsa_key",
        "load_certificates",
        "load_private_key",
        "validate_certificate_id",
    ),
    "errors": ("PkiError",),
    "store": ("CertificateEntity", "KeyOrigin", "Store", "StoreView", "Transaction"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

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


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
