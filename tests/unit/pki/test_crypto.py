"""gnoicert.pki.crypto: every function and every refusal, with real keys and real chains."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import re
import time
from collections.abc import Callable
from concurrent import futures

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from gnoicert.pki import crypto
from gnoicert.pki import path as pki_path
from gnoicert.pki.chain import CLOCK_SKEW, TrustSet, chain_verifies, check_leaf
from gnoicert.pki.crypto import CsrSubject
from gnoicert.pki.errors import (
    BadEncoding,
    BadKeyUsage,
    CertificateExpired,
    CertificateNotYetValid,
    ChainVerificationFailed,
    CsrKeyMismatch,
    InvalidCertificateId,
    InvalidCsrParameters,
    KeyMismatch,
    PkiError,
    UnsupportedKey,
)
from tests.unit.pki.conftest import Chain, Issue, Keys

Vector = Callable[[str], bytes]
MINUTE = dt.timedelta(minutes=1)
DAY = dt.timedelta(days=1)
SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH


def usage(**allowed: bool) -> x509.KeyUsage:
    flags = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    flags.update(allowed)
    return x509.KeyUsage(**flags)


def pem_body_lines(pem: bytes) -> list[bytes]:
    """The base64 lines of a PEM blob: what must never show up in a message."""
    return [line for line in pem.splitlines() if line and not line.startswith(b"-----")]


def assert_no_key_material(exc: BaseException, pem: bytes) -> None:
    text = str(exc).encode()
    for line in pem_body_lines(pem):
        assert line[:16] not in text
    # No chained parser exception that might carry the input along.
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__


# --- certificate IDs ------------------------------------------------------------------------


class TestValidateCertificateId:
    @pytest.mark.parametrize(
        "cert_id",
        ["a", "gnoi-server", "my_cert.v2", "A" * 64, "-leading-dash", "_x", "0", "a..b", "x."],
    )
    def test_accepts_allowed_ids(self, cert_id: str) -> None:
        assert crypto.validate_certificate_id(cert_id) == cert_id

    @pytest.mark.parametrize(
        "cert_id",
        [
            "",
            ".hidden",
            "..",
            "../etc/passwd",
            "a/b",
            "a\\b",
            "a b",
            "a\n",
            "\n",
            "A" * 65,
            "caf\u00e9",
            "a\x00b",
            "a:b",
            "gnoi-ca-bundle",
        ],
    )
    def test_refuses_other_ids(self, cert_id: str) -> None:
        with pytest.raises(InvalidCertificateId):
            crypto.validate_certificate_id(cert_id)

    @pytest.mark.parametrize("cert_id", [None, b"abc", 5, ["a"]])
    def test_refuses_non_strings(self, cert_id: object) -> None:
        with pytest.raises(InvalidCertificateId):
            crypto.validate_certificate_id(cert_id)  # type: ignore[arg-type]

    def test_message_says_what_is_allowed(self) -> None:
        with pytest.raises(InvalidCertificateId, match=r"1 to 64 characters of A-Z a-z 0-9 \. _ -"):
            crypto.validate_certificate_id("bad/id")

    def test_reserved_bundle_id_is_named(self) -> None:
        with pytest.raises(InvalidCertificateId, match="reserved for the CA bundle"):
            crypto.validate_certificate_id(crypto.CA_BUNDLE_ID)

    def test_is_a_value_error_and_a_pki_error(self) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 - the point is the builtin base
            crypto.validate_certificate_id("")
        with pytest.raises(PkiError):
            crypto.validate_certificate_id("")


# --- RSA key sizes and generation -----------------------------------------------------------


class TestChooseRsaKeySize:
    @pytest.mark.parametrize(
        ("minimum", "expected"),
        [
            (0, 2048),
            (1, 2048),
            (1024, 2048),  # gnoic's and gnxi's default minimum: no downgrade
            (1025, 2048),
            (2048, 2048),
            (3000, 3072),
            (4096, 4096),
        ],
    )
    def test_default_sizes(self, minimum: int, expected: int) -> None:
        assert crypto.choose_rsa_key_size(minimum) == expected

    def test_zero_without_2048_takes_the_next_larger(self) -> None:
        assert crypto.choose_rsa_key_size(0, (4096, 3072)) == 3072

    def test_zero_prefers_2048_when_configured(self) -> None:
        assert crypto.choose_rsa_key_size(0, (4096, 1024, 2048)) == 2048

    def test_unsorted_configuration(self) -> None:
        assert crypto.choose_rsa_key_size(2500, (4096, 1024, 2048, 3072)) == 3072

    @pytest.mark.parametrize(
        ("minimum", "default", "expected"),
        [(1024, 1024, 1024), (1024, 3072, 3072), (0, 3072, 3072), (4096, 3072, 4096)],
    )
    def test_configured_default_is_the_floor(
        self, minimum: int, default: int, expected: int
    ) -> None:
        assert crypto.choose_rsa_key_size(minimum, default=default) == expected

    def test_default_above_every_size_means_the_largest(self) -> None:
        assert crypto.choose_rsa_key_size(1024, (1024,), default=2048) == 1024

    def test_above_the_largest_names_the_supported_sizes(self) -> None:
        with pytest.raises(UnsupportedKey, match="1024, 2048, 3072, 4096"):
            crypto.choose_rsa_key_size(4097)

    def test_restricted_list(self) -> None:
        with pytest.raises(UnsupportedKey, match=r"supported sizes: 2048$"):
            crypto.choose_rsa_key_size(3072, (2048,))

    def test_empty_configuration(self) -> None:
        with pytest.raises(UnsupportedKey, match="no RSA key size"):
            crypto.choose_rsa_key_size(0, ())

    def test_negative_minimum(self) -> None:
        with pytest.raises(UnsupportedKey):
            crypto.choose_rsa_key_size(-1)


class TestGenerateRsaKey:
    @pytest.mark.parametrize("size", [1024, 2048])
    def test_sizes(self, size: int) -> None:
        key = crypto.generate_rsa_key(size)
        assert key.key_size == size
        assert key.public_key().public_numbers().e == 65537

    def test_3072_chosen_and_generated(self) -> None:
        # ~120 ms median: the one larger size the unit tests afford.
        key = crypto.generate_rsa_key(crypto.choose_rsa_key_size(2049, (1024, 3072)))
        assert key.key_size == 3072

    def test_keys_are_fresh(self) -> None:
        first, second = crypto.generate_rsa_key(1024), crypto.generate_rsa_key(1024)
        assert first.private_numbers() != second.private_numbers()

    @pytest.mark.parametrize("size", [0, 512, 1023, 65536])
    def test_refuses_sizes_out_of_range(self, size: int) -> None:
        with pytest.raises(UnsupportedKey):
            crypto.generate_rsa_key(size)


# --- CSRs -----------------------------------------------------------------------------------


def parse_csr(pem: bytes) -> x509.CertificateSigningRequest:
    assert pem.startswith(b"-----BEGIN CERTIFICATE REQUEST-----\n")
    csr = x509.load_pem_x509_csr(pem)
    assert csr.is_signature_valid
    return csr


def sans_of(csr: x509.CertificateSigningRequest) -> list[x509.GeneralName] | None:
    try:
        return list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return None


def attribute(csr: x509.CertificateSigningRequest, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in csr.subject.get_attributes_for_oid(oid)]


class TestBuildCsr:
    def test_full_subject_and_sans(self, keys: Keys) -> None:
        subject = CsrSubject(
            common_name="router1.example.net",
            country="US",
            state="California",
            city="Sunnyvale",
            organization="Example Networks",
            organizational_unit="NetOps",
            ip_address="192.0.2.10",
            email_id="netops@example.net",
        )
        csr = parse_csr(crypto.build_csr(keys.rsa_a, subject))
        assert attribute(csr, NameOID.COMMON_NAME) == ["router1.example.net"]
        assert attribute(csr, NameOID.COUNTRY_NAME) == ["US"]
        assert attribute(csr, NameOID.STATE_OR_PROVINCE_NAME) == ["California"]
        assert attribute(csr, NameOID.LOCALITY_NAME) == ["Sunnyvale"]
        assert attribute(csr, NameOID.ORGANIZATION_NAME) == ["Example Networks"]
        assert attribute(csr, NameOID.ORGANIZATIONAL_UNIT_NAME) == ["NetOps"]
        assert attribute(csr, NameOID.EMAIL_ADDRESS) == ["netops@example.net"]
        assert sans_of(csr) == [
            x509.DNSName("router1.example.net"),
            x509.IPAddress(ipaddress.ip_address("192.0.2.10")),
            x509.RFC822Name("netops@example.net"),
        ]
        assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)
        public = csr.public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        assert public.public_numbers() == keys.rsa_a.public_key().public_numbers()

    @pytest.mark.parametrize("curve_key", ["p256_a", "p384"])
    def test_ec_keys(self, keys: Keys, curve_key: str) -> None:
        key = getattr(keys, curve_key)
        csr = parse_csr(crypto.build_csr(key, CsrSubject(common_name="r1")))
        assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)
        public = csr.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert public.public_numbers() == key.public_key().public_numbers()
        assert sans_of(csr) == [x509.DNSName("r1")]

    @pytest.mark.parametrize("cn", ["192.0.2.1", "2001:db8::1", "::1"])
    def test_ip_common_name_is_no_dns_san(self, keys: Keys, cn: str) -> None:
        csr = parse_csr(crypto.build_csr(keys.p256_a, CsrSubject(common_name=cn)))
        assert attribute(csr, NameOID.COMMON_NAME) == [cn]
        assert sans_of(csr) is None

    def test_ip_common_name_with_ip_address(self, keys: Keys) -> None:
        subject = CsrSubject(common_name="192.0.2.1", ip_address="2001:db8::5")
        csr = parse_csr(crypto.build_csr(keys.p256_a, subject))
        assert sans_of(csr) == [x509.IPAddress(ipaddress.ip_address("2001:db8::5"))]

    @pytest.mark.parametrize("cn", ["*.example.net", "a-b.c1.example", "localhost", "R1"])
    def test_host_names_become_dns_sans(self, keys: Keys, cn: str) -> None:
        csr = parse_csr(crypto.build_csr(keys.p256_a, CsrSubject(common_name=cn)))
        assert sans_of(csr) == [x509.DNSName(cn)]

    @pytest.mark.parametrize(
        "cn",
        ["My Router", "-bad.example", "bad-.example", "a..b", "*", "a.*.b", "x_y.example", "r1."],
    )
    def test_other_common_names_are_subject_only(self, keys: Keys, cn: str) -> None:
        csr = parse_csr(crypto.build_csr(keys.p256_a, CsrSubject(common_name=cn)))
        assert attribute(csr, NameOID.COMMON_NAME) == [cn]
        assert sans_of(csr) is None

    def test_no_fields_no_sans(self, keys: Keys) -> None:
        csr = parse_csr(crypto.build_csr(keys.p256_a, CsrSubject(organization="Example")))
        assert sans_of(csr) is None
        assert len(csr.extensions) == 0

    def test_email_only(self, keys: Keys) -> None:
        csr = parse_csr(crypto.build_csr(keys.p256_a, CsrSubject(email_id="a@b.example")))
        assert attribute(csr, NameOID.EMAIL_ADDRESS) == ["a@b.example"]
        assert sans_of(csr) == [x509.RFC822Name("a@b.example")]

    def test_lower_case_country_is_accepted(self, keys: Keys) -> None:
        csr = parse_csr(crypto.build_csr(keys.p256_a, CsrSubject(country="us")))
        assert attribute(csr, NameOID.COUNTRY_NAME) == ["us"]

    def test_unicode_text_fields(self, keys: Keys) -> None:
        subject = CsrSubject(common_name="Zürich Router", organization="Réseaux")
        csr = parse_csr(crypto.build_csr(keys.p256_a, subject))
        assert attribute(csr, NameOID.ORGANIZATION_NAME) == ["Réseaux"]

    @pytest.mark.parametrize("country", ["USA", "U", "1A", "U.", "ÜS"])
    def test_bad_country(self, keys: Keys, country: str) -> None:
        with pytest.raises(InvalidCsrParameters, match="two-letter"):
            crypto.build_csr(keys.p256_a, CsrSubject(country=country))

    @pytest.mark.parametrize(
        "address",
        ["300.1.1.1", "router1", "192.0.2.1/24", " 192.0.2.1", "fe80::1%eth0", "01.2.3.4"],
    )
    def test_bad_ip_address(self, keys: Keys, address: str) -> None:
        with pytest.raises(InvalidCsrParameters, match="ip_address"):
            crypto.build_csr(keys.p256_a, CsrSubject(ip_address=address))

    @pytest.mark.parametrize(
        "email",
        [
            "no-at-sign",
            "a@b@c",
            "@example.net",
            "user@",
            "a b@example.net",
            "ü@example.net",
            "[@0",
        ],
    )
    def test_bad_email(self, keys: Keys, email: str) -> None:
        with pytest.raises(InvalidCsrParameters, match="email_id"):
            crypto.build_csr(keys.p256_a, CsrSubject(email_id=email))

    @pytest.mark.parametrize(
        "subject",
        [
            CsrSubject(common_name="a" * 65),
            CsrSubject(organization="o" * 65),
            CsrSubject(city="c" * 129),
            CsrSubject(common_name="bad\x00name"),
            CsrSubject(state="line\nbreak"),
            CsrSubject(organizational_unit="\ud800"),
        ],
    )
    def test_text_a_ca_would_refuse(self, keys: Keys, subject: CsrSubject) -> None:
        with pytest.raises(InvalidCsrParameters):
            crypto.build_csr(keys.p256_a, subject)

    def test_limits_count_utf8_bytes_not_characters(self, keys: Keys) -> None:
        """Regression: 17 four-byte characters (68 bytes) raised a bare ValueError."""
        with pytest.raises(InvalidCsrParameters, match=r"common_name is 68 bytes .*17 characters"):
            crypto.build_csr(keys.p256_a, CsrSubject(common_name="\U0001f600" * 17))
        with pytest.raises(InvalidCsrParameters, match="organization is 66 bytes"):
            crypto.build_csr(keys.p256_a, CsrSubject(organization="é" * 33))
        csr = parse_csr(crypto.build_csr(keys.p256_a, CsrSubject(common_name="\U0001f600" * 16)))
        assert attribute(csr, NameOID.COMMON_NAME) == ["\U0001f600" * 16]


# --- parsing --------------------------------------------------------------------------------


class TestLoadCertificates:
    def test_single_pem(self, chain: Chain) -> None:
        pem = chain.leaf.cert.public_bytes(serialization.Encoding.PEM)
        assert crypto.load_certificates(pem) == [chain.leaf.cert]

    def test_several_pem_blocks_keep_their_order(self, chain: Chain) -> None:
        certs = [chain.leaf.cert, chain.intermediate.cert, chain.root.cert]
        assert crypto.load_certificates(crypto.certificates_to_pem(certs)) == certs
        reverse = certs[::-1]
        assert crypto.load_certificates(crypto.certificates_to_pem(reverse)) == reverse

    def test_surrounding_whitespace_and_text_between_blocks(self, chain: Chain) -> None:
        leaf = chain.leaf.cert.public_bytes(serialization.Encoding.PEM)
        root = chain.root.cert.public_bytes(serialization.Encoding.PEM)
        data = (
            b"\n \r\nBag Attributes\n  friendlyName: leaf\n"
            + leaf
            + b"\r\nnext:\n"
            + root
            + b"\n\n"
        )
        assert crypto.load_certificates(data) == [chain.leaf.cert, chain.root.cert]

    def test_crlf_line_endings(self, chain: Chain) -> None:
        pem = chain.leaf.cert.public_bytes(serialization.Encoding.PEM).replace(b"\n", b"\r\n")
        assert crypto.load_certificates(pem) == [chain.leaf.cert]

    def test_der(self, chain: Chain) -> None:
        der = chain.intermediate.cert.public_bytes(serialization.Encoding.DER)
        assert crypto.load_certificates(der) == [chain.intermediate.cert]

    def test_der_with_whitespace_bytes_at_the_end_is_not_stripped(self, keys: Keys) -> None:
        # A DER certificate is binary: its last signature byte may be 0x20 or 0x0a.
        for _ in range(2000):
            cert = crypto.make_self_signed_certificate(keys.p256_a, common_name="x")
            der = cert.public_bytes(serialization.Encoding.DER)
            if der[-1:] in (b" ", b"\n", b"\t", b"\r"):
                break
        else:
            pytest.fail("no certificate ending in a whitespace byte was produced")
        assert crypto.load_certificates(der) == [cert]

    def test_bundle_of_20000_loads_in_one_pass(self, chain: Chain) -> None:
        block = crypto.certificates_to_pem([chain.leaf.cert, chain.intermediate.cert])
        bundle = block * 10_000
        started = time.perf_counter()
        certs = crypto.load_certificates(bundle)
        elapsed = time.perf_counter() - started
        assert len(certs) == 20_000
        assert certs[0] == chain.leaf.cert
        assert certs[-1] == chain.intermediate.cert
        assert elapsed < 3.0, f"20,000 certificates took {elapsed:.2f} s"

    @pytest.mark.parametrize("data", [b"", b"   \n\t\r\n"])
    def test_empty(self, data: bytes) -> None:
        with pytest.raises(BadEncoding, match="empty"):
            crypto.load_certificates(data)

    @pytest.mark.parametrize(
        "data",
        [
            b"not a certificate at all",
            b"\x30\x03\x02\x01\x01",
            b"\x00\x01\x02",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            b"-----BEGIN CERTIFICATE-----\nMIIB\n",
        ],
    )
    def test_garbage(self, data: bytes) -> None:
        with pytest.raises(BadEncoding) as info:
            crypto.load_certificates(data)
        assert "CERTIFICATE" in str(info.value)

    def test_garbage_is_not_echoed(self) -> None:
        secret = b"SECRET-MARKER-0123456789"
        for data in (
            secret,
            b"-----BEGIN CERTIFICATE-----\n" + secret + b"\n-----END CERTIFICATE-----",
        ):
            with pytest.raises(BadEncoding) as info:
                crypto.load_certificates(data)
            assert "SECRET-MARKER" not in str(info.value)

    def test_a_private_key_instead_of_a_certificate(self, keys: Keys) -> None:
        pem = crypto.private_key_to_pem(keys.rsa_c)
        with pytest.raises(BadEncoding) as info:
            crypto.load_certificates(pem)
        assert_no_key_material(info.value, pem)

    def test_truncated_der(self, chain: Chain) -> None:
        der = chain.leaf.cert.public_bytes(serialization.Encoding.DER)
        with pytest.raises(BadEncoding, match="DER"):
            crypto.load_certificates(der[:-10])


class TestLoadPrivateKey:
    def test_pkcs1_pem(self, vector: Vector) -> None:
        key = crypto.load_private_key(vector("rsa1024_pkcs1.pem"))
        assert isinstance(key, rsa.RSAPrivateKey)
        assert key.key_size == 1024

    def test_sec1_pem(self, vector: Vector) -> None:
        key = crypto.load_private_key(vector("ec_p256_sec1.pem"))
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert isinstance(key.curve, ec.SECP256R1)

    @pytest.mark.parametrize(
        "key_name",
        ["rsa_a", "rsa1024_a", "p256_a", "p384"],
    )
    @pytest.mark.parametrize(
        ("encoding", "fmt"),
        [
            (serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8),
            (serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL),
            (serialization.Encoding.DER, serialization.PrivateFormat.PKCS8),
            (serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL),
        ],
    )
    def test_formats(
        self,
        keys: Keys,
        key_name: str,
        encoding: serialization.Encoding,
        fmt: serialization.PrivateFormat,
    ) -> None:
        key = getattr(keys, key_name)
        data = key.private_bytes(encoding, fmt, serialization.NoEncryption())
        loaded = crypto.load_private_key(data)
        assert loaded.private_numbers() == key.private_numbers()

    def test_pem_with_surrounding_whitespace(self, keys: Keys) -> None:
        data = b"\n\n" + crypto.private_key_to_pem(keys.p256_b) + b"  \n"
        assert crypto.load_private_key(data).private_numbers() == keys.p256_b.private_numbers()

    @pytest.mark.parametrize("name", ["rsa1024_pkcs1_encrypted.pem", "rsa1024_pkcs8_encrypted.pem"])
    def test_encrypted_pem_refused(self, vector: Vector, name: str) -> None:
        data = vector(name)
        with pytest.raises(BadEncoding, match="encrypted") as info:
            crypto.load_private_key(data)
        assert_no_key_material(info.value, data)

    def test_encrypted_der_refused(self, keys: Keys) -> None:
        data = keys.rsa1024_a.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"password"),
        )
        with pytest.raises(BadEncoding, match="encrypted"):
            crypto.load_private_key(data)

    @pytest.mark.parametrize(
        ("name", "reason"),
        [
            ("rsa512_pkcs1.pem", "512 bits"),
            ("ec_p521_sec1.pem", "secp521r1"),
            ("ed25519_pkcs8.pem", "Ed25519"),
        ],
    )
    def test_unsupported_keys_refused(self, vector: Vector, name: str, reason: str) -> None:
        data = vector(name)
        with pytest.raises(BadEncoding, match=reason) as info:
            crypto.load_private_key(data)
        assert "P-256 or P-384" in str(info.value)
        assert_no_key_material(info.value, data)

    @pytest.mark.parametrize(
        "data",
        [
            b"",
            b" \n",
            b"garbage",
            b"\x30\x82\x01\x00",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ],
    )
    def test_unparsable(self, data: bytes) -> None:
        with pytest.raises(BadEncoding, match="unencrypted PEM"):
            crypto.load_private_key(data)

    def test_certificate_instead_of_key(self, chain: Chain) -> None:
        with pytest.raises(BadEncoding):
            crypto.load_private_key(crypto.certificates_to_pem([chain.leaf.cert]))

    def test_corrupt_key_is_not_echoed(self, keys: Keys) -> None:
        pem = crypto.private_key_to_pem(keys.rsa1024_b)
        lines = pem.splitlines()
        lines[3] = lines[3][::-1]
        corrupt = b"\n".join(lines)
        with pytest.raises(BadEncoding) as info:
            crypto.load_private_key(corrupt)
        assert_no_key_material(info.value, corrupt)


class TestLoadPublicKey:
    @pytest.mark.parametrize(
        ("encoding", "fmt"),
        [
            (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
            (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
            (serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        ],
    )
    def test_rsa_public_keys(
        self, keys: Keys, encoding: serialization.Encoding, fmt: serialization.PublicFormat
    ) -> None:
        loaded = crypto.load_public_key(keys.rsa_a.public_key().public_bytes(encoding, fmt))
        assert isinstance(loaded, rsa.RSAPublicKey)
        assert loaded.public_numbers() == keys.rsa_a.public_key().public_numbers()

    @pytest.mark.parametrize("encoding", [serialization.Encoding.PEM, serialization.Encoding.DER])
    def test_ec_public_keys(self, keys: Keys, encoding: serialization.Encoding) -> None:
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        loaded = crypto.load_public_key(keys.p384.public_key().public_bytes(encoding, spki))
        assert isinstance(loaded, ec.EllipticCurvePublicKey)
        assert loaded.public_numbers() == keys.p384.public_key().public_numbers()

    def test_der_csr_is_ignored(self, vector: Vector) -> None:
        # One common client sends its DER CSR as KeyPair.public_key.
        assert crypto.load_public_key(vector("rsa1024_csr.der")) is None

    def test_pem_csr_is_ignored(self, keys: Keys) -> None:
        assert crypto.load_public_key(crypto.build_csr(keys.p256_a, CsrSubject())) is None

    @pytest.mark.parametrize("data", [b"", b"\n ", b"junk", b"\x30\x00", b"\xff" * 40])
    def test_not_a_public_key(self, data: bytes) -> None:
        assert crypto.load_public_key(data) is None

    def test_ed25519_public_key_is_ignored(self, keys: Keys) -> None:
        data = keys.ed25519.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert crypto.load_public_key(data) is None

    def test_certificate_is_not_a_public_key(self, chain: Chain) -> None:
        assert crypto.load_public_key(crypto.certificates_to_pem([chain.leaf.cert])) is None


# --- encoding helpers -----------------------------------------------------------------------


class TestEncoding:
    @pytest.mark.parametrize("key_name", ["rsa_a", "p256_a", "p384"])
    def test_private_key_to_pem_is_unencrypted_pkcs8(self, keys: Keys, key_name: str) -> None:
        key = getattr(keys, key_name)
        pem = crypto.private_key_to_pem(key)
        assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
        assert crypto.load_private_key(pem).private_numbers() == key.private_numbers()

    def test_certificates_to_pem(self, chain: Chain) -> None:
        certs = [chain.root.cert, chain.leaf.cert]
        pem = crypto.certificates_to_pem(certs)
        assert pem.count(b"-----BEGIN CERTIFICATE-----") == 2
        assert x509.load_pem_x509_certificates(pem) == certs
        assert crypto.certificates_to_pem([]) == b""

    def test_fingerprint(self, chain: Chain) -> None:
        der = chain.leaf.cert.public_bytes(serialization.Encoding.DER)
        value = crypto.fingerprint(chain.leaf.cert)
        assert value == hashlib.sha256(der).hexdigest()
        assert re.fullmatch(r"[0-9a-f]{64}", value)
        assert crypto.fingerprint(chain.root.cert) != value


# --- key checks -----------------------------------------------------------------------------


class TestKeyChecks:
    def test_matching_key(self, chain: Chain, keys: Keys) -> None:
        crypto.check_key_matches(chain.leaf.cert, keys.rsa_b)
        crypto.check_key_matches(chain.intermediate.cert, keys.p256_a)

    @pytest.mark.parametrize("key_name", ["rsa_a", "rsa_c", "p256_b", "p384"])
    def test_mismatched_key(self, chain: Chain, keys: Keys, key_name: str) -> None:
        with pytest.raises(KeyMismatch) as info:
            crypto.check_key_matches(chain.leaf.cert, getattr(keys, key_name))
        assert crypto.fingerprint(chain.leaf.cert) in str(info.value)

    def test_csr_key_matches(self, issue_cert: Issue, chain: Chain) -> None:
        key = crypto.generate_rsa_key(1024)
        csr = x509.load_pem_x509_csr(crypto.build_csr(key, CsrSubject(common_name="r9")))
        csr_key = csr.public_key()
        assert isinstance(csr_key, rsa.RSAPublicKey)
        cert = issue_cert(key, "r9", chain.intermediate).cert
        crypto.check_csr_key(cert, csr_key)

    def test_csr_key_mismatch(self, chain: Chain, keys: Keys) -> None:
        with pytest.raises(CsrKeyMismatch, match="pending CSR"):
            crypto.check_csr_key(chain.leaf.cert, keys.rsa_c.public_key())
        with pytest.raises(CsrKeyMismatch):
            crypto.check_csr_key(chain.leaf.cert, keys.p256_a.public_key())


# --- check_leaf -----------------------------------------------------------------------------


class TestCheckLeafValidity:
    def test_good_chain(self, chain: Chain) -> None:
        check_leaf(chain.leaf.cert, [chain.intermediate.cert], [chain.root.cert])

    def test_expired(self, issue_cert: Issue, chain: Chain, ref: dt.datetime) -> None:
        leaf = issue_cert(
            chain.leaf.key, "old", chain.intermediate, not_before=ref - 9 * DAY, not_after=ref - DAY
        )
        with pytest.raises(CertificateExpired, match="expired at"):
            check_leaf(leaf.cert, [chain.intermediate.cert], [chain.root.cert], now=ref)

    def test_not_yet_valid(self, issue_cert: Issue, chain: Chain, ref: dt.datetime) -> None:
        leaf = issue_cert(chain.leaf.key, "new", chain.intermediate, not_before=ref + DAY)
        with pytest.raises(CertificateNotYetValid, match="not valid before"):
            check_leaf(leaf.cert, [chain.intermediate.cert], [chain.root.cert], now=ref)

    def test_skew_boundaries(self, issue_cert: Issue, chain: Chain, ref: dt.datetime) -> None:
        leaf = issue_cert(
            chain.leaf.key, "w", chain.intermediate, not_before=ref, not_after=ref + 10 * MINUTE
        )
        args = (leaf.cert, [chain.intermediate.cert], [chain.root.cert])
        for accepted in (ref - 5 * MINUTE, ref - 4 * MINUTE, ref + 14 * MINUTE, ref + 15 * MINUTE):
            check_leaf(*args, now=accepted)
        with pytest.raises(CertificateNotYetValid):
            check_leaf(*args, now=ref - 5 * MINUTE - dt.timedelta(seconds=1))
        with pytest.raises(CertificateExpired):
            check_leaf(*args, now=ref + 15 * MINUTE + dt.timedelta(seconds=1))

    def test_now_defaults_to_the_clock(self, issue_cert: Issue, chain: Chain) -> None:
        now = dt.datetime.now(dt.UTC)
        leaf = issue_cert(chain.leaf.key, "soon", chain.intermediate, not_before=now + 3 * MINUTE)
        check_leaf(leaf.cert, [chain.intermediate.cert], [chain.root.cert])
        later = issue_cert(chain.leaf.key, "later", chain.intermediate, not_before=now + DAY)
        with pytest.raises(CertificateNotYetValid):
            check_leaf(later.cert, [chain.intermediate.cert], [chain.root.cert])

    def test_naive_now_is_utc(self, chain: Chain, ref: dt.datetime) -> None:
        naive = (ref + 60 * DAY).replace(tzinfo=None)
        with pytest.raises(CertificateExpired):
            check_leaf(chain.leaf.cert, [chain.intermediate.cert], [chain.root.cert], now=naive)

    def test_validity_comes_before_usage(
        self, issue_cert: Issue, keys: Keys, ref: dt.datetime
    ) -> None:
        old_ca = issue_cert(
            keys.rsa_c, "Old CA", ca=True, not_after=ref - DAY, not_before=ref - 9 * DAY
        )
        with pytest.raises(CertificateExpired):
            check_leaf(old_ca.cert, [], [old_ca.cert], now=ref)


class TestCheckLeafUsage:
    def test_ca_certificate_as_leaf(self, chain: Chain) -> None:
        with pytest.raises(BadKeyUsage, match="is a CA certificate; install an end-entity"):
            check_leaf(chain.intermediate.cert, [], [chain.root.cert])

    def test_code_signing_only(self, issue_cert: Issue, chain: Chain) -> None:
        leaf = issue_cert(
            chain.leaf.key, "signer", chain.intermediate, eku=[ExtendedKeyUsageOID.CODE_SIGNING]
        )
        with pytest.raises(BadKeyUsage, match="serverAuth nor clientAuth"):
            check_leaf(leaf.cert, [chain.intermediate.cert], [chain.root.cert])

    @pytest.mark.parametrize(
        "eku",
        [
            [CLIENT_AUTH],
            [SERVER_AUTH],
            [ExtendedKeyUsageOID.CODE_SIGNING, CLIENT_AUTH],
            [ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE],
        ],
    )
    def test_tls_ekus(
        self, issue_cert: Issue, chain: Chain, eku: list[x509.ObjectIdentifier]
    ) -> None:
        leaf = issue_cert(chain.leaf.key, "client", chain.intermediate, eku=eku)
        check_leaf(leaf.cert, [chain.intermediate.cert], [chain.root.cert])

    @pytest.mark.parametrize(
        ("key_name", "ku"),
        [
            ("rsa_b", usage(digital_signature=True)),
            ("rsa_b", usage(key_encipherment=True)),
            ("p256_b", usage(key_agreement=True)),
            ("p384", usage(digital_signature=True)),
        ],
    )
    def test_key_usage_allowing_tls(
        self, issue_cert: Issue, chain: Chain, keys: Keys, key_name: str, ku: x509.KeyUsage
    ) -> None:
        leaf = issue_cert(getattr(keys, key_name), "ku", chain.intermediate, ku=ku)
        check_leaf(leaf.cert, [chain.intermediate.cert], [chain.root.cert])

    @pytest.mark.parametrize(
        ("key_name", "ku"),
        [
            ("rsa_b", usage(key_agreement=True)),
            ("rsa_b", usage(content_commitment=True)),
            ("p256_b", usage(key_encipherment=True)),
            ("p256_b", usage(data_encipherment=True)),
        ],
    )
    def test_key_usage_excluding_tls(
        self, issue_cert: Issue, chain: Chain, keys: Keys, key_name: str, ku: x509.KeyUsage
    ) -> None:
        leaf = issue_cert(getattr(keys, key_name), "ku", chain.intermediate, ku=ku)
        with pytest.raises(BadKeyUsage, match="digitalSignature"):
            check_leaf(leaf.cert, [chain.intermediate.cert], [chain.root.cert])


class TestCheckLeafChain:
    @pytest.mark.parametrize("key_name", ["p256_b", "p384", "rsa_c"])
    def test_leaf_key_types(
        self, issue_cert: Issue, chain: Chain, keys: Keys, key_name: str
    ) -> None:
        leaf = issue_cert(getattr(keys, key_name), "leaf", chain.intermediate, eku=[SERVER_AUTH])
        check_leaf(leaf.cert, [chain.intermediate.cert], [chain.root.cert])

    def test_intermediates_in_any_order(self, issue_cert: Issue, keys: Keys) -> None:
        root = issue_cert(keys.rsa_a, "Order Root", ca=True)
        first = issue_cert(keys.p256_a, "Order CA 1", root, ca=True)
        second = issue_cert(keys.p384, "Order CA 2", first, ca=True)
        leaf = issue_cert(keys.p256_b, "ordered", second)
        unrelated = issue_cert(keys.rsa_c, "Unrelated CA", ca=True)
        for intermediates in (
            [first.cert, second.cert],
            [second.cert, first.cert],
            [unrelated.cert, second.cert, root.cert, first.cert],
        ):
            check_leaf(leaf.cert, intermediates, [root.cert])
        with pytest.raises(ChainVerificationFailed):
            check_leaf(leaf.cert, [second.cert], [root.cert])

    def test_intermediate_in_the_bundle(self, chain: Chain) -> None:
        check_leaf(chain.leaf.cert, [], [chain.root.cert, chain.intermediate.cert])
        check_leaf(chain.leaf.cert, [], [chain.intermediate.cert])

    def test_no_ca_bundle(self, chain: Chain) -> None:
        with pytest.raises(ChainVerificationFailed, match="no CA bundle is loaded on the target"):
            check_leaf(chain.leaf.cert, [chain.intermediate.cert], [])

    def test_missing_intermediate(self, chain: Chain) -> None:
        with pytest.raises(ChainVerificationFailed, match="no path to a trusted CA"):
            check_leaf(chain.leaf.cert, [], [chain.root.cert])

    def test_unrelated_root(self, issue_cert: Issue, chain: Chain, keys: Keys) -> None:
        other = issue_cert(keys.rsa_c, "Other Root", ca=True)
        with pytest.raises(ChainVerificationFailed):
            check_leaf(chain.leaf.cert, [chain.intermediate.cert], [other.cert])

    def test_wrong_root_with_the_same_name(
        self, issue_cert: Issue, chain: Chain, keys: Keys
    ) -> None:
        impostor = issue_cert(keys.rsa_c, "Test Root CA", ca=True)
        with pytest.raises(ChainVerificationFailed, match="signature"):
            check_leaf(chain.leaf.cert, [chain.intermediate.cert], [impostor.cert])

    def test_tampered_signature(self, chain: Chain) -> None:
        der = bytearray(chain.leaf.cert.public_bytes(serialization.Encoding.DER))
        der[-1] ^= 0x01
        tampered = x509.load_der_x509_certificate(bytes(der))
        with pytest.raises(ChainVerificationFailed, match="signature"):
            check_leaf(tampered, [chain.intermediate.cert], [chain.root.cert])

    def test_forged_issuer_name(self, issue_cert: Issue, chain: Chain, keys: Keys) -> None:
        forged = issue_cert(keys.rsa_c, "forged", chain.intermediate, signing_key=keys.p256_b)
        with pytest.raises(ChainVerificationFailed):
            check_leaf(forged.cert, [chain.intermediate.cert], [chain.root.cert])

    def test_issuer_that_is_not_a_ca(self, issue_cert: Issue, chain: Chain, keys: Keys) -> None:
        fake_ca = issue_cert(keys.p256_b, "Not A CA", chain.root, ca=False)
        leaf = issue_cert(keys.p384, "under-fake", fake_ca)
        with pytest.raises(ChainVerificationFailed, match="cA"):
            check_leaf(leaf.cert, [fake_ca.cert], [chain.root.cert])

    def test_issuer_without_basic_constraints(
        self, issue_cert: Issue, chain: Chain, keys: Keys
    ) -> None:
        fake_ca = issue_cert(keys.p256_b, "No BC", chain.root, basic_constraints=False, ku=None)
        leaf = issue_cert(keys.p384, "under-nobc", fake_ca)
        with pytest.raises(ChainVerificationFailed):
            check_leaf(leaf.cert, [fake_ca.cert], [chain.root.cert])

    def test_ca_key_usage_without_cert_sign(
        self, issue_cert: Issue, chain: Chain, keys: Keys
    ) -> None:
        bad_ca = issue_cert(
            keys.p256_b, "No CertSign", chain.root, ca=True, ku=usage(digital_signature=True)
        )
        leaf = issue_cert(keys.p384, "under-nocertsign", bad_ca)
        with pytest.raises(ChainVerificationFailed, match="keyCertSign"):
            check_leaf(leaf.cert, [bad_ca.cert], [chain.root.cert])

    def test_path_length(self, issue_cert: Issue, chain: Chain, keys: Keys) -> None:
        # chain.intermediate has pathLen 0: it may not issue another CA.
        sub_ca = issue_cert(keys.p384, "Sub CA", chain.intermediate, ca=True)
        leaf = issue_cert(keys.p256_b, "deep", sub_ca)
        with pytest.raises(ChainVerificationFailed, match="path length"):
            check_leaf(leaf.cert, [chain.intermediate.cert, sub_ca.cert], [chain.root.cert])

    def test_expired_intermediate(
        self, issue_cert: Issue, chain: Chain, keys: Keys, ref: dt.datetime
    ) -> None:
        old = issue_cert(
            keys.p256_b,
            "Old CA",
            chain.root,
            ca=True,
            not_before=ref - 9 * DAY,
            not_after=ref - DAY,
        )
        leaf = issue_cert(keys.p384, "under-old", old)
        with pytest.raises(ChainVerificationFailed, match="outside its validity period"):
            check_leaf(leaf.cert, [old.cert], [chain.root.cert], now=ref)

    def test_self_signed_leaf_in_the_bundle(self, keys: Keys) -> None:
        cert = crypto.make_self_signed_certificate(keys.p256_b, common_name="device")
        check_leaf(cert, [], [cert])

    def test_openssl_root_without_key_usage(self, vector: Vector) -> None:
        # "openssl req -x509" roots carry no keyUsage; WebPKI's CA profile would refuse them.
        root = crypto.load_certificates(vector("openssl_root.pem"))
        leaf = crypto.load_certificates(vector("openssl_leaf.pem"))[0]
        at = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
        check_leaf(leaf, [], root, now=at)
        crypto.check_key_matches(leaf, crypto.load_private_key(vector("ec_p256_sec1.pem")))

    def test_message_names_the_leaf(self, chain: Chain) -> None:
        with pytest.raises(ChainVerificationFailed, match=r"router1\.example\.net"):
            check_leaf(chain.leaf.cert, [], [chain.root.cert])


class TestCheckLeafFallback:
    """Chains cryptography's verifier refuses to judge: RSA-1024 issuers and Ed25519."""

    def test_premise_library_refuses_weak_issuers(self, weak_chain: Chain) -> None:
        verifier = (
            PolicyBuilder()
            .store(Store([weak_chain.root.cert]))
            .extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        with pytest.raises(VerificationError, match="RSA key is too weak"):
            verifier.verify(weak_chain.leaf.cert, [weak_chain.intermediate.cert])

    def test_rsa1024_root_and_intermediate(self, weak_chain: Chain) -> None:
        check_leaf(weak_chain.leaf.cert, [weak_chain.intermediate.cert], [weak_chain.root.cert])

    def test_rsa1024_leaf_under_2048_ca(self, issue_cert: Issue, chain: Chain, keys: Keys) -> None:
        leaf = issue_cert(keys.rsa1024_c, "small-leaf", chain.intermediate, eku=[SERVER_AUTH])
        check_leaf(leaf.cert, [chain.intermediate.cert], [chain.root.cert])
        direct = issue_cert(keys.rsa1024_c, "small-leaf-2", chain.root)
        check_leaf(direct.cert, [], [chain.root.cert])

    def test_rsa1024_wrong_signature(
        self, issue_cert: Issue, weak_chain: Chain, keys: Keys
    ) -> None:
        forged = issue_cert(
            keys.rsa1024_b,
            "Weak Intermediate CA",
            weak_chain.root,
            ca=True,
            signing_key=keys.rsa1024_c,
        )
        with pytest.raises(ChainVerificationFailed, match="signature"):
            check_leaf(weak_chain.leaf.cert, [forged.cert], [weak_chain.root.cert])

    def test_rsa1024_untrusted_root(self, issue_cert: Issue, weak_chain: Chain, keys: Keys) -> None:
        other = issue_cert(keys.rsa1024_c, "Other Weak Root", ca=True)
        with pytest.raises(ChainVerificationFailed):
            check_leaf(weak_chain.leaf.cert, [weak_chain.intermediate.cert], [other.cert])
        with pytest.raises(ChainVerificationFailed, match="no path"):
            check_leaf(weak_chain.leaf.cert, [], [weak_chain.root.cert])

    def test_rsa1024_impostor_root(self, issue_cert: Issue, weak_chain: Chain, keys: Keys) -> None:
        impostor = issue_cert(keys.rsa1024_c, "Weak Root CA", ca=True)
        with pytest.raises(ChainVerificationFailed, match="signature"):
            check_leaf(weak_chain.leaf.cert, [weak_chain.intermediate.cert], [impostor.cert])

    def test_rsa1024_tampered_leaf(self, weak_chain: Chain) -> None:
        der = bytearray(weak_chain.leaf.cert.public_bytes(serialization.Encoding.DER))
        der[-1] ^= 0x80
        tampered = x509.load_der_x509_certificate(bytes(der))
        with pytest.raises(ChainVerificationFailed, match="signature"):
            check_leaf(tampered, [weak_chain.intermediate.cert], [weak_chain.root.cert])

    def test_rsa1024_issuer_not_a_ca(
        self, issue_cert: Issue, weak_chain: Chain, keys: Keys
    ) -> None:
        fake = issue_cert(keys.rsa1024_b, "Weak Fake CA", weak_chain.root, ca=False)
        leaf = issue_cert(keys.rsa1024_c, "under-weak-fake", fake)
        # The library may see this before the key size; either way the chain is refused.
        with pytest.raises(ChainVerificationFailed, match=r"not a CA|cA must be asserted"):
            check_leaf(leaf.cert, [fake.cert], [weak_chain.root.cert])

    def test_rsa1024_issuer_without_cert_sign(
        self, issue_cert: Issue, weak_chain: Chain, keys: Keys
    ) -> None:
        bad = issue_cert(
            keys.rsa1024_b, "Weak No Sign", weak_chain.root, ca=True, ku=usage(crl_sign=True)
        )
        leaf = issue_cert(keys.rsa1024_c, "under-weak-nosign", bad)
        with pytest.raises(ChainVerificationFailed, match="keyCertSign"):
            check_leaf(leaf.cert, [bad.cert], [weak_chain.root.cert])

    def test_rsa1024_path_length(self, issue_cert: Issue, keys: Keys) -> None:
        root = issue_cert(keys.rsa1024_a, "Weak Len Root", ca=True, path_length=0)
        sub = issue_cert(keys.rsa1024_b, "Weak Len Sub", root, ca=True)
        leaf = issue_cert(keys.rsa1024_c, "weak-deep", sub)
        with pytest.raises(ChainVerificationFailed, match="path length"):
            check_leaf(leaf.cert, [sub.cert], [root.cert])
        allowed_root = issue_cert(keys.rsa1024_a, "Weak Len Root 1", ca=True, path_length=1)
        allowed_sub = issue_cert(keys.rsa1024_b, "Weak Len Sub 1", allowed_root, ca=True)
        allowed_leaf = issue_cert(keys.rsa1024_c, "weak-deep-1", allowed_sub)
        check_leaf(allowed_leaf.cert, [allowed_sub.cert], [allowed_root.cert])

    def test_rsa1024_expired_intermediate(
        self, issue_cert: Issue, weak_chain: Chain, keys: Keys, ref: dt.datetime
    ) -> None:
        old = issue_cert(
            keys.rsa1024_b,
            "Weak Old CA",
            weak_chain.root,
            ca=True,
            not_before=ref - 9 * DAY,
            not_after=ref - DAY,
        )
        leaf = issue_cert(keys.rsa1024_c, "under-weak-old", old)
        with pytest.raises(ChainVerificationFailed, match="outside its validity period"):
            check_leaf(leaf.cert, [old.cert], [weak_chain.root.cert], now=ref)

    def test_rsa1024_name_constraints_are_not_trusted_blindly(
        self, issue_cert: Issue, weak_chain: Chain, keys: Keys
    ) -> None:
        constraints = x509.NameConstraints(
            permitted_subtrees=[x509.DNSName("example.org")], excluded_subtrees=None
        )
        constrained = issue_cert(
            keys.rsa1024_b, "Weak Constrained CA", weak_chain.root, ca=True, extra=[constraints]
        )
        leaf = issue_cert(keys.rsa1024_c, "outside.example.net", constrained)
        with pytest.raises(ChainVerificationFailed, match="name constraints"):
            check_leaf(leaf.cert, [constrained.cert], [weak_chain.root.cert])

    def test_ed25519_root(self, issue_cert: Issue, keys: Keys) -> None:
        root = issue_cert(keys.ed25519, "Ed25519 Root", ca=True)
        leaf = issue_cert(keys.p256_b, "under-ed25519", root)
        check_leaf(leaf.cert, [], [root.cert])
        impostor = issue_cert(keys.p384, "Ed25519 Root", ca=True)
        with pytest.raises(ChainVerificationFailed):
            check_leaf(leaf.cert, [], [impostor.cert])


class TestTrustSet:
    def test_same_verdicts_as_a_list(self, chain: Chain, issue_cert: Issue, keys: Keys) -> None:
        trust = TrustSet([chain.root.cert])
        assert len(trust) == 1
        assert trust.anchors == (chain.root.cert,)
        check_leaf(chain.leaf.cert, [chain.intermediate.cert], trust)
        assert chain_verifies(chain.leaf.cert, [chain.intermediate.cert], trust)
        other = TrustSet([issue_cert(keys.rsa_c, "Test Root CA", ca=True).cert])
        with pytest.raises(ChainVerificationFailed):
            check_leaf(chain.leaf.cert, [chain.intermediate.cert], other)
        assert not chain_verifies(chain.leaf.cert, [chain.intermediate.cert], other)

    def test_fallback_through_a_trust_set(self, weak_chain: Chain) -> None:
        trust = TrustSet([weak_chain.root.cert])
        for _ in range(2):  # the second call uses the cached subject index
            check_leaf(weak_chain.leaf.cert, [weak_chain.intermediate.cert], trust)
        assert chain_verifies(weak_chain.leaf.cert, [weak_chain.intermediate.cert], trust)

    def test_empty(self, chain: Chain) -> None:
        trust = TrustSet([])
        assert len(trust) == 0
        with pytest.raises(ChainVerificationFailed, match="no CA bundle"):
            check_leaf(chain.leaf.cert, [chain.intermediate.cert], trust)
        assert not chain_verifies(chain.leaf.cert, [chain.intermediate.cert], trust)

    def test_20000_anchors(self, chain: Chain, weak_chain: Chain, keys: Keys) -> None:
        # 20,000 distinct self-signed CAs, made by rewriting the name inside one DER template:
        # anchor signatures are never checked, and signing 20,000 certificates would take seconds.
        template = crypto.make_self_signed_certificate(keys.p256_b, common_name="anchor-00000")
        der = template.public_bytes(serialization.Encoding.DER)
        assert der.count(b"anchor-00000") == 2  # subject and issuer
        anchors = [
            x509.load_der_x509_certificate(der.replace(b"anchor-00000", b"anchor-%05d" % i))
            for i in range(20_000)
        ]
        bundle = [*anchors[:10_000], chain.root.cert, weak_chain.root.cert, *anchors[10_000:]]
        # Correctness only: the cost is bench/pki.py's to measure, never a test's to assert.
        check_leaf(chain.leaf.cert, [chain.intermediate.cert], bundle)
        check_leaf(weak_chain.leaf.cert, [weak_chain.intermediate.cert], bundle)
        assert chain_verifies(chain.leaf.cert, [chain.intermediate.cert], bundle)
        trust = TrustSet(bundle)
        check_leaf(chain.leaf.cert, [chain.intermediate.cert], trust)
        check_leaf(weak_chain.leaf.cert, [weak_chain.intermediate.cert], trust)


# --- chain_verifies -------------------------------------------------------------------------


class TestChainVerifies:
    def test_good_chain(self, chain: Chain) -> None:
        assert chain_verifies(chain.leaf.cert, [chain.intermediate.cert], [chain.root.cert])

    def test_no_anchors(self, chain: Chain) -> None:
        assert not chain_verifies(chain.leaf.cert, [chain.intermediate.cert], [])

    def test_wrong_root(self, issue_cert: Issue, chain: Chain, keys: Keys) -> None:
        impostor = issue_cert(keys.rsa_c, "Test Root CA", ca=True)
        assert not chain_verifies(chain.leaf.cert, [chain.intermediate.cert], [impostor.cert])
        other = issue_cert(keys.rsa_c, "Other Root", ca=True)
        assert not chain_verifies(chain.leaf.cert, [chain.intermediate.cert], [other.cert])

    def test_missing_intermediate(self, chain: Chain) -> None:
        assert not chain_verifies(chain.leaf.cert, [], [chain.root.cert])

    def test_tampered(self, chain: Chain) -> None:
        der = bytearray(chain.leaf.cert.public_bytes(serialization.Encoding.DER))
        der[-1] ^= 0x01
        tampered = x509.load_der_x509_certificate(bytes(der))
        assert not chain_verifies(tampered, [chain.intermediate.cert], [chain.root.cert])

    def test_issuer_not_a_ca(self, issue_cert: Issue, chain: Chain, keys: Keys) -> None:
        fake_ca = issue_cert(keys.p256_b, "Not A CA", chain.root, ca=False)
        leaf = issue_cert(keys.p384, "under-fake", fake_ca)
        assert not chain_verifies(leaf.cert, [fake_ca.cert], [chain.root.cert])

    def test_ca_time_is_checked_now(self, issue_cert: Issue, keys: Keys, ref: dt.datetime) -> None:
        # The TLS stack refuses a chain through an expired or not yet valid CA, so the lockout
        # guard must too (docs/behaviour.md §3); it used to ignore time altogether.
        old_root = issue_cert(
            keys.rsa_a, "Old Root", ca=True, not_before=ref - 90 * DAY, not_after=ref - 30 * DAY
        )
        old_leaf = issue_cert(keys.p256_b, "old-root-leaf", old_root)
        assert not chain_verifies(old_leaf.cert, [], [old_root.cert])
        future_root = issue_cert(keys.rsa_a, "Future Root", ca=True, not_before=ref + 10 * DAY)
        current_leaf = issue_cert(keys.p256_b, "now-leaf", future_root)
        assert not chain_verifies(current_leaf.cert, [], [future_root.cert])
        with pytest.raises(ChainVerificationFailed):
            check_leaf(current_leaf.cert, [], [future_root.cert], now=ref)

    def test_leaf_time_is_not_asked(
        self, issue_cert: Issue, chain: Chain, ref: dt.datetime
    ) -> None:
        # A bundle does not change the leaf's window; check_leaf asks that.
        old_leaf = issue_cert(
            chain.leaf.key, "old-leaf", chain.root, not_before=ref - 9 * DAY, not_after=ref - DAY
        )
        assert chain_verifies(old_leaf.cert, [], [chain.root.cert])
        # Even when the leaf expired before its CA began (a reissued root): no single moment
        # suits the whole path, so the verifier is not asked; our own checks decide.
        older = issue_cert(
            chain.leaf.key, "older", chain.root, not_before=ref - 9 * DAY, not_after=ref - 2 * DAY
        )
        assert chain_verifies(older.cert, [], [chain.root.cert])

    def test_ignores_eku(self, issue_cert: Issue, chain: Chain, keys: Keys) -> None:
        leaf = issue_cert(
            keys.p256_b, "signer", chain.intermediate, eku=[ExtendedKeyUsageOID.CODE_SIGNING]
        )
        assert chain_verifies(leaf.cert, [chain.intermediate.cert], [chain.root.cert])

    def test_weak_chain(self, weak_chain: Chain, issue_cert: Issue, keys: Keys) -> None:
        args = (weak_chain.leaf.cert, [weak_chain.intermediate.cert])
        assert chain_verifies(*args, [weak_chain.root.cert])
        impostor = issue_cert(keys.rsa1024_c, "Weak Root CA", ca=True)
        assert not chain_verifies(*args, [impostor.cert])

    def test_self_signed_in_bundle(self, keys: Keys, chain: Chain) -> None:
        cert = crypto.make_self_signed_certificate(keys.p384, common_name="device")
        assert chain_verifies(cert, [], [chain.root.cert, cert])
        assert not chain_verifies(cert, [], [chain.root.cert])


# --- the factory certificate ----------------------------------------------------------------


class TestMakeSelfSignedCertificate:
    @pytest.mark.parametrize("key_name", ["rsa_c", "p256_b"])
    def test_contents(self, keys: Keys, key_name: str) -> None:
        key = getattr(keys, key_name)
        cert = crypto.make_self_signed_certificate(
            key,
            common_name="gnoicert factory",
            dns_names=["localhost", "router1.example.net"],
            ip_addresses=["127.0.0.1", "::1"],
            days=30,
        )
        assert cert.subject == cert.issuer
        assert (
            cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gnoicert factory"
        )
        assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
        cert.verify_directly_issued_by(cert)
        crypto.check_key_matches(cert, key)
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert constraints.critical
        assert not constraints.value.ca
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [SERVER_AUTH]
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == ["localhost", "router1.example.net"]
        assert sans.get_values_for_type(x509.IPAddress) == [
            ipaddress.ip_address("127.0.0.1"),
            ipaddress.ip_address("::1"),
        ]
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert 30 * DAY <= lifetime <= 31 * DAY
        assert cert.not_valid_before_utc < dt.datetime.now(dt.UTC) - CLOCK_SKEW
        check_leaf(cert, [], [cert])

    def test_without_sans(self, keys: Keys) -> None:
        cert = crypto.make_self_signed_certificate(keys.p256_b, common_name="bare")
        with pytest.raises(x509.ExtensionNotFound):
            cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)

    def test_default_lifetime_is_ten_years(self, keys: Keys) -> None:
        cert = crypto.make_self_signed_certificate(keys.p256_b, common_name="long")
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert 3650 * DAY <= lifetime <= 3651 * DAY

    @pytest.mark.parametrize(
        "kwargs",
        [{"ip_addresses": ["not-an-ip"]}, {"days": 0}, {"common_name": ""}],
    )
    def test_bad_arguments(self, keys: Keys, kwargs: dict[str, object]) -> None:
        arguments: dict[str, object] = {"common_name": "x", **kwargs}
        with pytest.raises(ValueError):  # noqa: PT011 - caller misuse is a plain ValueError
            crypto.make_self_signed_certificate(keys.p256_b, **arguments)  # type: ignore[arg-type]

    @pytest.mark.parametrize("key_name", ["rsa_c", "p256_b"])
    def test_grpcio_serves_it(self, keys: Keys, key_name: str) -> None:
        """A real grpcio server on 127.0.0.1 completes TLS handshakes with the certificate."""
        key = getattr(keys, key_name)
        cert = crypto.make_self_signed_certificate(
            key, common_name="gnoicert", dns_names=["localhost"], ip_addresses=["127.0.0.1"]
        )
        cert_pem = crypto.certificates_to_pem([cert])
        credentials = grpc.ssl_server_credentials([(crypto.private_key_to_pem(key), cert_pem)])
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
        port = server.add_secure_port("127.0.0.1:0", credentials)
        assert port > 0
        server.start()
        try:
            # Checked once against the IP SAN, once against the DNS SAN.
            for override in (None, "localhost"):
                options = [("grpc.ssl_target_name_override", override)] if override else []
                channel = grpc.secure_channel(
                    f"127.0.0.1:{port}", grpc.ssl_channel_credentials(cert_pem), options=options
                )
                try:
                    grpc.channel_ready_future(channel).result(timeout=20)
                finally:
                    channel.close()
        finally:
            server.stop(None).wait(timeout=10)


