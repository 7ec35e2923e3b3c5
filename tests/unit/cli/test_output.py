"""Every result model renders as JSON (parsed back here) and as text for people."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
from typing import Any

import pytest

from gnoicert.cli.documents import success_document
from gnoicert.cli.output import dumps, make_console, render, render_listing, to_jsonable
from gnoicert.client import models
from gnoicert.client.ca import LocalCA
from tests.support.schemas import validate_document

WHEN = dt.datetime(2027, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
PASS = models.CheckResult(name="key", status="pass", detail="matches")
WARN = models.CheckResult(name="san", status="warn", detail="no [bold]SAN[/] for 192.0.2.1")
REPORT = models.PreflightReport.from_checks([PASS, WARN])
INFO = models.CertificateInfo(
    certificate_id="gnoi-server",
    subject="CN=r1.example.net",
    common_name="r1.example.net",
    sans=("DNS:r1.example.net", "IP:192.0.2.1"),
    issuer="CN=ca",
    key_type="RSA",
    key_size=2048,
    not_before=WHEN - dt.timedelta(days=1),
    not_after=WHEN,
    days_left=12,
    fingerprint="ab" * 32,
    serial="1f",
    chain_length=2,
    endpoints=(models.Endpoint(type="EP_DAEMON", endpoint="grpc-server"),),
    modified=WHEN,
    certificate_pem="-----BEGIN CERTIFICATE-----\n...",
)
BROKEN = dataclasses.replace(INFO, certificate_id="bad", parse_error="not a certificate")

SAMPLES: list[Any] = [
    models.InstallResult(
        target="t:1",
        certificate_id="a",
        fingerprint="ab" * 32,
        subject="CN=a",
        not_after=WHEN,
        key_source="target",
        ca_bundle_size=2,
        preflight=REPORT,
        dry_run=False,
        elapsed_s=0.25,
    ),
    models.RotateResult(
        target="t:1",
        certificate_id="a",
        fingerprint="cd" * 32,
        subject="CN=a",
        not_after=WHEN,
        key_source="client",
        ca_bundle_size=0,
        preflight=REPORT,
        validation=(PASS,),
        finalized=True,
        dry_run=False,
        elapsed_s=0.5,
    ),
    models.CertificateListing(target="t:1", certificates=(INFO, BROKEN), expiring_within_days=30),
    models.RevokeResult(
        target="t:1",
        revoked=("a",),
        errors=(models.RevocationError(certificate_id="b", message="busy"),),
        ok=False,
    ),
    models.GeneratedCsr(
        target="t:1",
        certificate_id="a",
        csr_pem="-----BEGIN CERTIFICATE REQUEST-----\n",
        subject="CN=a",
        sans=(),
        key_type="RSA",
        key_size=2048,
    ),
    models.LoadResult(
        target="t:1",
        certificate_id="a",
        fingerprint="ef" * 32,
        key_source="client",
        ca_bundle_size=1,
        preflight=REPORT,
        dry_run=True,
    ),
    models.CaBundleResult(target="t:1", size=1, fingerprints=("01" * 32,), subjects=("CN=ca",)),
    models.CsrCapability(
        target="t:1",
        key_type="KT_RSA",
        certificate_type="CT_X509",
        key_size=2048,
        can_generate=True,
    ),
    models.TargetTime(target="t:1", time_ns=1, time=WHEN, round_trip_s=0.001, offset_s=-0.2),
    models.CaInfo(
        directory="ca",
        bundle_path="ca/bundle.pem",
        root_subject="CN=root",
        root_fingerprint="02" * 32,
        intermediate_subject="CN=int",
        key_type="ECDSA-256",
        not_after=WHEN,
    ),
    models.IssuedCertificate(
        subject="CN=a",
        sans=("DNS:a",),
        fingerprint="03" * 32,
        not_after=WHEN,
        certificate_pem="-----BEGIN CERTIFICATE-----\n",
        chain_pem="",
        path="a.pem",
    ),
    models.DemoResult(
        steps=(models.DemoStep(title="start", detail="ok", elapsed_s=0.1),), ok=True, elapsed_s=1.0
    ),
]


def _covered() -> set[str]:
    return {type(sample).__name__ for sample in SAMPLES}


def test_every_result_model_has_a_sample() -> None:
    results = {
        name
        for name, value in vars(models).items()
        if dataclasses.is_dataclass(value)
        and name.endswith(("Result", "Listing", "Csr", "Capability", "Time", "Info", "Certificate"))
        and name not in {"CertificateInfo", "SignedCertificate", "CheckResult"}
    }
    assert results <= _covered()


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: type(s).__name__)
def test_json_round_trip(sample: Any) -> None:
    parsed = json.loads(dumps(sample))
    assert set(parsed) == {field.name for field in dataclasses.fields(sample)}
    for field in dataclasses.fields(sample):
        value = getattr(sample, field.name)
        if isinstance(value, dt.datetime):
            assert dt.datetime.fromisoformat(parsed[field.name]) == value
        elif isinstance(value, str | int | float | bool) or value is None:
            assert parsed[field.name] == value


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: type(s).__name__)
def test_human_output(sample: Any) -> None:
    stream = io.StringIO()
    render(sample, make_console(stream))
    text = stream.getvalue()
    assert text.strip()
    target = getattr(sample, "target", None)
    if target and not isinstance(sample, models.GeneratedCsr):
        assert target in text


def test_nested_models_become_objects() -> None:
    parsed = json.loads(dumps(SAMPLES[1]))
    assert parsed["validation"] == [{"name": "key", "status": "pass", "detail": "matches"}]
    assert parsed["preflight"]["ok"] is True
    listing = json.loads(dumps(SAMPLES[2]))
    assert listing["certificates"][0]["endpoints"] == [
        {"type": "EP_DAEMON", "endpoint": "grpc-server"}
    ]
    assert listing["certificates"][0]["modified"] == WHEN.isoformat()


def test_input_specs_serialise_without_the_signer(root_ca: LocalCA) -> None:
    spec = models.RotateSpec(certificate_id="a", csr=models.CsrParams(), signer=root_ca)
    data = to_jsonable(spec)
    assert "signer" not in data
    assert data["csr"]["key_size"] == 2048
    assert data["probe"] is None


def test_markup_in_details_is_printed_literally() -> None:
    stream = io.StringIO()
    render(SAMPLES[0], make_console(stream))
    assert "[bold]SAN[/]" in stream.getvalue()


def test_listing_table_and_details() -> None:
    listing = SAMPLES[2]
    table = io.StringIO()
    render_listing(listing, make_console(table), details=False)
    assert "gnoi-server" in table.getvalue()
    assert "grpc-server" in table.getvalue()
    assert "not a certificate" in table.getvalue()
    header = next(line for line in table.getvalue().splitlines() if "Common name" in line)
    cells = [cell.strip() for cell in header.strip("┃ ").split("┃")]
    assert cells == [
        "ID",
        "Not after",
        "Days left",
        "Key",
        "SHA-256",
        "SANs",
        "Common name",
        "Endpoints",
    ]
    row = next(line for line in table.getvalue().splitlines() if "gnoi-server" in line)
    assert [cell.strip() for cell in row.strip("│ ").split("│")][1:5] == [
        "2027-01-02",
        "12",
        "RSA-2048",
        "ab" * 6,
    ]
    details = io.StringIO()
    render_listing(listing, make_console(details), details=True)
    assert "ab" * 32 in details.getvalue()
    assert "2 certificate(s) expiring within 30 days" in details.getvalue()


_COMMAND_OF = {
    models.InstallResult: "install",
    models.RotateResult: "rotate",
    models.CertificateListing: "get",
    models.RevokeResult: "revoke",
    models.GeneratedCsr: "generate-csr",
    models.LoadResult: "load",
    models.CaBundleResult: "load-ca",
    models.CsrCapability: "can-generate-csr",
    models.TargetTime: "time",
    models.CaInfo: "ca-init",
    models.IssuedCertificate: "ca-sign",
    models.DemoResult: "demo",
}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("details", [False, True])
def test_every_document_matches_its_schema(sample: Any, details: bool) -> None:
    """Also the commands the CLI suites do not run with --json (demo: a whole lifecycle)."""
    command = _COMMAND_OF[type(sample)]
    code = 0 if getattr(sample, "ok", True) else 1
    document = success_document(command, to_jsonable(sample), exit_code=code, details=details)
    assert validate_document(document) == command
    assert (document["schema"], document["ok"], document["exit_code"]) == (1, code == 0, code)


def test_get_details_adds_the_parsed_fields() -> None:
    listing = to_jsonable(SAMPLES[2])
    summary = success_document("get", listing, exit_code=0)["certificates"][0]
    details = success_document("get", listing, exit_code=0, details=True)["certificates"][0]
    assert set(details) - set(summary) == {
        "subject",
        "issuer",
        "not_before",
        "serial",
        "chain_length",
        "certificate_pem",
    }


def test_every_renderer_names_a_result_model() -> None:
    # Renderers are looked up by class name (so `get` need not import every model): a renamed
    # model must not silently fall back to the plain dump.
    import inspect

    from gnoicert.cli import output

    model_names = {name for name, value in vars(models).items() if inspect.isclass(value)}
    assert set(output._RENDERERS) <= model_names
