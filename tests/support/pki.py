"""A test CA that signs CSRs and keys the way an operator's CA would (cryptography, real keys)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
_EKU_TLS = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def key_pem(key: PrivateKey, *, pkcs1: bool = False) -> bytes:
    fmt = serialization.PrivateFormat.PKCS8
    if pkcs1 and isinstance(key, rsa.RSAPrivateKey):
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def cert_pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _sans(names: Sequence[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


@dataclass
class TestCA:
    """A root CA, optionally with one intermediate that signs the leaves."""

    __test__ = False  # a helper, not a test class

    name: str = "gnoicert test root"
    intermediate: bool = False
    key: PrivateKey = field(default_factory=ec_key)
    root: x509.Certificate = field(init=False)
    issuer_key: PrivateKey = field(init=False)
    issuer: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        self.root = self._ca_cert(_name(self.name), self.key, _name(self.name), self.key)
        self.issuer_key, self.issuer = self.key, self.root
        if self.intermediate:
            self.issuer_key = ec_key()
            self.issuer = self._ca_cert(
                _name(self.name + " intermediate"), self.issuer_key, _name(self.name), self.key
            )

    @staticmethod
    def _ca_cert(
        subject: x509.Name, key: PrivateKey, issuer: x509.Name, signer: PrivateKey
    ) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now() - dt.timedelta(days=1))
            .not_valid_after(now() + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(signer, hashes.SHA256())
        )

    @property
    def bundle_pem(self) -> bytes:
        """What a target's CA bundle holds: the root."""
        return cert_pem(self.root)

    @property
    def chain_pem(self) -> bytes:
        """Intermediates that go with a leaf (empty without one)."""
        return cert_pem(self.issuer) if self.intermediate else b""

    def issue(
        self,
        public_key: PublicKey,
        *,
        cn: str = "target",
        sans: Sequence[str] = ("127.0.0.1", "localhost"),
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        ca: bool = False,
        eku: Sequence[x509.ObjectIdentifier] | None = _EKU_TLS,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.issuer.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now() - dt.timedelta(hours=1))
            .not_valid_after(not_after or now() + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(_sans(sans)), False)
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), False)
        return builder.sign(self.issuer_key, hashes.SHA256())

    def sign_csr(self, csr_pem: bytes, **kwargs: object) -> bytes:
        """Leaf PEM (plus intermediate) for a CSR, SANs taken from the CSR unless given."""
        csr = x509.load_pem_x509_csr(csr_pem)
        assert csr.is_signature_valid
        if "sans" not in kwargs:
            try:
                ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
                kwargs["sans"] = [str(v) for v in ext.value.get_values_for_type(x509.DNSName)] + [
                    str(v) for v in ext.value.get_values_for_type(x509.IPAddress)
                ]
            except x509.ExtensionNotFound:
                kwargs["sans"] = ("127.0.0.1",)
        leaf = self.issue(csr.public_key(), **kwargs)  # type: ignore[arg-type]
        return cert_pem(leaf) + self.chain_pem

    def client_credentials(self, cn: str = "operator") -> tuple[bytes, bytes]:
        """(certificate chain PEM, key PEM) for a mutual-TLS client."""
        key = ec_key()
        leaf = self.issue(key.public_key(), cn=cn, sans=())
        return cert_pem(leaf) + self.chain_pem, key_pem(key)
