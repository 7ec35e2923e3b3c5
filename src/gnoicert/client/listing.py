"""What GetCertificates gives back, parsed: the only models `gnoicert get` needs.

Apart from models.py (which re-exports them) because each frozen dataclass costs about half a
millisecond to create at import, and `get` would otherwise pay for every other command's
results (issue 13's start-up budget).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateInfo:
    """One certificate on the target, parsed. `parse_error` is set when the PEM was unusable."""

    certificate_id: str
    subject: str
    common_name: str
    sans: tuple[str, ...]
    issuer: str
    key_type: str
    key_size: int
    not_before: dt.datetime | None
    not_after: dt.datetime | None
    days_left: int | None
    fingerprint: str
    serial: str
    chain_length: int
    endpoints: tuple[Endpoint, ...]
    modified: dt.datetime | None
    certificate_pem: str
    parse_error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateListing:
    """GetCertificates as the CLI shows it (possibly filtered by days left)."""

    target: str
    certificates: tuple[CertificateInfo, ...]
    expiring_within_days: int | None = None
    saved_to: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """An entity on the target that uses a certificate (Endpoint.Type name and identifier)."""

    type: str
    endpoint: str
