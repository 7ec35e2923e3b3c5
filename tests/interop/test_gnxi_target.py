"""gnoicert (library and CLI) against gnxi's reference target, gnoi_target.

Provisioned mode (-ca/-cert/-key/-cert_id): the operator's CA from `LocalCA.init` signed the
server's RSA key (gnoi_target makes every CSR with that one key, so it must be RSA) and the
operator's client certificate. gnoi_target's CSRs carry no SAN, so certificates the server will
present are signed by sign_with_sans.py, an operator CA policy that sets them. gnoi_target lacks
System/Time, GenerateCSR, LoadCertificate and LoadCertificateAuthorityBundle: gnoicert must say
so clearly (docs/behaviour.md §9).

Bootstrapping mode (no credentials): a self-signed "gNOI server" certificate, any client
certificate; the first Install with a CA bundle provisions it. gnoi_target can deadlock on that
first Install: the test restarts it once and tries again (it keeps nothing across a restart).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from gnoicert.client.ca import LocalCA
from gnoicert.client.channel import ChannelOptions
from gnoicert.client.models import CsrParams, RotateSpec, SignedCertificate
from gnoicert.client.sync import SyncCertClient
from gnoicert.proto import cert_pb2, cert_pb2_grpc
from tests.interop import sign_with_sans
from tests.interop.labs import write
from tests.interop.peers import GnxiTarget, start_gnxi_target
from tests.support.cli import CliRun, expect, run_cli, wait_until
from tests.support.daemon import served_pem
from tests.support.target import served_fingerprint

SERVER_ID = "srv"
SERVER_CSR = ("--cn", "localhost", "--ip", "127.0.0.1")
BOOTSTRAP_NAME = "gNOI server"  # the DNS SAN of gnoi_target's self-signed certificate


@dataclass(frozen=True)
class Operator:
    """An operator's files for one gnoi_target: the CA directory and a client certificate."""

    directory: Path
    ca: LocalCA
    client: tuple[Path, Path]

    @property
    def ca_dir(self) -> Path:
        return self.directory / "ca"

    @property
    def sign_command(self) -> str:
        return shlex.join([sys.executable, sign_with_sans.__file__, str(self.ca_dir)])

    def connection(self, target: GnxiTarget, *, ca_file: Path | None = None) -> tuple[str, ...]:
        return (
            "--target", target.address, "--ca-file", str(ca_file or self.ca_dir / "ca.pem"),
            "--cert", str(self.client[0]), "--key", str(self.client[1]), "--timeout", "10",
        )  # fmt: skip

    def options(self, target: GnxiTarget) -> ChannelOptions:
        return ChannelOptions.from_files(
            target.address,
            ca_file=self.ca_dir / "ca.pem",
            cert_file=self.client[0],
            key_file=self.client[1],
        )


def make_operator(directory: Path) -> Operator:
    ca = LocalCA.init(directory / "ca", key_type="rsa")
    key, signed = ca.issue("operator")
    client = (
        write(directory / "operator.pem", signed.certificate_pem),
        write(directory / "operator.key", key),
    )
    return Operator(directory, ca, client)


@dataclass(frozen=True)
class Provisioned:
    operator: Operator
    target: GnxiTarget

    def cli(self, *args: str, code: int = 0) -> CliRun:
        run = expect(run_cli(*args, *self.operator.connection(self.target)), code)
        # gnoi_target's CSRs have an empty C=, O= and OU=: the names are read without
        # cryptography's warning reaching the operator's terminal.
        assert "Warning" not in run.stderr, str(run)
        return run

    def listing(self) -> dict[str, dict[str, Any]]:
        return {
            c["certificate_id"]: c
            for c in self.cli("get", "--details", "--json").json()["certificates"]
        }


@dataclass(frozen=True)
class Lab:
    """The operator and the server credentials gnoi_target starts with in provisioned mode."""

    operator: Operator
    server: tuple[Path, Path]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    directory = tmp_path_factory.mktemp("gnxi-target")
    operator = make_operator(directory)
    key, signed = operator.ca.issue(
        "srv", dns_names=["localhost"], ip_addresses=["127.0.0.1"], key_type="rsa"
    )
    server = (
        write(directory / "srv.pem", signed.certificate_pem),
        write(directory / "srv.key", key),
    )
    return Lab(operator, server)


