"""The command's safety rails against a real gnoicertd whose gRPC server uses `gnoi-server`:
a unary load onto the server's certificate is refused, a wrong-name certificate is repaired by
rotate --expect-name, rotating another ID needs no --no-tls-check, bundle changes say what the
next command needs, and a certificate about to expire is flagged.

The daemon follows the implicit mode rule (docs/behaviour.md §1): server-only TLS while its CA
bundle is empty, mutual TLS once it holds one. The fixture installs `gnoi-server` with the first
bundle, as an operator bootstraps a device; every test leaves the daemon in mutual TLS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from gnoicert.common.constants import CA_BUNDLE_ID
from tests.cli.suite import install_ecdsa, issue_client_key
from tests.support.cli import (
    LOCAL_SERVER,
    ONLY_2048,
    SERVER_ID,
    CliOperator,
    Lab,
    expect,
    run_cli,
    wait_until,
)

GRPC_LINES = [LOCAL_SERVER, ONLY_2048]
SERVER_CSR = ("--cn", "localhost", "--ip", "127.0.0.1")


@dataclass(frozen=True)
class Site:
    operator: CliOperator  # mutual TLS: the operator's client certificate from the CA
    without_certificate: CliOperator  # the same, without the client certificate


@pytest.fixture(scope="module")
def site(lab: Lab) -> Site:
    ca_dir = lab.workdir / "ca"
    expect(run_cli("ca", "init", str(ca_dir), "--key-type", "ecdsa"), 0)
    factory = CliOperator(lab=lab, ca_dir=ca_dir, connection=lab.connection(lab.factory_pem))
    factory.json(
        "install", SERVER_ID, "--ca-dir", str(ca_dir), *SERVER_CSR, "--require-san",
        "--ca-bundle", str(ca_dir / "bundle.pem"),
    )  # fmt: skip
    bare = CliOperator(lab=lab, ca_dir=ca_dir, connection=lab.connection(ca_dir / "ca.pem"))
    client = issue_client_key(bare, lab.workdir, "operator")
    mutual = lab.connection(ca_dir / "ca.pem", client=client)
    wait_until(lambda: run_cli("time", *mutual).returncode == 0, what="mutual TLS")
    return Site(CliOperator(lab=lab, ca_dir=ca_dir, connection=mutual), bare)


def test_load_onto_the_servers_certificate_is_refused_unless_forced_and_rotate_repairs_it(
    site: Site, tmp_path: Path
) -> None:
    operator = site.operator
    listed = operator.listing()[SERVER_ID]
    assert listed["endpoints"] == [{"type": "EP_DAEMON", "endpoint": "grpc-server"}]
    csr, wrong = tmp_path / "wrong.csr", tmp_path / "wrong.pem"
    operator.run("generate-csr", SERVER_ID, "--cn", "wrong.example", "--out", str(csr))
    expect(run_cli("ca", "sign", str(operator.ca_dir), str(csr), "--out", str(wrong)), 0)

    refused = operator.run("load", SERVER_ID, str(wrong), "--json", code=3)
    error = refused.json()["error"]
    assert "is the gRPC server's certificate" in error["message"]
    assert "use rotate" in error["hint"]
    assert "--force" in error["hint"]
    # --no-preflight does not lift it: only --force does.
    operator.run("load", SERVER_ID, str(wrong), "--no-preflight", code=3)
    assert operator.listing()[SERVER_ID]["fingerprint"] == listed["fingerprint"]
    assert operator.lab.served_fingerprint() == listed["fingerprint"]

    forced = operator.json("load", SERVER_ID, str(wrong), "--force")
    checks = {c["name"]: c["status"] for c in forced["preflight"]["checks"]}
    assert checks["certificate-id"] == "warn"
    # What the issue saw: the server now presents a certificate for the wrong name.
    operator.run("time", code=1)
    assert operator.lab.served_fingerprint() == forced["fingerprint"]

    # The server now presents a certificate for wrong.example: dial with that name, and have
    # the validation session expect the right one.
    repaired = operator.json(
        "rotate", SERVER_ID, "--ca-dir", str(operator.ca_dir), *SERVER_CSR,
        "--server-name", "wrong.example", "--expect-name", "127.0.0.1",
    )  # fmt: skip
    assert repaired["finalized"] is True
    validation = {c["name"]: c["status"] for c in repaired["validation"]}
    assert validation == {"served-certificate": "pass", "probe": "pass"}
    assert operator.lab.served_fingerprint() == repaired["fingerprint"]
    operator.run("time")  # the address dialled is in the SANs again


def test_rotating_another_certificate_infers_no_tls_check(site: Site) -> None:
    operator = site.operator
    installed = install_ecdsa(operator, "safety-other")
    rotated = operator.json(
        "rotate", "safety-other", "--ca-dir", str(operator.ca_dir), "--cn", "other.example"
    )  # fmt: skip
    assert rotated["finalized"] is True
    assert rotated["fingerprint"] != installed["fingerprint"]
    assert {c["name"]: c["status"] for c in rotated["validation"]} == {
        "served-certificate": "skip",
        "probe": "pass",
    }
    assert "not the gRPC server's certificate" in rotated["notes"][0]
    text = operator.run(
        "rotate", "safety-other", "--ca-dir", str(operator.ca_dir), "--cn", "other.example"
    ).stdout
    assert "(--no-tls-check inferred)" in text


def test_bundle_changes_say_what_the_next_command_needs(site: Site) -> None:
    operator, bare = site.operator, site.without_certificate
    bundle = str(operator.ca_dir / "bundle.pem")
    switches = len(operator.lab.audit(event="mode_switch"))
    bare.run("time", code=1)  # mutual TLS: refused without a client certificate

    revoked = operator.json("revoke", CA_BUNDLE_ID)
    assert (revoked["revoked"], revoked["not_present"]) == ([CA_BUNDLE_ID], [])
    assert revoked["client_certificates_required"] is False
    bare.run("time")

    installed = bare.json(
        "install", "safety-with-bundle", "--ca-dir", str(operator.ca_dir), "--cn", "b.example",
        "--key-type", "ecdsa", "--ca-bundle", bundle,
    )  # fmt: skip
    assert installed["client_certificates_required"] is True
    bare.run("time", code=1)

    text = operator.run("revoke", CA_BUNDLE_ID).stdout
    assert "the target no longer requires client certificates" in text
    loaded = bare.run("load-ca", bundle).stdout
    assert "the target now requires a client certificate" in loaded
    assert "--cert FILE --key FILE" in loaded
    bare.run("time", code=1)
    operator.run("time")
    assert len(operator.lab.audit(event="mode_switch")) == switches + 4


def test_a_certificate_expiring_soon_is_flagged(site: Site, tmp_path: Path) -> None:
    operator = site.operator
    assert operator.json("get", "--expiring-within", "30")["certificates"] == []
    installed = operator.json(
        "install", "safety-short", "--ca-dir", str(operator.ca_dir), "--cn", "short.example",
        "--key-type", "ecdsa", "--days", "10",
    )  # fmt: skip
    validity = {c["name"]: c for c in installed["preflight"]["checks"]}["validity"]
    assert validity["status"] == "warn"
    assert "expires within 30 days" in validity["detail"]

    saved = tmp_path / "expiring"
    soon = operator.run("get", "--expiring-within", "30", "--save", str(saved), code=4).stdout
    assert "safety-short" in soon
    assert [p.name for p in saved.iterdir()] == ["safety-short.pem"]
    operator.run("revoke", "safety-short")
