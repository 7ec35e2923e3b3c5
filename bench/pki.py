"""PKI timings that shape the target's design: key generation, CSRs, chain checks, the store.

Run from the repository root: `.venv/bin/python bench/pki.py`. Prints a plain text table of
medians (min and max alongside). Writes only to a temporary directory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gnoicert.pki import crypto
from gnoicert.pki.chain import check_leaf
from gnoicert.pki.store import KeyOrigin, Store

Row = tuple[str, int, list[float]]


def measure(label: str, runs: int, action: Callable[[], object]) -> Row:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return label, runs, times


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(
    key: crypto.PrivateKey,
    cn: str,
    issuer_key: crypto.PrivateKey,
    issuer_cn: str,
    *,
    ca: bool,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(issuer_cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=not ca and isinstance(key, rsa.RSAPrivateKey),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        ).add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def bench_crypto(quick: bool) -> list[Row]:
    runs = {1024: 9, 2048: 7, 3072: 5, 4096: 3}
    if quick:
        runs = {1024: 3, 2048: 3, 3072: 2, 4096: 1}
    rows: list[Row] = []
    for size, count in runs.items():

        def generate(size: int = size) -> object:
            return crypto.generate_rsa_key(size)

        rows.append(measure(f"RSA-{size} key generation", count, generate))
    rows.append(
        measure("EC P-256 key generation", 50, lambda: ec.generate_private_key(ec.SECP256R1()))
    )
    key = crypto.generate_rsa_key(2048)
    subject = crypto.CsrSubject(
        common_name="router1.example.net",
        country="US",
        organization="Example",
        ip_address="192.0.2.1",
        email_id="noc@example.net",
    )
    rows.append(
        measure("CSR build (RSA-2048, SHA-256)", 50, lambda: crypto.build_csr(key, subject))
    )

    root_key = crypto.generate_rsa_key(2048)
    mid_key = ec.generate_private_key(ec.SECP256R1())
    root = _issue(root_key, "Bench Root", root_key, "Bench Root", ca=True)
    mid = _issue(mid_key, "Bench Intermediate", root_key, "Bench Root", ca=True)
    leaf = _issue(key, "router1.example.net", mid_key, "Bench Intermediate", ca=False)
    check_leaf(leaf, [mid], [root])  # it must pass, or the figure means nothing
    rows.append(
        measure("chain check, 3 levels (check_leaf)", 50, lambda: check_leaf(leaf, [mid], [root]))
    )
    return rows


def _material(count: int) -> list[tuple[bytes, bytes]]:
    """RSA-2048 pairs for store entities (reused across IDs: the store never compares keys)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    pairs = []
    for i in range(count):
        key = crypto.generate_rsa_key(2048)
        certificate = _issue(key, f"entity{i}.example.net", ca_key, "Bench CA", ca=False)
        pairs.append((_pem(certificate), crypto.private_key_to_pem(key)))
    return pairs


def bench_store(root: Path, secret: bytes | None, label: str) -> list[Row]:
    pairs = _material(5)
    state_dir = root / label
    store = Store.open(state_dir, key_secret=secret)

    def commit(cert_id: str, n: int) -> None:
        with store.begin() as txn:
            txn.lock(cert_id)
            cert_pem, key_pem = pairs[n % len(pairs)]
            txn.put(
                cert_id,
                certificate_pem=cert_pem,
                chain_pem=b"",
                private_key_pem=key_pem,
                key_origin=KeyOrigin.CLIENT,
            )
            txn.commit()

    counter = iter(range(10**6))
    rows = [
        measure(
            f"store commit, 1 new entity, store of 0-49 ({label})",
            50,
            lambda: commit(f"grow{next(counter)}", next(counter)),
        )
    ]
    for i in range(50):
        commit(f"fill{i}", i)
    rows.append(
        measure(
            f"store commit, replace 1 of 100 entities ({label})",
            50,
            lambda: commit(f"fill{next(counter) % 50}", next(counter)),
        )
    )
    store.close()

    def reopen() -> None:
        Store.open(state_dir, key_secret=secret).close()

    rows.append(measure(f"store open with 100 entities ({label})", 10, reopen))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke test)")
    args = parser.parse_args()
    rows = bench_crypto(args.quick)
    with tempfile.TemporaryDirectory(prefix="gnoicert-bench-") as tmp:
        rows += bench_store(Path(tmp), None, "keys in clear")
        rows += bench_store(Path(tmp), b"bench key secret", "key_secret")
    width = max(len(label) for label, _, _ in rows)
    print(f"{'operation':<{width}}  {'runs':>4}  {'median ms':>10}  {'min ms':>9}  {'max ms':>9}")
    print("-" * (width + 40))
    for label, runs, times in rows:
        ms = [t * 1000 for t in times]
        print(
            f"{label:<{width}}  {runs:>4}  {statistics.median(ms):>10.2f}  "
            f"{min(ms):>9.2f}  {max(ms):>9.2f}"
        )


if __name__ == "__main__":
    main()
