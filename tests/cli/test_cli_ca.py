"""`gnoicert ca init` and `gnoicert ca sign`: the files they leave, checked with cryptography.

The CAs made here by the CLI are the ones the other modules use against the daemon (ECDSA root
in test_cli_server_only, RSA root plus intermediate in test_cli_mutual and test_examples); this
module checks what is inside them, for each key type with and without an intermediate.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.cli import expect, run_cli


def make_csr(path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "r1.example.net")]))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("r1.example.net"),
                    x509.IPAddress(ipaddress.ip_address("192.0.2.1")),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return key


def verify_server_chain(leaf: x509.Certificate, chain: list[x509.Certificate]) -> None:
    """Raises unless leaf chains through `chain` to its self-signed root, for r1.example.net."""
    root = chain[-1]
    store = verification.Store([root])
    verifier = (
        verification.PolicyBuilder()
        .store(store)
        .build_server_verifier(x509.DNSName("r1.example.net"))
    )
    verifier.verify(leaf, chain[:-1])


@pytest.mark.parametrize("intermediate", [False, True], ids=["root", "root+intermediate"])
@pytest.mark.parametrize("key_type", ["rsa", "ecdsa"])
def test_ca_init_then_sign(tmp_path: Path, key_type: str, intermediate: bool) -> None:
    ca_dir = tmp_path / "ca"
    extra = ["--intermediate"] if intermediate else []
    info = expect(
        run_cli("ca", "init", str(ca_dir), "--key-type", key_type, *extra, "--json"), 0
    ).json()
    assert info["key_type"] == {"rsa": "RSA-2048", "ecdsa": "ECDSA-256"}[key_type]
    assert info["bundle_path"] == str(ca_dir / "bundle.pem")
    assert (info["intermediate_subject"] is not None) is intermediate

    keys = ["ca.key", "intermediate.key"] if intermediate else ["ca.key"]
    assert sorted(p.name for p in ca_dir.iterdir() if p.suffix == ".key") == sorted(keys)
    for name in keys:
        assert stat.S_IMODE((ca_dir / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(ca_dir.stat().st_mode) == 0o700

    root = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    assert root.subject == root.issuer
    assert root.subject.rfc4514_string() == info["root_subject"]
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    bundle = x509.load_pem_x509_certificates((ca_dir / "bundle.pem").read_bytes())
    assert bundle[-1] == root
    assert len(bundle) == (2 if intermediate else 1)

    csr_path, cert_path = tmp_path / "r1.csr", tmp_path / "r1.pem"
    key = make_csr(csr_path)
    issued = expect(
        run_cli(
            "ca", "sign", str(ca_dir), str(csr_path), "--days", "30", "--out", str(cert_path),
            "--json",
        ),
        0,
    ).json()  # fmt: skip
    chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
    leaf = chain[0]
    assert leaf.public_key() == key.public_key()
    assert issued["sans"] == ["DNS:r1.example.net", "IP:192.0.2.1"]
    assert issued["path"] == str(cert_path)
    assert chain[1:] == bundle
    assert leaf.issuer == bundle[0].subject
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    lifetime = leaf.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=29) < lifetime <= dt.timedelta(days=30)
    verify_server_chain(leaf, chain)


def test_ca_sign_prints_to_stdout_and_refuses_what_is_not_a_csr(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    expect(run_cli("ca", "init", str(ca_dir), "--key-type", "ecdsa"), 0)
    make_csr(tmp_path / "r1.csr")
    printed = expect(run_cli("ca", "sign", str(ca_dir), str(tmp_path / "r1.csr")), 0).stdout
    chain = x509.load_pem_x509_certificates(printed.encode())
    assert len(chain) == 2
    verify_server_chain(chain[0], chain)

    not_csr = expect(run_cli("ca", "sign", str(ca_dir), str(ca_dir / "ca.pem")), 2)
    assert str(ca_dir / "ca.pem") in not_csr.stderr
    no_ca = expect(run_cli("ca", "sign", str(tmp_path / "none"), str(tmp_path / "r1.csr")), 2)
    assert "run: gnoicert ca init" in no_ca.stderr


def test_ca_init_keeps_an_existing_ca_unless_forced(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    first = expect(run_cli("ca", "init", str(ca_dir), "--key-type", "ecdsa", "--json"), 0).json()
    refused = expect(run_cli("ca", "init", str(ca_dir), "--key-type", "ecdsa"), 2)
    assert "already holds a CA" in refused.stderr
    assert "--force" in refused.stderr
    forced = expect(
        run_cli("ca", "init", str(ca_dir), "--key-type", "ecdsa", "--force", "--json"), 0
    ).json()
    assert forced["root_fingerprint"] != first["root_fingerprint"]
