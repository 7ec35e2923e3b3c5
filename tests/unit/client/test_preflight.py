"""Preflight: each check passes on good material and fails on the material it exists for."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from gnoicert.client.ca import LocalCA
from gnoicert.client.models import CheckResult, CsrParams, PreflightReport, SignedCertificate
from gnoicert.client.preflight import run_preflight, san_covers
from gnoicert.client.steps import split_material
from gnoicert.pki.crypto import build_csr
from tests.unit.conftest import DAY, NOW, ec_key, make_cert, pem


def _by_name(report: PreflightReport) -> dict[str, CheckResult]:
    return {check.name: check for check in report.checks}


def _material_from(
    ca: LocalCA, sans: tuple[str, ...] = ("localhost",), ip: str = "127.0.0.1"
) -> tuple[ec.EllipticCurvePrivateKey, SignedCertificate]:
    key = ec_key()
    params = CsrParams(common_name=sans[0] if sans else "", ip_address=ip)
    signed = ca.sign(build_csr(key, params.subject()))
    return key, signed


class TestGoodMaterial:
    def test_everything_passes(self, chained_ca: LocalCA) -> None:
        key, signed = _material_from(chained_ca)
        material = split_material(signed, ca_bundle_pem=chained_ca.bundle_pem)
        report = run_preflight(material, key=key, dial_name="127.0.0.1", require_san=True)
        assert report.ok
        assert {c.name: c.status for c in report.checks} == {
            "key": "pass",
            "chain": "pass",
            "validity": "pass",
            "ca": "pass",
            "usage": "pass",
            "san": "pass",
            "bundle": "pass",
        }
        assert "CA bundle being sent" in _by_name(report)["chain"].detail

    def test_csr_key_counts_as_the_key(self, root_ca: LocalCA) -> None:
        key, signed = _material_from(root_ca)
        report = run_preflight(split_material(signed), csr_public_key=key.public_key())
        assert _by_name(report)["key"].status == "pass"
        assert "CSR" in _by_name(report)["key"].detail
        assert "given CA" in _by_name(report)["chain"].detail


class TestRefusals:
    def test_wrong_key(self, root_ca: LocalCA) -> None:
        _, signed = _material_from(root_ca)
        report = run_preflight(split_material(signed), key=ec_key())
        assert not report.ok
        assert [c.name for c in report.failures()] == ["key"]

    def test_chain_must_reach_the_bundle_being_sent(
        self, root_ca: LocalCA, other_ca: LocalCA
    ) -> None:
        key, signed = _material_from(root_ca)
        report = run_preflight(split_material(signed, ca_bundle_pem=other_ca.bundle_pem), key=key)
        assert [c.name for c in report.failures()] == ["chain"]

    def test_no_anchor_skips_the_chain_check(self, root_ca: LocalCA) -> None:
        key, signed = _material_from(root_ca)
        leaf_only = SignedCertificate(certificate_pem=signed.certificate_pem)
        report = run_preflight(split_material(leaf_only), key=key)
        assert report.ok
        assert _by_name(report)["chain"].status == "skip"

    @pytest.mark.parametrize(
        ("not_before", "not_after", "word"),
        [
            (NOW - 30 * DAY, NOW - DAY, "expired"),
            (NOW + DAY, NOW + 30 * DAY, "not valid before"),
        ],
    )
    def test_validity(self, not_before: dt.datetime, not_after: dt.datetime, word: str) -> None:
        key = ec_key()
        cert = make_cert(key, sans=["localhost"], not_before=not_before, not_after=not_after)
        report = run_preflight(
            split_material(SignedCertificate(certificate_pem=pem(cert))), key=key
        )
        check = _by_name(report)["validity"]
        assert check.status == "fail"
        assert word in check.detail

    def test_clock_skew_is_tolerated(self) -> None:
        key = ec_key()
        cert = make_cert(key, not_before=NOW + dt.timedelta(minutes=1))
        report = run_preflight(
            split_material(SignedCertificate(certificate_pem=pem(cert))), key=key, now=NOW
        )
        assert _by_name(report)["validity"].status == "pass"

    def test_a_ca_certificate_is_not_a_leaf(self) -> None:
        key = ec_key()
        cert = make_cert(key, ca=True)
        report = run_preflight(
            split_material(SignedCertificate(certificate_pem=pem(cert))), key=key
        )
        assert _by_name(report)["ca"].status == "fail"

    def test_client_only_eku_is_refused(self) -> None:
        key = ec_key()
        cert = make_cert(key, eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
        report = run_preflight(
            split_material(SignedCertificate(certificate_pem=pem(cert))), key=key
        )
        assert _by_name(report)["usage"].status == "fail"

    def test_no_eku_allows_tls(self) -> None:
        key = ec_key()
        cert = make_cert(key, eku=None)
        report = run_preflight(
            split_material(SignedCertificate(certificate_pem=pem(cert))), key=key
        )
        assert _by_name(report)["usage"].status == "pass"

    def test_san_miss_is_a_warning_unless_required(self, root_ca: LocalCA) -> None:
        key, signed = _material_from(root_ca, ("r1.example.net",), ip="")
        material = split_material(signed)
        warned = run_preflight(material, key=key, dial_name="192.0.2.1")
        assert warned.ok
        assert _by_name(warned)["san"].status == "warn"
        refused = run_preflight(material, key=key, dial_name="192.0.2.1", require_san=True)
        assert not refused.ok
        assert "no IP SAN matches 192.0.2.1" in _by_name(refused)["san"].detail

    def test_bundle_entries_should_be_cas(self, root_ca: LocalCA) -> None:
        key, signed = _material_from(root_ca)
        not_a_ca = make_cert(ec_key(), common_name="stray leaf")
        material = split_material(signed, ca_bundle_pem=root_ca.bundle_pem + pem(not_a_ca))
        check = _by_name(run_preflight(material, key=key))["bundle"]
        assert check.status == "warn"
        assert "stray leaf" in check.detail


class TestSanCovers:
    @pytest.mark.parametrize(
        ("sans", "name", "covered"),
        [
            (["192.0.2.1"], "192.0.2.1", True),
            (["192.0.2.1"], "192.0.2.2", False),
            (["r1.example.net"], "192.0.2.1", False),  # an IP needs an IP SAN
            (["r1.example.net"], "R1.Example.Net.", True),
            (["*.example.net"], "r1.example.net", True),
            (["*.example.net"], "a.r1.example.net", False),  # one label only
            (["*.example.net"], "example.net", False),
            (["2001:db8::1"], "2001:db8:0::1", True),
            ([], "r1.example.net", False),  # no CN fallback
        ],
    )
    def test_matching(self, sans: list[str], name: str, covered: bool) -> None:
        cert = make_cert(ec_key(), common_name=name, sans=sans)
        assert san_covers(cert, name) is covered
