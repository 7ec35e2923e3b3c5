"""A local file CA: a root, optionally an intermediate, in a directory; it signs CSRs.

Layout of the directory (0700; keys 0600, unencrypted PKCS#8):

    ca.pem / ca.key                     the root: what clients and targets trust
    intermediate.pem / intermediate.key the issuing CA, when made with an intermediate
    bundle.pem                          the CA bundle to load on targets: intermediate, root

The bundle carries the intermediate too (docs/wire.md: chained groups end with their root): a
target that checks a client's leaf against its bundle (gnoicertd's lockout guard) sees no
intermediate from the TLS stack.

Leaf certificates carry the CSR's subject and SANs, serverAuth + clientAuth, and a validity of
`days` days (never beyond the issuer's). It is meant for labs and the demo; a site's real CA
plugs in through ExternalCommandSigner instead.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from gnoicert.client.certinfo import key_description, load_csr, subject_of, subject_text
from gnoicert.client.errors import InputError, SignerError
from gnoicert.client.models import CaInfo, ClientKeyType, SignedCertificate
from gnoicert.common.constants import DEFAULT_RSA_KEY_SIZE
from gnoicert.common.files import PRIVATE_MODE, PUBLIC_MODE, write_atomic
from gnoicert.pki import profiles
from gnoicert.pki.crypto import (
    PrivateKey,
    certificates_to_pem,
    fingerprint,
    generate_rsa_key,
    load_certificates,
    load_private_key,
    private_key_to_pem,
)
from gnoicert.pki.errors import BadEncoding, PkiError

ROOT_CERT_FILE = "ca.pem"
ROOT_KEY_FILE = "ca.key"
INTERMEDIATE_CERT_FILE = "intermediate.pem"
INTERMEDIATE_KEY_FILE = "intermediate.key"
BUNDLE_FILE = "bundle.pem"
DEFAULT_LEAF_DAYS = 365
DEFAULT_CA_DAYS = 3650
DEFAULT_CA_RSA_BITS = DEFAULT_RSA_KEY_SIZE
DEFAULT_CA_NAME = "gnoicert local CA"
_BACKDATE = dt.timedelta(minutes=5)


class LocalCA:
    """A CA kept in files; implements the Signer protocol (`sign`)."""

    def __init__(
        self,
        directory: Path,
        *,
        root: x509.Certificate,
        root_key: PrivateKey,
        intermediate: x509.Certificate | None = None,
        intermediate_key: PrivateKey | None = None,
        days: int = DEFAULT_LEAF_DAYS,
    ) -> None:
        if (intermediate is None) != (intermediate_key is None):
            raise InputError("an intermediate CA needs both its certificate and its key")
        if days <= 0:
            raise InputError("the validity in days must be positive")
        self.directory = directory
        self.root = root
        self._root_key = root_key
        self.intermediate = intermediate
        self._intermediate_key = intermediate_key
        self.days = days

    def __repr__(self) -> str:
        return f"LocalCA({str(self.directory)!r}, intermediate={self.intermediate is not None})"

    # -- creating and opening ------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        directory: str | Path,
        *,
        intermediate: bool = False,
        key_type: ClientKeyType = "rsa",
        key_size: int = DEFAULT_CA_RSA_BITS,
        common_name: str = DEFAULT_CA_NAME,
        days: int = DEFAULT_CA_DAYS,
        force: bool = False,
    ) -> LocalCA:
        """Make a new root (and intermediate) in `directory`; refuse to overwrite unless force."""
        path = Path(directory)
        names = [
            ROOT_CERT_FILE,
            ROOT_KEY_FILE,
            INTERMEDIATE_CERT_FILE,
            INTERMEDIATE_KEY_FILE,
            BUNDLE_FILE,
        ]
        existing = [name for name in names if (path / name).exists()]
        if existing and not force:
            files = ", ".join(existing)
            raise InputError(
                f"{path} already holds a CA ({files}); pass force=True to replace it",
                field="force",
                check="exists",
                path=str(path),
                detail=files,
            )
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC)
        root_key = new_key(key_type, key_size)
        root_name = _ca_name(common_name)
        root = _ca_certificate(
            root_name,
            root_key.public_key(),
            issuer_name=root_name,
            issuer_key=root_key,
            path_length=1 if intermediate else 0,
            not_after=now + dt.timedelta(days=days),
            now=now,
        )
        inter: x509.Certificate | None = None
        inter_key: PrivateKey | None = None
        if intermediate:
            inter_key = new_key(key_type, key_size)
            inter_name = _ca_name(f"{common_name} intermediate")
            inter = _ca_certificate(
                inter_name,
                inter_key.public_key(),
                issuer_name=root_name,
                issuer_key=root_key,
                path_length=0,
                not_after=now + dt.timedelta(days=max(1, days // 2)),
                now=now,
                issuer_certificate=root,
            )
        for name in names:
            (path / name).unlink(missing_ok=True)
        write_private_file(path / ROOT_KEY_FILE, private_key_to_pem(root_key))
        write_public_file(path / ROOT_CERT_FILE, certificates_to_pem([root]))
        if inter is not None and inter_key is not None:
            write_private_file(path / INTERMEDIATE_KEY_FILE, private_key_to_pem(inter_key))
            write_public_file(path / INTERMEDIATE_CERT_FILE, certificates_to_pem([inter]))
        ca = cls(path, root=root, root_key=root_key, intermediate=inter, intermediate_key=inter_key)
        write_public_file(path / BUNDLE_FILE, ca.bundle_pem)
        return ca

    @classmethod
    def open(cls, directory: str | Path, *, days: int = DEFAULT_LEAF_DAYS) -> LocalCA:
        """Load a CA directory made by `init` (or laid out the same way)."""
        path = Path(directory)
        root = _read_certificate(path / ROOT_CERT_FILE)
        root_key = _read_key(path / ROOT_KEY_FILE)
        inter: x509.Certificate | None = None
        inter_key: PrivateKey | None = None
        if (path / INTERMEDIATE_CERT_FILE).exists():
            inter = _read_certificate(path / INTERMEDIATE_CERT_FILE)
            inter_key = _read_key(path / INTERMEDIATE_KEY_FILE)
        ca = cls(
            path,
            root=root,
            root_key=root_key,
            intermediate=inter,
            intermediate_key=inter_key,
            days=days,
        )
        if root.public_key() != root_key.public_key():
            raise InputError(f"{path / ROOT_KEY_FILE} is not the key of {path / ROOT_CERT_FILE}")
        if (
            inter is not None
            and inter_key is not None
            and inter.public_key() != inter_key.public_key()
        ):
            raise InputError(
                f"{path / INTERMEDIATE_KEY_FILE} is not the key of {path / INTERMEDIATE_CERT_FILE}"
            )
        return ca

    # -- what it offers ------------------------------------------------------------------------

    @property
    def bundle_path(self) -> Path:
        """bundle.pem, the CA bundle to load on targets (made by `init`)."""
        return self.directory / BUNDLE_FILE

    @property
    def root_pem(self) -> bytes:
        """The root alone: what a client trusts (ChannelOptions.root_certificates)."""
        return certificates_to_pem([self.root])

    @property
    def bundle_pem(self) -> bytes:
        """The CA bundle to load on targets: the intermediate (if any), then the root."""
        return self.chain_pem

    @property
    def chain_pem(self) -> bytes:
        """The chain above a leaf: the intermediate (if any), then the root."""
        chain = [self.intermediate] if self.intermediate is not None else []
        return certificates_to_pem([*chain, self.root])

    def info(self) -> CaInfo:
        key_type, key_size = key_description(self.root.public_key())
        return CaInfo(
            directory=str(self.directory),
            bundle_path=str(self.bundle_path),
            root_subject=subject_text(self.root),
            root_fingerprint=fingerprint(self.root),
            intermediate_subject=(subject_text(self.intermediate) if self.intermediate else None),
            key_type=f"{key_type}-{key_size}",
            not_after=self.root.not_valid_after_utc,
        )

    def sign(self, csr_pem: bytes) -> SignedCertificate:
        """The Signer protocol: sign with the default validity (`days`)."""
        return self.sign_csr(csr_pem)

    def sign_csr(self, csr_pem: bytes, *, days: int | None = None) -> SignedCertificate:
        """A leaf certificate for the CSR: its subject and SANs, serverAuth + clientAuth."""
        try:
            csr = load_csr(csr_pem)
        except BadEncoding as exc:
            raise SignerError(str(exc)) from None
        if not csr.is_signature_valid:
            raise SignerError("the CSR's signature does not verify (it was altered or is broken)")
        try:
            sans: list[x509.GeneralName] = list(
                csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            )
        except x509.ExtensionNotFound:
            sans = []
        public_key = csr.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise SignerError("only RSA and ECDSA keys can be certified by the local CA")
        leaf = self._leaf(subject_of(csr), public_key, sans, days or self.days)
        return SignedCertificate(
            certificate_pem=certificates_to_pem([leaf]), chain_pem=self.chain_pem
        )

    def issue(
        self,
        common_name: str,
        *,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
        key_type: ClientKeyType = "ecdsa",
        days: int | None = None,
    ) -> tuple[bytes, SignedCertificate]:
        """A fresh key and a certificate for it (an operator's client certificate, say).

        Returns (private key PEM, signed certificate); the caller stores the key 0600.
        """
        key = new_key(key_type, DEFAULT_CA_RSA_BITS)
        sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        try:
            sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        except ValueError as exc:
            raise InputError(f"bad IP address: {exc}") from None
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        leaf = self._leaf(name, key.public_key(), sans, days or self.days)
        return private_key_to_pem(key), SignedCertificate(
            certificate_pem=certificates_to_pem([leaf]), chain_pem=self.chain_pem
        )

    def _leaf(
        self,
        subject: x509.Name,
        public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
        sans: Sequence[x509.GeneralName],
        days: int,
    ) -> x509.Certificate:
        if days <= 0:
            raise SignerError("the validity in days must be positive")
        issuer = self.intermediate or self.root
        issuer_key = self._intermediate_key or self._root_key
        now = dt.datetime.now(dt.UTC)
        not_after = min(now + dt.timedelta(days=days), issuer.not_valid_after_utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject_of(issuer))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(profiles.leaf_key_usage(public_key), critical=True)
            .add_extension(profiles.extended_key_usage(profiles.SERVER_AND_CLIENT), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(_authority_key_id(issuer), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())


def _ca_name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gnoicert"),
        ]
    )


def new_key(key_type: ClientKeyType, key_size: int) -> PrivateKey:
    """A fresh key made on this side: ECDSA P-256, or RSA of `key_size` bits (InputError for a
    size the PKI layer refuses)."""
    if key_type == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        try:
            return generate_rsa_key(key_size)
        except PkiError as exc:
            raise InputError(str(exc)) from None
    raise InputError(f"unknown key type {key_type!r}: use rsa or ecdsa")


def _authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        public_key = issuer.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise SignerError("the issuing CA has an unsupported key type") from None
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key)
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _ca_certificate(
    subject: x509.Name,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    *,
    issuer_name: x509.Name,
    issuer_key: PrivateKey,
    path_length: int,
    not_after: dt.datetime,
    now: dt.datetime,
    issuer_certificate: x509.Certificate | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(profiles.ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if issuer_certificate is not None:
        builder = builder.add_extension(_authority_key_id(issuer_certificate), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _read_certificate(path: Path) -> x509.Certificate:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(
            f"cannot read {path}: {exc.strerror or exc} (run: gnoicert ca init)"
        ) from None
    try:
        return load_certificates(data)[0]
    except BadEncoding as exc:
        raise InputError(f"{path}: {exc}") from None


def _read_key(path: Path) -> PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return load_private_key(data)
    except BadEncoding as exc:
        raise InputError(f"{path}: {exc}") from None


def write_private_file(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Write a secret 0600 from the start (never briefly world-readable), atomically and
    durably (common/files.py).

    Without `replace` an existing file is an error; with it the file is swapped atomically.
    """
    _write(path, data, PRIVATE_MODE, replace=replace)


def write_public_file(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Write a certificate (0644); see write_private_file."""
    _write(path, data, PUBLIC_MODE, replace=replace)


def _write(path: Path, data: bytes, mode: int, *, replace: bool) -> None:
    try:
        write_atomic(path, data, mode=mode, exclusive=not replace)
    except FileExistsError:
        raise InputError(f"{path} already exists", check="exists", path=str(path)) from None
    except OSError as exc:
        raise InputError(
            f"cannot write {path}: {exc.strerror or exc}", check="unwritable", path=str(path)
        ) from None
