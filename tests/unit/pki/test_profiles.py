"""The issued profiles: what the factory certificate and the local CA's certificates allow."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from gnoicert.client.ca import LocalCA
from gnoicert.pki import profiles
from gnoicert.pki.crypto import generate_rsa_key, load_certificates, make_self_signed_certificate


def _usage(certificate: x509.Certificate) -> x509.KeyUsage:
    return certificate.extensions.get_extension_for_class(x509.KeyUsage).value


def _purposes(certificate: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_leaf_key_encipherment_only_for_rsa() -> None:
    rsa_usage = profiles.leaf_key_usage(generate_rsa_key(1024).public_key())
    ec_usage = profiles.leaf_key_usage(ec.generate_private_key(ec.SECP256R1()).public_key())
    assert rsa_usage.key_encipherment
    assert not ec_usage.key_encipherment
    assert rsa_usage.digital_signature
    assert not rsa_usage.key_cert_sign


def test_the_factory_certificate_serves_tls_only() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    factory = make_self_signed_certificate(key, common_name="factory")
    assert _purposes(factory) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert _usage(factory) == profiles.leaf_key_usage(key.public_key())


def test_local_ca_certificates_use_the_shared_profiles(tmp_path: Path) -> None:
    ca = LocalCA.init(tmp_path / "ca", key_type="ecdsa", intermediate=True)
    assert ca.intermediate is not None
    for authority in (ca.root, ca.intermediate):
        assert _usage(authority) == profiles.ca_key_usage()
    key_pem, signed = ca.issue("operator", key_type="ecdsa")
    assert key_pem
    leaf = load_certificates(signed.certificate_pem)[0]
    assert _purposes(leaf) == list(profiles.SERVER_AND_CLIENT)
    assert not _usage(leaf).key_encipherment