CLOCK_SKEW = CLOCK_SKEW


# --- the fallback walk against the library ----------------------------------------------------

Scenario = tuple[x509.Certificate, list[x509.Certificate], list[x509.Certificate], bool]
_UNKNOWN_CRITICAL = x509.UnrecognizedExtension(
    x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00"
)


@pytest.fixture(scope="module")
def scenarios(issue_cert: Issue, chain: Chain, keys: Keys, ref: dt.datetime) -> dict[str, Scenario]:
    """Strong-key chains both the library and the walk can judge, with the expected verdict."""
    root, inter, leaf = chain.root, chain.intermediate, chain.leaf
    unrelated = issue_cert(keys.rsa_c, "Unrelated Root", ca=True)
    impostor_root = issue_cert(keys.rsa_c, "Test Root CA", ca=True)
    impostor_inter = issue_cert(keys.p384, "Test Intermediate CA", root, ca=True)
    tampered_der = bytearray(leaf.cert.public_bytes(serialization.Encoding.DER))
    tampered_der[-1] ^= 0x01
    not_ca = issue_cert(keys.p256_b, "Plain Issuer", root)
    no_bc = issue_cert(keys.p256_b, "No BC Issuer", root, basic_constraints=False, ku=None)
    no_sign = issue_cert(keys.p256_b, "No Sign CA", root, ca=True, ku=usage(crl_sign=True))
    sub_ca = issue_cert(keys.p384, "Too Deep CA", inter, ca=True)
    expired = issue_cert(
        keys.p256_b, "Expired CA", root, ca=True, not_before=ref - 9 * DAY, not_after=ref - DAY
    )
    odd_ca = issue_cert(keys.p256_b, "Odd CA", root, ca=True, critical_extra=[_UNKNOWN_CRITICAL])
    odd_leaf = issue_cert(keys.p384, "odd-leaf", inter, critical_extra=[_UNKNOWN_CRITICAL])
    # Loop A and Loop B issued each other (seed_b is Loop B's first, self-signed incarnation).
    seed_b = issue_cert(keys.p384, "Loop B", ca=True)
    loop_a = issue_cert(keys.p256_b, "Loop A", seed_b, ca=True)
    loop_b = issue_cert(keys.p384, "Loop B", loop_a, ca=True)
    return {
        "good": (leaf.cert, [inter.cert], [root.cert], True),
        "shuffled with extras": (
            leaf.cert,
            [unrelated.cert, root.cert, inter.cert],
            [root.cert],
            True,
        ),
        "intermediate as anchor": (leaf.cert, [], [inter.cert], True),
        "leaf as anchor": (leaf.cert, [], [leaf.cert, root.cert], True),
        "rekeyed root beside impostor": (
            leaf.cert,
            [inter.cert],
            [impostor_root.cert, root.cert],
            True,
        ),
        "impostor intermediate beside real": (
            leaf.cert,
            [impostor_inter.cert, inter.cert],
            [root.cert],
            True,
        ),
        "missing intermediate": (leaf.cert, [], [root.cert], False),
        "unrelated root": (leaf.cert, [inter.cert], [unrelated.cert], False),
        "impostor root": (leaf.cert, [inter.cert], [impostor_root.cert], False),
        "impostor intermediate": (leaf.cert, [impostor_inter.cert], [root.cert], False),
        "tampered leaf": (
            x509.load_der_x509_certificate(bytes(tampered_der)),
            [inter.cert],
            [root.cert],
            False,
        ),
        "issuer not a CA": (
            issue_cert(keys.p384, "l1", not_ca).cert,
            [not_ca.cert],
            [root.cert],
            False,
        ),
        "issuer without basicConstraints": (
            issue_cert(keys.p384, "l2", no_bc).cert,
            [no_bc.cert],
            [root.cert],
            False,
        ),
        "issuer without keyCertSign": (
            issue_cert(keys.p384, "l3", no_sign).cert,
            [no_sign.cert],
            [root.cert],
            False,
        ),
        "path length": (
            issue_cert(keys.p256_b, "l4", sub_ca).cert,
            [inter.cert, sub_ca.cert],
            [root.cert],
            False,
        ),
        "expired intermediate": (
            issue_cert(keys.p384, "l5", expired).cert,
            [expired.cert],
            [root.cert],
            False,
        ),
        "unknown critical extension on a CA": (
            issue_cert(keys.p384, "l6", odd_ca).cert,
            [odd_ca.cert],
            [root.cert],
            False,
        ),
        "unknown critical extension on the leaf": (odd_leaf.cert, [inter.cert], [root.cert], False),
        "issuer loop": (
            issue_cert(keys.rsa_c, "l7", loop_a).cert,
            [loop_a.cert, loop_b.cert],
            [unrelated.cert],
            False,
        ),
    }


