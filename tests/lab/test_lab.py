"""`gnoicert lab` as a real process: provisioned devices over mutual TLS with the inventory's
files, reuse of its directory, factory-state labs, and one device run alone by gnoicertd."""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from gnoicert.client.ca import LocalCA
from gnoicert.client.errors import RpcFailed
from gnoicert.client.models import CsrParams, InstallSpec
from gnoicert.client.workflows import CertClient
from tests.support.lab import GNOICERT, RunningLab, file_mode, lab_starter, start_lab
from tests.support.target import served_certificate_der, spawn_target

__all__ = ("lab_starter",)  # the fixture, imported for this module's tests

LabStarter = Callable[..., RunningLab]


def _names(count: int) -> list[str]:
    return [f"dev{number:04d}" for number in range(1, count + 1)]


async def _certificate_ids(lab: RunningLab, name: str) -> list[str]:
    async with await CertClient.connect(lab.options(name)) as client:
        return [info.certificate_id for info in await client.get_certificates()]


async def test_a_lab_of_20_serves_every_device_over_mutual_tls(tmp_path: Path) -> None:
    lab = RunningLab(tmp_path / "lab", 20)
    try:
        assert lab.ready_line.startswith("ready: 20 of 20 devices serving")
        assert str(tmp_path / "lab" / "inventory.yaml") in lab.ready_line
        assert sorted(lab.inventory.targets) == _names(20)
        addresses = {lab.address(name) for name in _names(20)}
        assert len(addresses) == 20
        assert all(address.startswith("127.0.0.1:") for address in addresses)
        for secret in ("operator.key", "password"):
            assert file_mode(tmp_path / "lab" / secret) == 0o600
        defaults = lab.inventory.defaults
        assert defaults["username"] == "ops"
        assert defaults["certificate_id"] == "gnoi-server"

        listings = await asyncio.gather(*(_certificate_ids(lab, name) for name in _names(20)))
        assert listings == [["gnoi-server"]] * 20

        # Each device serves its own certificate, naming it and 127.0.0.1, from the lab CA.
        der = await asyncio.to_thread(served_certificate_der, lab.address("dev0007"))
        served = x509.load_der_x509_certificate(der)
        assert served.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "dev0007"
        sans = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == ["dev0007"]
        assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
        assert served.issuer == LocalCA.open(tmp_path / "lab" / "ca").intermediate.subject  # type: ignore[union-attr]

        # Mutual TLS: without the operator certificate the handshake is refused.
        with pytest.raises(RpcFailed) as refused:
            async with await CertClient.connect(
                lab.options("dev0001", cert_file=None, key_file=None)
            ) as client:
                await client.get_certificates()
        assert refused.value.code is grpc.StatusCode.UNAVAILABLE
    finally:
        code = lab.stop(signal.SIGTERM)
    assert code == 0
    assert lab.lines[-1] == "stopped"


async def test_sigint_stops_every_device_and_exits_0(lab_starter: LabStarter) -> None:
    lab = lab_starter(2)
    address = lab.address("dev0002")
    assert lab.stop(signal.SIGINT) == 0
    with pytest.raises(ConnectionRefusedError):
        await asyncio.to_thread(served_certificate_der, address)


async def test_reusing_the_directory_keeps_devices_state_and_secrets(tmp_path: Path) -> None:
    workdir = tmp_path / "lab"
    with start_lab(workdir, 3) as lab:
        first = lab.inventory
        password = lab.password
        ca_root = (workdir / "ca" / "ca.pem").read_bytes()
        async with await CertClient.connect(lab.options("dev0002")) as client:
            await client.install(
                InstallSpec(
                    certificate_id="extra",
                    csr=CsrParams(common_name="extra.lab", key_type="ecdsa"),
                    signer=LocalCA.open(workdir / "ca"),
                )
            )
    with start_lab(workdir, 3) as again:
        assert again.inventory == first  # same devices at the same addresses
        assert again.password == password
        assert (workdir / "ca" / "ca.pem").read_bytes() == ca_root
        assert sorted(await _certificate_ids(again, "dev0002")) == ["extra", "gnoi-server"]
        assert await _certificate_ids(again, "dev0001") == ["gnoi-server"]
        assert again.stop() == 0


