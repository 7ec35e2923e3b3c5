"""An operator's CA policy as a `gnoicert --sign-command`: sign the CSR with the CA in a
directory (ca.pem, ca.key) and set the SANs the gRPC server needs (DNS localhost, IP 127.0.0.1).

gnxi's gnoi_target makes CSRs without any SAN, so a CA that copied SANs from the CSR would issue
a server certificate that no client dialling 127.0.0.1 accepts. Run as a script: CSR PEM on
stdin, certificate PEM on stdout (cryptography only, so it runs outside the test package).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import sys
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

SANS = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]


def sign_with_sans(ca_dir: Path, csr_pem: bytes) -> bytes:
    csr = x509.load_pem_x509_csr(csr_pem)
    assert csr.is_signature_valid, "the CSR's signature does not verify"
    root = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    public_key = csr.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    now = dt.datetime.now(dt.UTC)
    with warnings.catch_warnings():
        # gnoi_target's CSRs carry an empty C=; this CA copies the subject as it is.
        warnings.filterwarnings("ignore", "Attribute's length must be", UserWarning)
        subject = csr.subject
    leaf = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(root.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(SANS), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return leaf.public_bytes(serialization.Encoding.PEM)


def main() -> None:
    sys.stdout.buffer.write(sign_with_sans(Path(sys.argv[1]), sys.stdin.buffer.read()))


if __name__ == "__main__":
    main()
