"""Input the target would refuse, refused before dialling: certificate IDs, CSR fields, IPs.

The rules are the daemon's own (pki/crypto.py), so a typo costs no connection, no password
prompt and no audit record on the device; the error names the option as it was typed.
"""

from __future__ import annotations

import argparse
import ipaddress

from gnoicert.client.errors import InputError
from gnoicert.common.constants import CA_BUNDLE_ID
from gnoicert.pki.crypto import (
    CsrSubject,
    subject_fields,
    validate_certificate_id,
    validate_csr_subject,
)
from gnoicert.pki.errors import InvalidCertificateId, InvalidCsrParameters


def check_arguments(args: argparse.Namespace) -> None:
    """Raise InputError (exit 2) for the first argument no target would accept."""
    for cert_id in _certificate_ids(args):
        try:
            validate_certificate_id(cert_id)
        except InvalidCertificateId as exc:
            raise InputError(str(exc), field="certificate_id", check="invalid") from None
    if hasattr(args, "country"):  # the commands with CSR parameters
        _check_csr_fields(args)
    for address in getattr(args, "ip", None) or ():  # ca issue --ip
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise InputError(
                f"--ip {address!r} is not an IPv4 or IPv6 address (such as 192.0.2.1 or "
                "2001:db8::1)",
                field="ip_address",
                check="invalid",
            ) from None


def _certificate_ids(args: argparse.Namespace) -> list[str]:
    if getattr(args, "certificate_id", None) is not None:
        return [args.certificate_id]
    # Revoking the CA bundle by its reserved ID is how a target leaves mutual TLS.
    return [i for i in getattr(args, "certificate_ids", None) or () if i != CA_BUNDLE_ID]


def _check_csr_fields(args: argparse.Namespace) -> None:
    try:
        validate_csr_subject(CsrSubject(**subject_fields(args)))
    except InvalidCsrParameters as exc:
        message = str(exc)
        # The rules name the field ("country 'USA' is not ..."): say it as the option.
        field = next((f for f in subject_fields(args) if message.startswith(f"{f} ")), "")
        if field:
            message = f"--{field.replace('_', '-')}{message[len(field) :]}"
        raise InputError(message, field=field, check="invalid") from None
