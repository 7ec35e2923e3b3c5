"""GetCertificates' models live in client/listing.py; every documented import path still works."""

from __future__ import annotations

import gnoicert
from gnoicert.client import listing, models


def test_models_and_the_package_re_export_the_listing_types() -> None:
    for name in ("CertificateInfo", "CertificateListing", "Endpoint"):
        assert getattr(models, name) is getattr(listing, name)
    assert gnoicert.CertificateInfo is listing.CertificateInfo
    assert gnoicert.Endpoint is listing.Endpoint