@pytest.fixture
def provisioned(lab: Lab, tmp_path: Path) -> Iterator[Provisioned]:
    """A fresh gnoi_target per test: it serves an arbitrary one of its certificates once it
    holds several, so each test starts from the one server certificate."""
    target = start_gnxi_target(
        tmp_path / "target",
        "-ca", str(lab.operator.ca_dir / "ca.pem"), "-cert", str(lab.server[0]),
        "-key", str(lab.server[1]), "-cert_id", SERVER_ID,
    )  # fmt: skip
    try:
        yield Provisioned(lab.operator, target)
    finally:
        target.stop()


def test_get(provisioned: Provisioned) -> None:
    listed = provisioned.listing()
    assert list(listed) == [SERVER_ID]
    assert listed[SERVER_ID]["fingerprint"] == served_fingerprint(provisioned.target.address)
    text = provisioned.cli("get", "--output", "table").stdout
    assert SERVER_ID in text
    assert "RSA-2048" in text


def test_get_with_the_library(provisioned: Provisioned) -> None:
    with SyncCertClient(provisioned.operator.options(provisioned.target)) as client:
        infos = client.get_certificates()
    assert [info.certificate_id for info in infos] == [SERVER_ID]


def test_can_generate_csr(provisioned: Provisioned) -> None:
    answer = provisioned.cli("can-generate-csr", "--json").json()
    assert (answer["can_generate"], answer["key_size"]) == (True, 2048)


def test_install(provisioned: Provisioned) -> None:
    installed = provisioned.cli(
        "install", "gx-installed", "--sign-command", provisioned.operator.sign_command,
        "--cn", "installed.example", "--json",
    ).json()  # fmt: skip
    assert installed["key_source"] == "target"  # gnoi_target accepts no client key pair
    assert provisioned.listing()["gx-installed"]["fingerprint"] == installed["fingerprint"]


def test_rotate_with_the_cli(provisioned: Provisioned) -> None:
    old = served_fingerprint(provisioned.target.address)
    run = provisioned.cli(
        "rotate", SERVER_ID, "--sign-command", provisioned.operator.sign_command, *SERVER_CSR,
        "--json",
    )  # fmt: skip
    rotated = run.json()
    assert rotated["finalized"] is True
    checks = {c["name"]: c for c in rotated["validation"]}
    assert checks["served-certificate"]["status"] == "pass"
    assert checks["probe"]["status"] == "pass"
    assert "Time" in checks["probe"]["detail"]  # names the RPC whose answer proved it
    assert rotated["fingerprint"] != old
    assert served_fingerprint(provisioned.target.address) == rotated["fingerprint"]
    assert provisioned.listing()[SERVER_ID]["fingerprint"] == rotated["fingerprint"]


class SansSigner:
    """The library's Signer protocol over the same CA policy as the --sign-command."""

    def __init__(self, ca_dir: Path) -> None:
        self.ca_dir = ca_dir

    def sign(self, csr_pem: bytes) -> SignedCertificate:
        return SignedCertificate(
            certificate_pem=sign_with_sans.sign_with_sans(self.ca_dir, csr_pem)
        )


async def get_certificates_probe(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]
) -> str:
    """A probe gnoi_target can answer (it has no System/Time)."""
    stub = cert_pb2_grpc.CertificateManagementStub(channel)
    response = await stub.GetCertificates(cert_pb2.GetCertificatesRequest(), metadata=metadata)
    return f"GetCertificates answered ({len(response.certificate_info)} certificates)"


def test_rotate_with_the_library_and_its_own_probe(provisioned: Provisioned) -> None:
    operator, target = provisioned.operator, provisioned.target
    old = served_fingerprint(target.address)
    spec = RotateSpec(
        certificate_id=SERVER_ID,
        csr=CsrParams(common_name="localhost", ip_address="127.0.0.1"),
        signer=SansSigner(operator.ca_dir),
        probe=get_certificates_probe,
    )
    with SyncCertClient(operator.options(target)) as client:
        rotated = client.rotate(spec)
    assert rotated.finalized
    assert {c.name: c.status for c in rotated.validation} == {
        "served-certificate": "pass",
        "probe": "pass",
    }
    assert rotated.fingerprint != old
    assert served_fingerprint(target.address) == rotated.fingerprint
    assert provisioned.listing()[SERVER_ID]["fingerprint"] == rotated.fingerprint


