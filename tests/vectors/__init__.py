"""Small committed test vectors made with the OpenSSL 3.0 command line (not with cryptography).

- rsa1024_pkcs1.pem: RSA-1024, PKCS#1 "RSA PRIVATE KEY" (what a fallback client sends).
- rsa1024_pkcs1_encrypted.pem: the same format, encrypted ("Proc-Type: 4,ENCRYPTED").
- rsa1024_pkcs8_encrypted.pem: RSA-1024, "ENCRYPTED PRIVATE KEY".
- rsa512_pkcs1.pem: RSA-512, too small to accept.
- ec_p256_sec1.pem / ec_p521_sec1.pem: SEC1 "EC PRIVATE KEY"; P-521 is refused.
- ed25519_pkcs8.pem: Ed25519, refused (grpcio cannot serve it).
- rsa1024_csr.der: a DER CSR for rsa1024_pkcs1.pem, as one client puts in KeyPair.public_key.
- openssl_root.pem: an "openssl req -x509" root (basicConstraints, no keyUsage), valid
  2026-11-27 to 2126-11-03; openssl_leaf.pem: a serverAuth leaf for ec_p256_sec1.pem issued by it.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def load_vector(name: str) -> bytes:
    """The bytes of the committed vector file name (a plain file name in this directory)."""
    path = _HERE / name
    if path.parent != _HERE or not path.is_file():
        raise FileNotFoundError(f"no test vector named {name!r}")
    return path.read_bytes()