SCENARIOS = [
    "good",
    "shuffled with extras",
    "intermediate as anchor",
    "leaf as anchor",
    "rekeyed root beside impostor",
    "impostor intermediate beside real",
    "missing intermediate",
    "unrelated root",
    "impostor root",
    "impostor intermediate",
    "tampered leaf",
    "issuer not a CA",
    "issuer without basicConstraints",
    "issuer without keyCertSign",
    "path length",
    "expired intermediate",
    "unknown critical extension on a CA",
    "unknown critical extension on the leaf",
    "issuer loop",
]


def _walk(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    anchors: list[x509.Certificate],
    at: dt.datetime | None,
) -> str | None:
    """Our own path building alone: None when it finds a path, else the last reason."""
    reasons: list[str] = []
    index: dict[bytes, list[x509.Certificate]] = {}
    for anchor in anchors:
        index.setdefault(anchor.subject.public_bytes(), []).append(anchor)
    found = pki_path.paths(leaf, intermediates, index, at=at, skew=CLOCK_SKEW, reasons=reasons)
    if next(found, None) is not None:
        return None
    return reasons[-1] if reasons else "no path"


class TestWalkChain:
    """Our own path building must reach the same verdicts as cryptography's verifier."""

    @pytest.mark.parametrize("name", SCENARIOS)
    def test_walk_agrees_with_the_library(
        self, scenarios: dict[str, Scenario], name: str, ref: dt.datetime
    ) -> None:
        leaf, intermediates, anchors, expected = scenarios[name]
        walked = _walk(leaf, intermediates, anchors, ref)
        assert (walked is None) == expected, walked
        try:
            check_leaf(leaf, intermediates, anchors, now=ref)
        except ChainVerificationFailed:
            verified = False
        else:
            verified = True
        assert verified == expected

    def test_scenario_list_is_complete(self, scenarios: dict[str, Scenario]) -> None:
        assert sorted(scenarios) == sorted(SCENARIOS)

    def test_walk_without_time(self, scenarios: dict[str, Scenario]) -> None:
        leaf, intermediates, anchors, _ = scenarios["expired intermediate"]
        assert _walk(leaf, intermediates, anchors, None) is None
        assert not chain_verifies(leaf, intermediates, anchors)

    def test_library_decides_when_it_can(self, issue_cert: Issue, chain: Chain, keys: Keys) -> None:
        # The walk does not check name constraints; the library does, for every path it can
        # judge.
        constraints = x509.NameConstraints(
            permitted_subtrees=[x509.DNSName("example.net")], excluded_subtrees=None
        )
        constrained = issue_cert(
            keys.p256_b, "Constrained CA", chain.root, ca=True, extra=[constraints]
        )
        inside = issue_cert(keys.p384, "inside.example.net", constrained)
        outside = issue_cert(keys.p384, "outside.example.org", constrained)
        assert _walk(inside.cert, [constrained.cert], [chain.root.cert], None) is None
        check_leaf(inside.cert, [constrained.cert], [chain.root.cert])
        with pytest.raises(ChainVerificationFailed):
            check_leaf(outside.cert, [constrained.cert], [chain.root.cert])

    def test_weak_chain_with_unknown_critical_extension(
        self, issue_cert: Issue, weak_chain: Chain, keys: Keys
    ) -> None:
        odd = issue_cert(
            keys.rsa1024_b,
            "Weak Odd CA",
            weak_chain.root,
            ca=True,
            critical_extra=[_UNKNOWN_CRITICAL],
        )
        leaf = issue_cert(keys.rsa1024_c, "weak-odd", odd)
        with pytest.raises(ChainVerificationFailed):
            check_leaf(leaf.cert, [odd.cert], [weak_chain.root.cert])
        odd_leaf = issue_cert(
            keys.rsa1024_c,
            "weak-odd-leaf",
            weak_chain.intermediate,
            critical_extra=[_UNKNOWN_CRITICAL],
        )
        with pytest.raises(ChainVerificationFailed):
            check_leaf(odd_leaf.cert, [weak_chain.intermediate.cert], [weak_chain.root.cert])
