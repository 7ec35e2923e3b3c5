"""X.509 v1 certificates, as lab PKIs make them (`openssl x509 -req` without extensions).

cryptography only builds v3: build one without extensions, drop its version field from the
DER, and sign the new TBSCertificate with the issuer's key.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _tlv(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, start of contents, end) of the DER element at offset."""
    tag, length = data[offset], data[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    return tag, start, start + length


def _encode(tag: int, contents: bytes) -> bytes:
    size = len(contents)
    if size < 0x80:
        return bytes([tag, size]) + contents
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + contents


def _children(data: bytes, start: int, end: int) -> list[bytes]:
    items = []
    while start < end:
        _, _, stop = _tlv(data, start)
        items.append(data[start:stop])
        start = stop
    return items


def make_v1(
    key: SigningKey,
    subject: str,
    issuer: tuple[x509.Certificate, SigningKey] | None = None,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    """A v1 certificate for key, self-signed when issuer is None (SHA-256 signature)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name = issuer[0].subject if issuer is not None else name
    signer = issuer[1] if issuer is not None else key
    v3 = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(signer, hashes.SHA256())
    )
    der = v3.public_bytes(serialization.Encoding.DER)
    _, cert_start, cert_end = _tlv(der, 0)
    tbs, algorithm, _signature = _children(der, cert_start, cert_end)
    _, tbs_start, tbs_end = _tlv(tbs, 0)
    fields = [f for f in _children(tbs, tbs_start, tbs_end) if f[0] not in (0xA0, 0xA3)]
    new_tbs = _encode(0x30, b"".join(fields))
    if isinstance(signer, rsa.RSAPrivateKey):
        signature = signer.sign(new_tbs, padding.PKCS1v15(), hashes.SHA256())
    else:
        signature = signer.sign(new_tbs, ec.ECDSA(hashes.SHA256()))
    body = new_tbs + algorithm + _encode(0x03, b"\x00" + signature)
    certificate = x509.load_der_x509_certificate(_encode(0x30, body))
    assert certificate.version is x509.Version.v1
    return certificate
