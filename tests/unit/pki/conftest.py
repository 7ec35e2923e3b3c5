"""Key and certificate material for the PKI unit tests: real keys, real chains, made once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from tests.vectors import load_vector

# Every generated certificate is valid from REF - 1 day to REF + 30 days unless a test says
# otherwise; tests that probe time pass now= explicitly.
REF = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@pytest.fixture(scope="session")
def vector() -> Callable[[str], bytes]:
    """tests/vectors' load_vector(name)."""
    return load_vector


@pytest.fixture(scope="session")
def ref() -> dt.datetime:
    """The reference time of every generated certificate's default validity window."""
    return REF


def ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate with the private key of its subject."""

    cert: x509.Certificate
    key: SigningKey


class Issue(Protocol):
    def __call__(
        self,
        key: SigningKey,
        subject: str,
        issuer: Issued | None = None,
        *,
        ca: bool = False,
        path_length: int | None = None,
        basic_constraints: bool = True,
        ku: x509.KeyUsage | Literal["auto"] | None = "auto",
        eku: Sequence[x509.ObjectIdentifier] | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        sans: Sequence[x509.GeneralName] | None = None,
        extra: Sequence[x509.ExtensionType] = (),
        critical_extra: Sequence[x509.ExtensionType] = (),
        signing_key: SigningKey | None = None,
    ) -> Issued: ...


def issue(
    key: SigningKey,
    subject: str,
    issuer: Issued | None = None,
    *,
    ca: bool = False,
    path_length: int | None = None,
    basic_constraints: bool = True,
    ku: x509.KeyUsage | Literal["auto"] | None = "auto",
    eku: Sequence[x509.ObjectIdentifier] | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    sans: Sequence[x509.GeneralName] | None = None,
    extra: Sequence[x509.ExtensionType] = (),
    critical_extra: Sequence[x509.ExtensionType] = (),
    signing_key: SigningKey | None = None,
) -> Issued:
    """Issue a certificate for key; self-signed when issuer is None.

    signing_key overrides the issuer's key (a forged certificate: right names, wrong key).
    """
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name = issuer.cert.subject if issuer is not None else name
    signer = signing_key or (issuer.key if issuer is not None else key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or REF - DAY)
        .not_valid_after(not_after or REF + 30 * DAY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if basic_constraints:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length), critical=True
        )
    usage = (ca_key_usage() if ca else None) if ku == "auto" else ku
    if isinstance(usage, x509.KeyUsage):
        builder = builder.add_extension(usage, critical=True)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if sans is None and not ca:
        sans = [x509.DNSName(subject)]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    for extension in extra:
        builder = builder.add_extension(extension, critical=False)
    for extension in critical_extra:
        builder = builder.add_extension(extension, critical=True)
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return Issued(builder.sign(signer, algorithm), key)


@dataclass(frozen=True, slots=True)
class Keys:
    """Keys made once per session: RSA-2048 keygen costs ~30-100 ms each."""

    rsa_a: rsa.RSAPrivateKey
    rsa_b: rsa.RSAPrivateKey
    rsa_c: rsa.RSAPrivateKey
    rsa1024_a: rsa.RSAPrivateKey
    rsa1024_b: rsa.RSAPrivateKey
    rsa1024_c: rsa.RSAPrivateKey
    p256_a: ec.EllipticCurvePrivateKey
    p256_b: ec.EllipticCurvePrivateKey
    p384: ec.EllipticCurvePrivateKey
    ed25519: ed25519.Ed25519PrivateKey


@pytest.fixture(scope="session")
def keys() -> Keys:
    def rsa_key(size: int) -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=size)

    return Keys(
        rsa_a=rsa_key(2048),
        rsa_b=rsa_key(2048),
        rsa_c=rsa_key(2048),
        rsa1024_a=rsa_key(1024),
        rsa1024_b=rsa_key(1024),
        rsa1024_c=rsa_key(1024),
        p256_a=ec.generate_private_key(ec.SECP256R1()),
        p256_b=ec.generate_private_key(ec.SECP256R1()),
        p384=ec.generate_private_key(ec.SECP384R1()),
        ed25519=ed25519.Ed25519PrivateKey.generate(),
    )


@dataclass(frozen=True, slots=True)
class Chain:
    """root (RSA-2048) -> intermediate (P-256) -> leaf (RSA-2048, serverAuth)."""

    root: Issued
    intermediate: Issued
    leaf: Issued


@pytest.fixture(scope="session")
def chain(keys: Keys) -> Chain:
    root = issue(keys.rsa_a, "Test Root CA", ca=True)
    intermediate = issue(keys.p256_a, "Test Intermediate CA", root, ca=True, path_length=0)
    leaf = issue(
        keys.rsa_b,
        "router1.example.net",
        intermediate,
        eku=[x509.oid.ExtendedKeyUsageOID.SERVER_AUTH],
        ku=x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=True,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=False,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        ),
    )
    return Chain(root=root, intermediate=intermediate, leaf=leaf)


@pytest.fixture(scope="session")
def weak_chain(keys: Keys) -> Chain:
    """All RSA-1024: cryptography's verifier refuses the issuers, so the fallback walk decides."""
    root = issue(keys.rsa1024_a, "Weak Root CA", ca=True)
    intermediate = issue(keys.rsa1024_b, "Weak Intermediate CA", root, ca=True)
    leaf = issue(keys.rsa1024_c, "weak.example.net", intermediate)
    return Chain(root=root, intermediate=intermediate, leaf=leaf)


@pytest.fixture(scope="session")
def issue_cert() -> Issue:
    return issue
