"""Checks on the signed material before anything is sent, so a target never has to refuse it.

The same ground the target covers at load (docs/behaviour.md §3: key, chain, validity, CA flag,
EKU), plus what only the client knows: the address it dials must be in the SANs (the rotate
validation step would fail otherwise).
"""

from __future__ import annotations

import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from gnoicert.client.certinfo import lenient_names, san_strings, subject_text
from gnoicert.client.models import CheckResult, CheckStatus, PreflightReport
from gnoicert.client.steps import Material
from gnoicert.pki.chain import CLOCK_SKEW, acts_as_ca, chain_verifies
from gnoicert.pki.crypto import PrivateKey, PublicKey

# A certificate this close to its end is loaded, with a warning: it will need rotating soon.
EXPIRY_WARNING = dt.timedelta(days=30)


def run_preflight(
    material: Material,
    *,
    key: PrivateKey | None = None,
    csr_public_key: PublicKey | None = None,
    dial_name: str | None = None,
    require_san: bool = False,
    now: dt.datetime | None = None,
) -> PreflightReport:
    """Every check, in order; the report is not ok when one of them failed.

    `key` is the private key this client made, `csr_public_key` the key of a target-made CSR;
    `dial_name` is the name the client checks the server against (server-name override, else
    the host dialled). A SAN miss fails only with `require_san`, else it is a warning.
    """
    now = now or dt.datetime.now(dt.UTC)
    leaf = material.leaf
    checks = [
        check_key(leaf, key=key, csr_public_key=csr_public_key),
        check_chain(material),
        check_validity(leaf, now),
        check_not_ca(leaf),
        check_usage(leaf),
        check_san(leaf, dial_name, require_san=require_san),
    ]
    if material.bundle:
        checks.append(check_bundle(material.bundle))
    return PreflightReport.from_checks(checks)


def _result(name: str, status: CheckStatus, detail: str) -> CheckResult:
    return CheckResult(name=name, status=status, detail=detail)


def check_key(
    leaf: x509.Certificate, *, key: PrivateKey | None, csr_public_key: PublicKey | None
) -> CheckResult:
    if key is not None:
        expected, what = key.public_key(), "the private key being sent"
    elif csr_public_key is not None:
        expected, what = csr_public_key, "the key of the target's CSR"
    else:
        return _result("key", "skip", "no key or CSR to compare with")
    if leaf.public_key() == expected:
        return _result("key", "pass", f"the certificate carries {what}")
    return _result("key", "fail", f"the certificate does not carry {what}")


def check_chain(material: Material) -> CheckResult:
    anchors = material.anchors
    if not anchors:
        return _result(
            "chain", "skip", "no CA given: the target checks the chain against its own bundle"
        )
    where = "the CA bundle being sent" if material.bundle else "the given CA"
    with lenient_names():
        verified = chain_verifies(material.leaf, material.intermediates, anchors)
    if verified:
        return _result("chain", "pass", f"chains to {where}")
    return _result("chain", "fail", f"does not chain to {where}")


def check_validity(leaf: x509.Certificate, now: dt.datetime) -> CheckResult:
    not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if not_before > now + CLOCK_SKEW:
        return _result("validity", "fail", f"not valid before {not_before.isoformat()}")
    if not_after <= now:
        return _result("validity", "fail", f"expired at {not_after.isoformat()}")
    if not_after - now < EXPIRY_WARNING:
        days = (not_after - now).days
        return _result(
            "validity",
            "warn",
            f"expires within {EXPIRY_WARNING.days} days ({days} days left, "
            f"until {not_after.isoformat()})",
        )
    return _result("validity", "pass", f"valid until {not_after.isoformat()}")


def check_not_ca(leaf: x509.Certificate) -> CheckResult:
    try:
        constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return _result("ca", "pass", "not a CA certificate")
    if constraints.ca:
        return _result("ca", "fail", "is a CA certificate; a leaf certificate is needed")
    return _result("ca", "pass", "not a CA certificate")


def check_usage(leaf: x509.Certificate) -> CheckResult:
    """EKU, when present, must allow TLS server use; key usage must allow signing."""
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is not None and not (
        ExtendedKeyUsageOID.SERVER_AUTH in eku or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku
    ):
        return _result("usage", "fail", "the extended key usage excludes TLS server use")
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not (usage.digital_signature or usage.key_encipherment):
        return _result("usage", "fail", "the key usage allows neither signing nor encipherment")
    names = []
    if eku is not None:
        names = [oid._name for oid in eku]
    return _result("usage", "pass", "allows TLS: " + (", ".join(names) if names else "no EKU"))


def san_covers(leaf: x509.Certificate, name: str) -> bool:
    """True when a SAN matches name: an IP SAN for an address, a DNS SAN (one-label wildcard
    allowed) for a host name; RFC 6125, no common-name fallback."""
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        address = None
    if address is not None:
        return address in sans.get_values_for_type(x509.IPAddress)
    wanted = name.rstrip(".").lower()
    for dns in sans.get_values_for_type(x509.DNSName):
        pattern = dns.rstrip(".").lower()
        if pattern == wanted:
            return True
        if pattern.startswith("*.") and "." in wanted:
            head, _, rest = wanted.partition(".")
            if head and rest == pattern[2:]:
                return True
    return False


def check_san(leaf: x509.Certificate, dial_name: str | None, *, require_san: bool) -> CheckResult:
    if not dial_name:
        return _result("san", "skip", "no address to check")
    if san_covers(leaf, dial_name):
        return _result("san", "pass", f"SANs cover {dial_name}")
    listed = ", ".join(san_strings(leaf.extensions)) or "none"
    kind = "IP" if _is_ip(dial_name) else "DNS"
    return _result(
        "san",
        "fail" if require_san else "warn",
        f"no {kind} SAN matches {dial_name} (SANs: {listed})",
    )


def check_bundle(bundle: tuple[x509.Certificate, ...]) -> CheckResult:
    not_ca = [subject_text(c) for c in bundle if not acts_as_ca(c)]
    if not_ca:
        return _result("bundle", "warn", "not CA certificates: " + "; ".join(not_ca))
    return _result("bundle", "pass", f"{len(bundle)} CA certificate(s)")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
