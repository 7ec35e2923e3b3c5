"""gnxi's own test PKI, made with openssl the way gnxi's own script makes it.

Its CA is X.509 **v1**: a self-signed `openssl x509 -req` without an extension file, as many lab
PKIs are (docs/behaviour.md §3: a self-signed v1 or v3 certificate in a bundle is a trust
anchor). The v3 variant differs only by a CA extension file, so both run the same tests.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

SUBJECT = "/C=NZ/ST=Test/L=Test/O=Test/OU=Test/CN={cn}"
CA_V3_EXTENSIONS = (
    "basicConstraints = critical, CA:TRUE\n"
    "keyUsage = critical, keyCertSign, cRLSign\n"
    "subjectKeyIdentifier = hash\n"
)
LEAF_EXTENSIONS = (
    "basicConstraints = CA:FALSE\n"
    "keyUsage = digitalSignature, keyEncipherment\n"
    "extendedKeyUsage = serverAuth, clientAuth\n"
    "subjectAltName = {sans}\n"
)


def openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"openssl {' '.join(args)}:\n{done.stderr}"


@dataclass(frozen=True)
class GnxiCA:
    """ca.crt and ca.key in directory (PKCS#8 RSA-2048 key, PEM certificate)."""

    directory: Path

    @property
    def cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert.read_bytes())

    def issue(self, name: str, sans: str) -> tuple[Path, Path]:
        """(certificate, key) files for name, signed by this CA with the given SAN line."""
        key, csr, cert = (self.directory / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
        extensions = self.directory / f"{name}.ext"
        extensions.write_text(LEAF_EXTENSIONS.format(sans=sans))
        openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
            "-subj", SUBJECT.format(cn=name), "-out", str(csr), cwd=self.directory,
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-CAcreateserial", "-days", "365", "-out", str(cert), "-extfile", str(extensions),
            cwd=self.directory,
        )  # fmt: skip
        return cert, key


def make_gnxi_ca(directory: Path, *, version: int) -> GnxiCA:
    """gnxi's CA: key, CSR, then a self-signed `x509 -req` (v1; v3 with a CA extension file)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = GnxiCA(directory)
    subject = SUBJECT.format(cn="ca")
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca.key), "-subj", subject,
        "-out", str(directory / "ca.csr"), cwd=directory,
    )  # fmt: skip
    extension_args: list[str] = []
    if version == 3:
        (directory / "ca.ext").write_text(CA_V3_EXTENSIONS)
        extension_args = ["-extfile", str(directory / "ca.ext")]
    openssl(
        "x509", "-req", "-signkey", str(ca.key), "-in", str(directory / "ca.csr"),
        "-days", "365", "-out", str(ca.cert), *extension_args, cwd=directory,
    )  # fmt: skip
    expected = x509.Version.v1 if version == 1 else x509.Version.v3
    assert ca.certificate.version == expected, ca.certificate.version
    return ca
