"""The local file CA: init (root, root + intermediate; RSA, ECDSA), open, sign, issue."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from gnoicert.client.ca import (
    BUNDLE_FILE,
    INTERMEDIATE_CERT_FILE,
    INTERMEDIATE_KEY_FILE,
    ROOT_CERT_FILE,
    ROOT_KEY_FILE,
    LocalCA,
    write_private_file,
)
from gnoicert.client.errors import InputError, SignerError
from gnoicert.client.models import CsrParams
from gnoicert.client.signer import Signer
from gnoicert.pki.chain import chain_verifies
from gnoicert.pki.crypto import build_csr, generate_rsa_key, load_certificates
from tests.unit.conftest import ec_key


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class TestInit:
    @pytest.mark.parametrize("key_type", ["rsa", "ecdsa"])
    def test_root_only(self, tmp_path: Path, key_type: str) -> None:
        ca = LocalCA.init(tmp_path / "ca", key_type=key_type)  # type: ignore[arg-type]
        directory = tmp_path / "ca"
        assert _mode(directory) == 0o700
        assert _mode(directory / ROOT_KEY_FILE) == 0o600
        assert not (directory / INTERMEDIATE_CERT_FILE).exists()
        assert ca.intermediate is None
        expected = rsa.RSAPublicKey if key_type == "rsa" else ec.EllipticCurvePublicKey
        assert isinstance(ca.root.public_key(), expected)
        constraints = ca.root.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert constraints.ca is True
        assert constraints.path_length == 0
        assert load_certificates((directory / BUNDLE_FILE).read_bytes()) == [ca.root]

    @pytest.mark.parametrize("key_type", ["rsa", "ecdsa"])
    def test_with_intermediate(self, tmp_path: Path, key_type: str) -> None:
        ca = LocalCA.init(tmp_path / "ca", intermediate=True, key_type=key_type)  # type: ignore[arg-type]
        directory = tmp_path / "ca"
        assert _mode(directory / INTERMEDIATE_KEY_FILE) == 0o600
        assert ca.intermediate is not None
        assert chain_verifies(ca.intermediate, [], [ca.root])
        # The bundle sent to targets: intermediate, then root (docs/wire.md ordering).
        assert load_certificates(ca.bundle_pem) == [ca.intermediate, ca.root]
        assert load_certificates(ca.root_pem) == [ca.root]
        assert (directory / BUNDLE_FILE).read_bytes() == ca.bundle_pem

    def test_refuses_to_overwrite_without_force(self, tmp_path: Path) -> None:
        first = LocalCA.init(tmp_path / "ca", key_type="ecdsa")
        with pytest.raises(InputError, match="already holds a CA"):
            LocalCA.init(tmp_path / "ca", key_type="ecdsa")
        second = LocalCA.init(tmp_path / "ca", key_type="ecdsa", intermediate=True, force=True)
        assert second.root != first.root
        assert LocalCA.open(tmp_path / "ca").intermediate == second.intermediate

    def test_info(self, chained_ca: LocalCA) -> None:
        info = chained_ca.info()
        assert info.intermediate_subject is not None
        assert info.key_type == "ECDSA-256"
        assert info.bundle_path.endswith(BUNDLE_FILE)
        assert len(info.root_fingerprint) == 64


class TestOpen:
    def test_round_trip(self, chained_ca: LocalCA) -> None:
        opened = LocalCA.open(chained_ca.directory, days=7)
        assert opened.root == chained_ca.root
        assert opened.intermediate == chained_ca.intermediate
        assert opened.days == 7

    def test_missing_directory(self, tmp_path: Path) -> None:
        with pytest.raises(InputError, match="gnoicert ca init"):
            LocalCA.open(tmp_path / "nothing")

    def test_key_that_does_not_match(self, tmp_path: Path) -> None:
        LocalCA.init(tmp_path / "ca", key_type="ecdsa")
        other = LocalCA.init(tmp_path / "other", key_type="ecdsa")
        (tmp_path / "ca" / ROOT_KEY_FILE).unlink()
        (tmp_path / "ca" / ROOT_KEY_FILE).write_bytes(
            (other.directory / ROOT_KEY_FILE).read_bytes()
        )
        with pytest.raises(InputError, match="is not the key of"):
            LocalCA.open(tmp_path / "ca")

    def test_garbage_certificate(self, tmp_path: Path) -> None:
        LocalCA.init(tmp_path / "ca", key_type="ecdsa")
        (tmp_path / "ca" / ROOT_CERT_FILE).write_bytes(b"garbage")
        with pytest.raises(InputError, match=ROOT_CERT_FILE):
            LocalCA.open(tmp_path / "ca")


class TestSign:
    def test_is_a_signer(self, root_ca: LocalCA) -> None:
        assert isinstance(root_ca, Signer)

    @pytest.mark.parametrize("ca_name", ["root_ca", "chained_ca"])
    def test_leaf_profile(self, request: pytest.FixtureRequest, ca_name: str) -> None:
        ca: LocalCA = request.getfixturevalue(ca_name)
        key = generate_rsa_key(2048)
        params = CsrParams(
            common_name="r1.example.net", ip_address="192.0.2.1", email_id="noc@example.net"
        )
        signed = ca.sign_csr(build_csr(key, params.subject()), days=10)
        leaf = load_certificates(signed.certificate_pem)[0]
        assert leaf.public_key() == key.public_key()
        assert leaf.subject.rfc4514_string().endswith("CN=r1.example.net")
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == ["r1.example.net"]
        assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["192.0.2.1"]
        assert sans.get_values_for_type(x509.RFC822Name) == ["noc@example.net"]
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        assert usage.digital_signature
        assert usage.key_encipherment  # RSA leaf
        lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        assert dt.timedelta(days=10) <= lifetime <= dt.timedelta(days=10, minutes=6)
        chain = load_certificates(signed.chain_pem)
        assert chain[-1] == ca.root
        assert chain_verifies(leaf, chain[:-1], [ca.root])

    def test_ecdsa_leaf_has_no_key_encipherment(self, root_ca: LocalCA) -> None:
        signed = root_ca.sign(build_csr(ec_key(), CsrParams(common_name="x").subject()))
        leaf = load_certificates(signed.certificate_pem)[0]
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        assert usage.digital_signature
        assert not usage.key_encipherment

    def test_default_validity_is_the_ca_days(self, root_ca: LocalCA) -> None:
        ca = LocalCA.open(root_ca.directory, days=3)
        leaf = load_certificates(
            ca.sign(build_csr(ec_key(), CsrParams().subject())).certificate_pem
        )[0]
        lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        assert lifetime < dt.timedelta(days=3, minutes=6)

    def test_never_outlives_the_issuer(self, tmp_path: Path) -> None:
        ca = LocalCA.init(tmp_path / "ca", key_type="ecdsa", days=2)
        leaf = load_certificates(
            ca.sign_csr(build_csr(ec_key(), CsrParams().subject()), days=365).certificate_pem
        )[0]
        assert leaf.not_valid_after_utc <= ca.root.not_valid_after_utc

    def test_garbage_csr(self, root_ca: LocalCA) -> None:
        with pytest.raises(SignerError, match="signing request"):
            root_ca.sign(b"not a csr")

    def test_tampered_csr(self, root_ca: LocalCA) -> None:
        csr = x509.load_pem_x509_csr(build_csr(ec_key(), CsrParams(common_name="abc").subject()))
        from cryptography.hazmat.primitives import serialization

        der = bytearray(csr.public_bytes(serialization.Encoding.DER))
        index = der.find(b"abc")
        der[index : index + 3] = b"xyz"
        with pytest.raises(SignerError, match="does not verify"):
            root_ca.sign(bytes(der))


class TestIssue:
    def test_client_certificate(self, chained_ca: LocalCA) -> None:
        key_pem, signed = chained_ca.issue(
            "operator", dns_names=["ops.example"], ip_addresses=["192.0.2.9"]
        )
        assert b"PRIVATE KEY" in key_pem
        leaf = load_certificates(signed.certificate_pem)[0]
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == ["ops.example"]
        assert chain_verifies(leaf, load_certificates(signed.chain_pem)[:-1], [chained_ca.root])

    def test_bad_ip(self, root_ca: LocalCA) -> None:
        with pytest.raises(InputError, match="bad IP"):
            root_ca.issue("x", ip_addresses=["not-an-ip"])


class TestWritePrivateFile:
    def test_new_file_is_0600_and_never_overwritten(self, tmp_path: Path) -> None:
        path = tmp_path / "k.pem"
        write_private_file(path, b"secret")
        assert _mode(path) == 0o600
        with pytest.raises(InputError, match="already exists"):
            write_private_file(path, b"other")
        write_private_file(path, b"other", replace=True)
        assert path.read_bytes() == b"other"
        assert _mode(path) == 0o600
        assert sorted(p.name for p in tmp_path.iterdir()) == ["k.pem"]
