"""gnoic (the gNOI CLI operators use) against a gnoicertd subprocess.

The daemon starts in its factory state; the module fixture bootstraps it the way an operator
would with gnoic alone: load-ca over server-only TLS (the factory certificate pinned), then
install `gnoi-server` (the local_certificate) over mutual TLS. Every later test checks what
gnoic did three ways: GetCertificates, a fresh TLS handshake and the audit log.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.interop.checks import (
    MutualClient,
    assert_consistent,
    next_terminal_record,
    rsa_bits,
    terminal_records,
)
from tests.interop.labs import factory_lab, write
from tests.interop.peers import PeerRun, run_peer
from tests.support.cli import SERVER_ID, Lab, wait_until
from tests.support.pki import TestCA, cert_pem, key_pem, rsa_key
from tests.support.target import PASSWORDS

SERVER_CSR = ("--common-name", "localhost", "--ip-address", "127.0.0.1")


@dataclass(frozen=True)
class Gnoic:
    """gnoic with fixed connection options (mutual TLS once bootstrapped)."""

    lab: Lab
    files: Path
    tls_ca: Path
    client: tuple[Path, Path] | None

    def run(self, *args: str, code: int = 0) -> PeerRun:
        argv = ["-a", self.lab.address, "-u", "admin", "-p", PASSWORDS["admin"]]
        argv += ["--tls-ca", str(self.tls_ca), "--timeout", "20s"]
        if self.client is not None:
            argv += ["--tls-cert", str(self.client[0]), "--tls-key", str(self.client[1])]
        argv += ["--ca-cert", str(self.files / "ca.pem"), "--ca-key", str(self.files / "ca.key")]
        run = run_peer("gnoic", *argv, "cert", *args, cwd=self.files)
        assert run.returncode == code, str(run)
        return run


@dataclass(frozen=True)
class Bootstrapped:
    gnoic: Gnoic
    verifier: MutualClient
    load_ca: PeerRun
    install: PeerRun

    @property
    def lab(self) -> Lab:
        return self.gnoic.lab


@pytest.fixture(scope="module")
def bootstrapped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bootstrapped]:
    directory = tmp_path_factory.mktemp("gnoic")
    ca = TestCA(name="gnoic operator root", key=rsa_key())
    chain, key = ca.client_credentials()
    with factory_lab(directory) as lab:
        files = lab.workdir
        write(files / "ca.pem", ca.bundle_pem)
        write(files / "ca.key", key_pem(ca.key))
        client = (write(files / "client.pem", chain), write(files / "client.key", key))
        factory = Gnoic(lab, files, lab.factory_pem, None)
        load_ca = factory.run("load-ca", "--ca-certs", str(files / "ca.pem"))
        # The bundle switches the listener to mutual TLS once the RPC has ended.
        wait_until(lambda: bool(lab.audit(event="mode_switch")), what="the mode switch")
        install = Gnoic(lab, files, lab.factory_pem, client).run(
            "install", "--id", SERVER_ID, *SERVER_CSR
        )
        yield Bootstrapped(
            gnoic=Gnoic(lab, files, files / "ca.pem", client),
            verifier=MutualClient(files / "ca.pem", *client),
            load_ca=load_ca,
            install=install,
        )


def last(records: list[dict[str, Any]]) -> dict[str, Any]:
    assert records, "no audit record"
    return records[-1]


def test_bootstrap_from_the_factory_state(bootstrapped: Bootstrapped) -> None:
    lab = bootstrapped.lab
    assert "Install RPC successful" in bootstrapped.install.output
    assert last(lab.audit(event="bundle_load"))["outcome"] == "committed"
    assert last(lab.audit(event="mode_switch"))["detail"] == "listener now mutual"
    installed = last(terminal_records(lab, "install", SERVER_ID))
    assert installed["outcome"] == "committed"
    assert assert_consistent(lab, bootstrapped.verifier, SERVER_ID, installed)


def test_get_certs(bootstrapped: Bootstrapped) -> None:
    listed = bootstrapped.gnoic.run("get-certs").output
    assert SERVER_ID in listed
    assert "CN=localhost" in listed
    assert "127.0.0.1" in listed


def test_can_generate_csr(bootstrapped: Bootstrapped) -> None:
    out = bootstrapped.gnoic.run("can-generate-csr").output
    assert "| true" in out, out


def test_install_with_a_target_key(bootstrapped: Bootstrapped) -> None:
    lab, verifier = bootstrapped.lab, bootstrapped.verifier
    bootstrapped.gnoic.run("install", "--id", "gnoic-target-key", "--common-name", "tk.example")
    record = last(terminal_records(lab, "install", "gnoic-target-key"))
    assert record["outcome"] == "committed"
    stored = verifier.store(lab.address)["gnoic-target-key"]
    assert verifier.fingerprints(lab.address)["gnoic-target-key"] == record["new_fingerprint"]
    assert rsa_bits(stored) == 2048  # gnoic's install asks min_key_size 2048


def test_install_with_gen_csr(bootstrapped: Bootstrapped) -> None:
    """--gen-csr: gnoic makes the key and sends it in KeyPair (docs/wire.md)."""
    lab, verifier = bootstrapped.lab, bootstrapped.verifier
    bootstrapped.gnoic.run(
        "install", "--id", "gnoic-client-key", "--common-name", "ck.example", "--gen-csr"
    )
    record = last(terminal_records(lab, "install", "gnoic-client-key"))
    assert record["outcome"] == "committed"
    assert verifier.fingerprints(lab.address)["gnoic-client-key"] == record["new_fingerprint"]


def rotate_server(bootstrapped: Bootstrapped, *extra: str) -> dict[str, Any]:
    """One gnoic rotate of the served certificate; it must commit and be served."""
    lab = bootstrapped.lab
    seen = len(terminal_records(lab, "rotate", SERVER_ID))
    before = lab.served_fingerprint()
    run = bootstrapped.gnoic.run("rotate", "--id", SERVER_ID, *SERVER_CSR, *extra)
    assert "Rotate RPC successful" in run.output
    record = next_terminal_record(lab, "rotate", SERVER_ID, seen)
    assert record["outcome"] == "committed", record
    assert record["old_fingerprint"] == before
    assert assert_consistent(lab, bootstrapped.verifier, SERVER_ID, record) != before
    return record


def served_bits(bootstrapped: Bootstrapped) -> int:
    return rsa_bits(bootstrapped.verifier.store(bootstrapped.lab.address)[SERVER_ID])


def test_rotate_with_gnoic_defaults_commits_and_is_served(bootstrapped: Bootstrapped) -> None:
    rotate_server(bootstrapped)


def test_rotate_with_gnoic_defaults_keeps_a_2048_bit_key(bootstrapped: Bootstrapped) -> None:
    rotate_server(bootstrapped)
    assert served_bits(bootstrapped) >= 2048


def test_rotate_with_min_key_size_2048(bootstrapped: Bootstrapped) -> None:
    rotate_server(bootstrapped, "--min-key-size", "2048")
    assert served_bits(bootstrapped) == 2048


def test_revoke_by_id(bootstrapped: Bootstrapped) -> None:
    lab, verifier = bootstrapped.lab, bootstrapped.verifier
    bootstrapped.gnoic.run("install", "--id", "gnoic-doomed", "--common-name", "doomed.example")
    assert "gnoic-doomed" in verifier.store(lab.address)
    out = bootstrapped.gnoic.run("revoke", "--id", "gnoic-doomed").output
    assert "gnoic-doomed revoked successfully" in out
    assert "gnoic-doomed" not in verifier.store(lab.address)
    record = last(lab.audit(event="revoke", certificate_id="gnoic-doomed"))
    assert (record["outcome"], record["detail"]) == ("committed", "removed")


def test_load_ca(bootstrapped: Bootstrapped) -> None:
    lab, files = bootstrapped.lab, bootstrapped.gnoic.files
    other = write(files / "other-ca.pem", cert_pem(TestCA(name="another lab root").root))
    loads = len(lab.audit(event="bundle_load", outcome="committed"))
    bootstrapped.gnoic.run("load-ca", "--ca-certs", f"{files / 'ca.pem'},{other}")
    records = lab.audit(event="bundle_load", outcome="committed")
    assert len(records) == loads + 1
    assert (records[-1]["outcome"], records[-1]["detail"]) == ("committed", "2 CA certificates")
    # The operator is not locked out: a new connection with the same client certificate works.
    assert SERVER_ID in bootstrapped.verifier.store(lab.address)
    bootstrapped.gnoic.run("get-certs")


def test_twenty_rotations_make_twenty_commits(bootstrapped: Bootstrapped) -> None:
    lab = bootstrapped.lab
    seen = len(terminal_records(lab, "rotate", SERVER_ID))
    fingerprints = [rotate_server(bootstrapped)["new_fingerprint"] for _ in range(20)]
    records = terminal_records(lab, "rotate", SERVER_ID)[seen:]
    assert [r["outcome"] for r in records] == ["committed"] * 20
    assert len(set(fingerprints)) == 20
    assert lab.served_fingerprint() == fingerprints[-1]
