"""Every subcommand over mutual TLS, after the first CA bundle switched the daemon to it; and
the rotation of the gRPC server's own certificate, with the validation step passing and
failing.

The daemon starts in its factory state with local_certificate = "gnoi-server": the bootstrap
installs that ID over server-only TLS (factory certificate as --ca-file) together with the
first CA bundle (an RSA root plus intermediate made by `gnoicert ca init`), after which every
client needs a certificate from the bundle (`gnoicert ca issue`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import grpc.aio
import pytest

from gnoicert.client.ca import LocalCA
from gnoicert.client.channel import ChannelOptions
from gnoicert.client.models import CsrParams, RotateSpec
from gnoicert.client.workflows import CertClient
from tests.cli.suite import CliSuite, install_ecdsa
from tests.support.cli import (
    LOCAL_SERVER,
    ONLY_2048,
    SERVER_ID,
    CliOperator,
    CliRun,
    Lab,
    cli_environment,
    expect,
    gnoicert_command,
    run_cli,
    wait_until,
)
from tests.support.target import PASSWORDS

GRPC_LINES = [LOCAL_SERVER, ONLY_2048]
SERVER_CSR = ("--cn", "localhost", "--ip", "127.0.0.1")


@dataclass(frozen=True)
class Bootstrap:
    operator: CliOperator
    installed: dict[str, Any]


@pytest.fixture(scope="module")
def bootstrap(lab: Lab) -> Bootstrap:
    ca_dir = lab.workdir / "ca"
    made = expect(
        run_cli("ca", "init", str(ca_dir), "--intermediate", "--key-type", "rsa", "--json"), 0
    ).json()
    assert made["key_type"] == "RSA-2048"
    assert made["intermediate_subject"]
    client = (lab.workdir / "operator.pem", lab.workdir / "operator.key")
    expect(
        run_cli(
            "ca", "issue", str(ca_dir), "operator", "--out-cert", str(client[0]),
            "--out-key", str(client[1]),
        ),
        0,
    )  # fmt: skip
    installed = expect(
        run_cli(
            "install", SERVER_ID, "--ca-dir", str(ca_dir), *SERVER_CSR,
            "--ca-bundle", str(ca_dir / "bundle.pem"), "--require-san",
            *lab.connection(lab.factory_pem), "--json",
        ),
        0,
    ).json()  # fmt: skip
    mutual = lab.connection(ca_dir / "ca.pem", client=client)
    # The mode switch needs a new listener once the Install has ended.
    wait_until(lambda: run_cli("time", *mutual).returncode == 0, what="mutual TLS")
    return Bootstrap(CliOperator(lab=lab, ca_dir=ca_dir, connection=mutual), installed)


@pytest.fixture(scope="module")
def operator(bootstrap: Bootstrap) -> CliOperator:
    return bootstrap.operator


def served_and_listed(operator: CliOperator) -> tuple[str, str]:
    return operator.lab.served_fingerprint(), operator.listing()[SERVER_ID]["fingerprint"]


class TestMutualTls(CliSuite):
    def test_the_first_bundle_switched_the_daemon_to_mutual_tls(self, bootstrap: Bootstrap) -> None:
        operator, installed = bootstrap.operator, bootstrap.installed
        assert (installed["key_source"], installed["ca_bundle_size"]) == ("target", 2)
        assert {c["name"]: c["status"] for c in installed["preflight"]["checks"]}["san"] == "pass"
        assert served_and_listed(operator) == (installed["fingerprint"],) * 2
        endpoints = operator.listing()[SERVER_ID]["endpoints"]
        assert endpoints == [{"type": "EP_DAEMON", "endpoint": "grpc-server"}]
        assert operator.lab.audit(event="mode_switch")

        # Without a client certificate the server now closes the connection: say why.
        lab = operator.lab
        refused = expect(run_cli("time", *lab.connection(operator.ca_dir / "ca.pem"), "--json"), 1)
        assert "closed the connection right after connecting" in refused.stderr
        assert "pass --cert and --key" in refused.json()["error"]["hint"]

    def test_rotate_the_server_certificate_with_validation(self, operator: CliOperator) -> None:
        old, _ = served_and_listed(operator)
        rotated = operator.json("rotate", SERVER_ID, "--ca-dir", str(operator.ca_dir), *SERVER_CSR)
        assert rotated["finalized"] is True
        assert rotated["fingerprint"] != old
        checks = {c["name"]: c["status"] for c in rotated["validation"]}
        assert checks == {"served-certificate": "pass", "probe": "pass"}
        assert served_and_listed(operator) == (rotated["fingerprint"],) * 2
        committed = operator.lab.audit(
            event="rotate", certificate_id=SERVER_ID, outcome="committed"
        )
        assert committed[-1]["new_fingerprint"] == rotated["fingerprint"]

        text = operator.run("rotate", SERVER_ID, "--ca-dir", str(operator.ca_dir), *SERVER_CSR)
        assert "served-certificate: a new connection gets the new certificate" in text.stdout
        assert "and finalized" in text.stdout

    def test_rotate_whose_validation_fails_is_cancelled_and_rolled_back(
        self, operator: CliOperator
    ) -> None:
        old, listed = served_and_listed(operator)
        assert old == listed
        rollbacks = len(operator.lab.audit(certificate_id=SERVER_ID, outcome="rolled_back"))
        # No IP SAN: the new certificate does not cover 127.0.0.1, the address dialled.
        # --no-preflight lets it reach the target and the validation step.
        run = operator.run(
            "rotate", SERVER_ID, "--ca-dir", str(operator.ca_dir), "--cn", "localhost",
            "--no-preflight", "--json", code=3,
        )  # fmt: skip
        error = run.json()["error"]
        assert (run.json()["exit_code"], error["kind"]) == (3, "validation")
        checks = {c["name"]: c["status"] for c in error["checks"]}
        assert checks["served-certificate"] == "fail"
        assert checks["rollback"] == "pass"
        assert "hint: check that the new certificate's SANs cover the address" in run.stderr
        assert "nothing was committed" in run.stderr

        assert served_and_listed(operator) == (old, old)
        assert len(operator.lab.audit(certificate_id=SERVER_ID, outcome="rolled_back")) > rollbacks
        operator.run("time")

    def test_preflight_stops_a_rotation_that_would_fail(self, operator: CliOperator) -> None:
        old, _ = served_and_listed(operator)
        run = operator.run(
            "rotate", SERVER_ID, "--ca-dir", str(operator.ca_dir), "--cn", "localhost",
            "--json", code=3,
        )  # fmt: skip
        error = run.json()["error"]
        assert error["kind"] == "preflight"
        assert "san: no IP SAN matches 127.0.0.1" in error["message"]
        assert served_and_listed(operator) == (old, old)

    def test_dry_run_of_the_server_certificate(self, operator: CliOperator) -> None:
        old, _ = served_and_listed(operator)
        dry = operator.json(
            "rotate", SERVER_ID, "--ca-dir", str(operator.ca_dir), *SERVER_CSR, "--dry-run"
        )
        assert (dry["dry_run"], dry["finalized"], dry["preflight"]["ok"]) == (True, False, True)
        assert served_and_listed(operator) == (old, old)

    async def test_revoke_of_an_id_held_by_a_rotation_fails_for_that_id(
        self, operator: CliOperator
    ) -> None:
        """`gnoicert revoke` runs inside the rotate validation step, while the Rotate stream
        holds the ID: the target reports it per ID, the command exits 1."""
        install_ecdsa(operator, "held")
        runs: list[CliRun] = []
        argv = [*gnoicert_command(), "revoke", "held", *operator.connection, "--json"]

        async def revoke_meanwhile(channel: grpc.aio.Channel, metadata: Any) -> str:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=cli_environment(),
            )
            out, err = await process.communicate()
            assert process.returncode is not None
            runs.append(CliRun(tuple(argv), process.returncode, out.decode(), err.decode()))
            return "revoke attempted"

        lab, connection = operator.lab, operator.connection
        options = ChannelOptions.from_files(
            lab.address,
            ca_file=operator.ca_dir / "ca.pem",
            cert_file=connection[connection.index("--cert") + 1],
            key_file=connection[connection.index("--key") + 1],
            username="admin",
            password=PASSWORDS["admin"],
        )
        spec = RotateSpec(
            certificate_id="held",
            csr=CsrParams(common_name="held.example.net", key_type="ecdsa"),
            signer=LocalCA.open(operator.ca_dir),
            check_served_certificate=False,
            require_san=False,
            probe=revoke_meanwhile,
        )
        async with await CertClient.connect(options) as client:
            rotated = await client.rotate(spec)

        result = expect(runs[0], 1).json()
        assert (result["ok"], result["revoked"]) == (False, [])
        assert [e["certificate_id"] for e in result["errors"]] == ["held"]
        assert operator.listing()["held"]["fingerprint"] == rotated.fingerprint
