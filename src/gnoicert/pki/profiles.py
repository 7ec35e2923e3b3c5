"""The certificate profiles gnoicert issues: KeyUsage and ExtendedKeyUsage, in one place.

A leaf signs (TLS 1.3 and ECDHE) and, for RSA, may also encipher keys (TLS 1.2 RSA key
exchange); a CA only signs certificates and CRLs.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

SERVER_ONLY = (ExtendedKeyUsageOID.SERVER_AUTH,)
"""The factory certificate: it only ever serves TLS."""
SERVER_AND_CLIENT = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)
"""Leaves from the local CA: a device certificate or an operator's client certificate."""


def _key_usage(*, key_encipherment: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def leaf_key_usage(public_key: object) -> x509.KeyUsage:
    """KeyUsage of an end-entity certificate for `public_key` (critical)."""
    return _key_usage(key_encipherment=isinstance(public_key, rsa.RSAPublicKey), ca=False)


def ca_key_usage() -> x509.KeyUsage:
    """KeyUsage of a CA certificate (critical)."""
    return _key_usage(key_encipherment=False, ca=True)


def extended_key_usage(purposes: tuple[x509.ObjectIdentifier, ...]) -> x509.ExtendedKeyUsage:
    """ExtendedKeyUsage for one of the purpose sets above (not critical)."""
    return x509.ExtendedKeyUsage(list(purposes))
