"""Large CA bundles, made fast: one EC key signs (and is the key of) every CA certificate.

docs/behaviour.md §7: a bundle of 20,000 CA certificates must load, in seconds. Distinct
subjects and serials make them distinct CAs as far as chain building is concerned.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.pki import PublicKey, ec_key, now


@dataclass(frozen=True)
class Bundle:
    """count CA certificates (PEM each) and what is needed to issue under the last one."""

    pems: tuple[bytes, ...]
    last: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def issue_under_last(self, public_key: PublicKey, *, cn: str = "bundle leaf") -> bytes:
        """A TLS leaf issued by the last CA of the bundle, PEM."""
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.last.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now() - dt.timedelta(hours=1))
            .not_valid_after(now() + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        return leaf.public_bytes(serialization.Encoding.PEM)


def make_bundle(count: int, *, prefix: str = "bulk CA") -> Bundle:
    key = ec_key()
    public = key.public_key()
    start, end = now() - dt.timedelta(days=1), now() + dt.timedelta(days=3650)
    constraints = x509.BasicConstraints(ca=True, path_length=None)
    pems: list[bytes] = []
    cert: x509.Certificate | None = None
    for index in range(count):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{prefix} {index:05d}")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(index + 1)
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(constraints, critical=True)
            .sign(key, hashes.SHA256())
        )
        pems.append(cert.public_bytes(serialization.Encoding.PEM))
    assert cert is not None
    return Bundle(tuple(pems), cert, key)
