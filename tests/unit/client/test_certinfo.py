"""Names with an empty country (gnxi's CSRs): read without cryptography's UserWarning.

pyproject's filterwarnings = ["error"] makes any warning that escapes the library fail here.
"""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gnoicert.client.ca import LocalCA
from gnoicert.client.certinfo import describe_certificate, load_csr, subject_text


def _empty_country_name() -> x509.Name:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "", _validate=False),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ""),
                x509.NameAttribute(NameOID.COMMON_NAME, "gnxi"),
            ]
        )


def _gnxi_like_csr() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(_empty_country_name())
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_a_csr_with_an_empty_country_is_read_without_a_warning() -> None:
    assert subject_text(load_csr(_gnxi_like_csr())) == "CN=gnxi,O=,C="


def test_a_certificate_signed_for_it_is_described_without_a_warning(tmp_path: Path) -> None:
    ca = LocalCA.init(tmp_path / "ca", key_type="ecdsa")
    signed = ca.sign_csr(_gnxi_like_csr())
    info = describe_certificate("gx", signed.certificate_pem, now=dt.datetime.now(dt.UTC))
    assert (info.subject, info.common_name, info.parse_error) == ("CN=gnxi,O=,C=", "gnxi", "")
