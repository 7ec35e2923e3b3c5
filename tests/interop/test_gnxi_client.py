"""gnxi's reference client (gnoi_cert) against a gnoicertd subprocess.

gnoi_cert signs with gnxi's own test CA, made here with openssl as gnxi's own script makes
it: an X.509 v1 root (docs/behaviour.md §3: a self-signed v1 root is a trust anchor). The
same tests run with a v3 variant of that CA, so the rest of the client's behaviour is covered
while v1 roots are refused. The target starts in its factory state and is provisioned by
`gnoi_cert -op provision` (server-only TLS, username and password); every later operation runs
over mutual TLS with a client certificate gnoi_cert makes from the CA.

gnoi_cert sends Finalize and exits without waiting, so the target may see the cancel first
(docs/behaviour.md §9): each rotation must end consistent, committed or rolled back, with the
store, the served certificate and the audit record agreeing, not necessarily committed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.interop.checks import (
    MutualClient,
    assert_consistent,
    next_terminal_record,
    rsa_bits,
    terminal_records,
)
from tests.interop.gnxi_pki import GnxiCA, make_gnxi_ca
from tests.interop.labs import factory_lab
from tests.interop.peers import PeerRun, run_peer
from tests.support.cli import SERVER_ID, Lab, wait_until
from tests.support.target import PASSWORDS

TARGET_NAME = "localhost"
ROTATIONS = 8


@dataclass(frozen=True)
class GnxiClient:
    lab: Lab
    ca: GnxiCA
    verifier: MutualClient
    provision: PeerRun

    def run(self, op: str, *args: str, code: int = 0) -> PeerRun:
        run = run_peer(
            "gnoi_cert",
            "-target_addr", self.lab.address, "-target_name", TARGET_NAME,
            "-ca", str(self.ca.cert), "-ca_key", str(self.ca.key),
            "-username", "admin", "-password", PASSWORDS["admin"],
            "-time_out", "20s", "-logtostderr", "-op", op, *args,
            cwd=self.ca.directory,
        )  # fmt: skip
        assert run.returncode == code, str(run)
        return run


@pytest.fixture(
    scope="module",
    params=[pytest.param(1, id="v1-ca"), pytest.param(3, id="v3-ca")],
)
def gnxi(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GnxiClient]:
    directory = tmp_path_factory.mktemp(f"gnxi-client-v{request.param}")
    ca = make_gnxi_ca(directory / "pki", version=request.param)
    verifier_cert, verifier_key = ca.issue("verifier", "DNS:verifier")
    verifier = MutualClient(ca.cert, verifier_cert, verifier_key, server_name=TARGET_NAME)
    with factory_lab(directory) as lab:
        client = GnxiClient(lab, ca, verifier, provision=PeerRun((), 0, ""))
        provisioned = client.run("provision", "-cert_id", SERVER_ID)
        wait_until(lambda: bool(lab.audit(event="mode_switch")), what="the mode switch")
        yield GnxiClient(lab, ca, verifier, provision=provisioned)


def test_provision_from_the_factory_state(gnxi: GnxiClient) -> None:
    """-op provision: no server verification, the CA itself as client certificate, a password."""
    lab = gnxi.lab
    assert "Install success" in gnxi.provision.output
    installed = terminal_records(lab, "install", SERVER_ID)
    assert [r["outcome"] for r in installed] == ["committed"]
    assert installed[0]["identity"] == "user admin"
    assert lab.audit(event="mode_switch")[-1]["detail"] == "listener now mutual"
    assert_consistent(lab, gnxi.verifier, SERVER_ID, installed[0])


def test_get(gnxi: GnxiClient) -> None:
    out = gnxi.run("get").output
    assert "GetCertificates" in out
    assert f'{SERVER_ID}: "{TARGET_NAME}"' in out


def test_check(gnxi: GnxiClient) -> None:
    out = gnxi.run("check").output
    assert "CanGenerateCSR:\ntrue" in out


def test_install(gnxi: GnxiClient) -> None:
    lab = gnxi.lab
    out = gnxi.run("install", "-cert_id", "gnxi-installed").output
    assert "Install success" in out
    record = terminal_records(lab, "install", "gnxi-installed")[-1]
    assert record["outcome"] == "committed"
    assert gnxi.verifier.fingerprints(lab.address)["gnxi-installed"] == record["new_fingerprint"]


def test_rotations_end_consistent(gnxi: GnxiClient) -> None:
    lab = gnxi.lab
    outcomes: list[str] = []
    for _ in range(ROTATIONS):
        seen = len(terminal_records(lab, "rotate", SERVER_ID))
        before = lab.served_fingerprint()
        out = gnxi.run("rotate", "-cert_id", SERVER_ID).output
        assert "Rotate success" in out  # printed whether or not the target saw Finalize
        record = next_terminal_record(lab, "rotate", SERVER_ID, seen)
        assert record["old_fingerprint"] == before, record
        if record["outcome"] == "rolled_back":
            # gnoi_cert closes its connection right after queueing Finalize: the target sees a
            # cancel or the end of the stream, never a Finalize that it then drops.
            assert record["reason"] in ("CANCELLED", "NOT_FINALIZED"), record
        assert_consistent(lab, gnxi.verifier, SERVER_ID, record)
        outcomes.append(record["outcome"])
    assert len(outcomes) == ROTATIONS
    # The client still connects with the rotated certificate served.
    gnxi.run("get")


def test_rotate_keeps_a_2048_bit_key(gnxi: GnxiClient) -> None:
    gnxi.run("rotate", "-cert_id", SERVER_ID)
    wait_until(
        lambda: rsa_bits(gnxi.verifier.store(gnxi.lab.address)[SERVER_ID]) >= 2048,
        timeout=5,
        what="a 2048-bit server key",
    )


def test_revoke(gnxi: GnxiClient) -> None:
    lab = gnxi.lab
    gnxi.run("install", "-cert_id", "gnxi-doomed")
    assert "gnxi-doomed" in gnxi.verifier.store(lab.address)
    out = gnxi.run("revoke", "-cert_id", "gnxi-doomed").output
    assert 'Revoked:\n["gnxi-doomed"]' in out
    assert "gnxi-doomed" not in gnxi.verifier.store(lab.address)
    record = lab.audit(event="revoke", certificate_id="gnxi-doomed")[-1]
    assert (record["outcome"], record["detail"]) == ("committed", "removed")