def test_no_client_certificate_gets_the_mutual_tls_hint(provisioned: Provisioned) -> None:
    """Go's TLS stack refuses a missing client certificate with an alert grpcio reports as
    "Unwrap failed (TSI_DATA_CORRUPTED)", not as a closed socket."""
    trust = provisioned.operator.ca_dir / "ca.pem"
    run = expect(run_cli("get", "--target", provisioned.target.address, "--ca-file", str(trust)), 1)
    assert "TSI_DATA_CORRUPTED" in run.stderr  # the status, printed once
    assert "hint: the server may require a client certificate" in run.stderr
    assert "pass --cert and --key" in run.stderr


def test_revoke(provisioned: Provisioned) -> None:
    sign = provisioned.operator.sign_command
    provisioned.cli("install", "gx-doomed", "--sign-command", sign, "--cn", "doomed.example")
    assert "gx-doomed" in provisioned.listing()
    revoked = provisioned.cli("revoke", "gx-doomed", "--json").json()
    assert revoked["revoked"] == ["gx-doomed"]
    assert "gx-doomed" not in provisioned.listing()
    # gnoi_target answers an unknown ID with a per-ID error: reported, exit 1.
    unknown = provisioned.cli("revoke", "gx-never-there", code=1)
    assert "not revoked gx-never-there" in unknown.stdout + unknown.stderr


@pytest.mark.parametrize(
    ("rpc", "command"),
    [
        ("Time", ("time",)),
        ("GenerateCSR", ("generate-csr", "gx-pending", "--cn", "pending.example")),
        ("LoadCertificate", ("load", "gx-loaded", "{cert}")),
        ("LoadCertificateAuthorityBundle", ("load-ca", "{bundle}")),
    ],
)
def test_a_clear_message_for_each_rpc_gnxi_lacks(
    provisioned: Provisioned, rpc: str, command: tuple[str, ...]
) -> None:
    files = {
        "cert": str(provisioned.operator.client[0]),
        "bundle": str(provisioned.operator.ca_dir / "bundle.pem"),
    }
    args = [part.format(**files) for part in command]
    run = provisioned.cli(*args, "--json", code=1)
    error = run.json()["error"]
    assert (error["code"], error["rpc"]) == ("UNIMPLEMENTED", rpc)
    assert error["message"] == f"the target does not implement {rpc}"
    assert f"gnoicert: the target does not implement {rpc}" in run.stderr
    assert "this device does not support that gNOI operation" in run.stderr


def bootstrap_install(operator: Operator, target: GnxiTarget, trust: Path) -> CliRun | None:
    """The first Install with the CA bundle; None when gnoi_target hung on it."""
    try:
        return run_cli(
            "install", SERVER_ID, "--sign-command", operator.sign_command, *SERVER_CSR,
            "--ca-bundle", str(operator.ca_dir / "bundle.pem"),
            *operator.connection(target, ca_file=trust), "--server-name", BOOTSTRAP_NAME,
            "--json", timeout=30,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return None


def test_bootstrapping_mode(tmp_path: Path) -> None:
    operator = make_operator(tmp_path)
    target = start_gnxi_target(tmp_path / "target")
    try:
        trust = write(tmp_path / "bootstrap.pem", served_pem(target.address))
        installed = bootstrap_install(operator, target, trust)
        if installed is None or installed.returncode != 0:
            # The known gnoi_target deadlock on its first provisioning Install: restart once.
            target.stop()
            target = start_gnxi_target(tmp_path / "target-restarted")
            trust = write(tmp_path / "bootstrap.pem", served_pem(target.address))
            installed = bootstrap_install(operator, target, trust)
        assert installed is not None, "gnoi_target hung on its first Install twice"
        result = expect(installed, 0).json()
        assert result["ca_bundle_size"] == 1
        # gnoi_target restarts its server in provisioned mode with the new certificate.
        wait_until(
            lambda: served_fingerprint(target.address) == result["fingerprint"],
            timeout=15,
            what="gnoi_target to serve the installed certificate",
        )
        listed = expect(run_cli("get", "--json", *operator.connection(target)), 0).json()
        assert [c["certificate_id"] for c in listed["certificates"]] == [SERVER_ID]
        assert listed["certificates"][0]["fingerprint"] == result["fingerprint"]
    finally:
        target.stop()