async def test_a_bigger_count_adds_devices_to_an_existing_lab(tmp_path: Path) -> None:
    workdir = tmp_path / "lab"
    with start_lab(workdir, 2) as lab:
        kept = lab.address("dev0002")
    with start_lab(workdir, 4) as lab:
        assert sorted(lab.inventory.targets) == _names(4)
        assert lab.address("dev0002") == kept
        assert await _certificate_ids(lab, "dev0004") == ["gnoi-server"]


async def test_factory_devices_answer_with_their_factory_certificate_as_ca_file(
    lab_starter: LabStarter,
) -> None:
    lab = lab_starter(3, factory=True)
    workdir = lab.workdir
    assert "ca_file" not in lab.inventory.defaults
    for name in _names(3):
        ca_file = Path(lab.inventory.targets[name]["ca_file"])
        assert ca_file == workdir / "devices" / name / "factory.pem"
        served = await asyncio.to_thread(served_certificate_der, lab.address(name))
        assert ssl.PEM_cert_to_DER_cert(ca_file.read_text()) == served
        # Server-only TLS, user ops: the device holds nothing yet.
        assert await _certificate_ids(lab, name) == []


def test_a_lab_of_the_other_kind_is_refused_and_left_alone(tmp_path: Path) -> None:
    workdir = tmp_path / "lab"
    with start_lab(workdir, 1, factory=True):
        pass
    before = (workdir / "inventory.yaml").read_bytes()
    done = subprocess.run(
        [str(GNOICERT), "lab", "--devices", "1", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "factory lab" in done.stderr
    assert "--factory" in done.stderr
    assert done.stdout == ""
    assert (workdir / "inventory.yaml").read_bytes() == before


async def test_one_device_runs_alone_from_its_configuration(lab_starter: LabStarter) -> None:
    lab = lab_starter(3)
    address = lab.address("dev0002")
    config = lab.workdir / "devices" / "dev0002" / "gnoicertd.toml"
    lab.hold("dev0002")
    assert "held: dev0002" in lab.lines
    alone = await asyncio.to_thread(spawn_target, config)
    try:
        assert alone.address == address  # the inventory stays true
        assert await _certificate_ids(lab, "dev0002") == ["gnoi-server"]
        assert await _certificate_ids(lab, "dev0001") == ["gnoi-server"]
        # While it runs alone, the lab leaves its state to it.
        lab.release("dev0002")
        assert "elsewhere: dev0002" in lab.lines
    finally:
        assert await asyncio.to_thread(alone.terminate) == 0
    lab.hold()  # no change of the list, but a rescan: the device's state is free again
    assert lab.lines[-1] == "reloaded: 3 of 3 devices serving"
    assert lab.address("dev0002") == address
    assert await _certificate_ids(lab, "dev0002") == ["gnoi-server"]


async def test_a_held_device_stays_out_across_a_restart(tmp_path: Path) -> None:
    workdir = tmp_path / "lab"
    with start_lab(workdir, 2) as lab:
        lab.hold("dev0001")
        address = lab.address("dev0001")
    with start_lab(workdir, 2) as lab:
        assert lab.ready_line.startswith("ready: 1 of 2 devices serving")
        assert lab.address("dev0001") == address  # still listed, at its recorded address
        with pytest.raises(ConnectionRefusedError):
            await asyncio.to_thread(served_certificate_der, address)
        lab.release("dev0001")
        assert lab.lines[-1] == "reloaded: 2 of 2 devices serving"
        assert await _certificate_ids(lab, "dev0001") == ["gnoi-server"]


async def test_a_device_whose_port_was_taken_moves_and_the_inventory_follows(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "lab"
    with start_lab(workdir, 2) as lab:
        old = lab.address("dev0001")
    squatter = socket.socket()
    try:
        squatter.bind(("127.0.0.1", int(old.rsplit(":", 1)[1])))
        squatter.listen()
        with start_lab(workdir, 2) as lab:
            new = lab.address("dev0001")
            assert new != old
            config = workdir / "devices" / "dev0001" / "gnoicertd.toml"
            assert f'listen = "{new}"' in config.read_text()
            assert await _certificate_ids(lab, "dev0001") == ["gnoi-server"]
    finally:
        squatter.close()
