"""A --sign-command for the fleet tests: signs with the lab CA (argv[1]). Devices named in
argv[2] (comma-separated) get a certificate for 127.0.0.2 instead of 127.0.0.1, so their rotate
validation fails; a device named in argv[3] announces itself (GATE/waiting-NAME) and waits for
GATE/go before answering, so a test can interrupt a run while that device is in flight."""

from __future__ import annotations

import datetime as dt
import ipaddress
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID


def main() -> None:
    ca_dir, wrong = Path(sys.argv[1]), sys.argv[2].split(",")
    held = sys.argv[3] if len(sys.argv) > 3 else ""
    csr = x509.load_pem_x509_csr(sys.stdin.buffer.read())
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    name = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    address = "127.0.0.2" if name in wrong else "127.0.0.1"
    if name == held:
        gate = Path(sys.argv[4])
        (gate / f"waiting-{name}").touch()
        deadline = time.monotonic() + 60
        while not (gate / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca_cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    sys.stdout.buffer.write(certificate.public_bytes(serialization.Encoding.PEM))


if __name__ == "__main__":
    main()
