"""The lab's parts without a server: inventory text, recorded ports, the lab's password hash."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from gnoicert.daemon.auth import hash_password, verify_password
from gnoicert.daemon.config import load_config
from gnoicert.lab.inventory import InventoryEntry, render_inventory
from gnoicert.lab.layout import LabLayout, device_name
from gnoicert.lab.provision import LAB_SCRYPT_COST, record_port, write_config
from tests.support.lab import read_inventory


def test_device_names_sort_as_they_number() -> None:
    assert [device_name(n) for n in (1, 12, 9999)] == ["dev0001", "dev0012", "dev9999"]
    for bad in (0, 10_000):
        with pytest.raises(ValueError, match="1 to 9999"):
            device_name(bad)


@pytest.mark.parametrize("factory", [False, True])
def test_the_inventory_names_every_device_and_the_shared_files(
    tmp_path: Path, factory: bool
) -> None:
    layout = LabLayout.at(tmp_path)
    entries = [InventoryEntry(layout.device(n), 40000 + n) for n in (1, 2, 3)]
    layout.inventory.write_text(render_inventory(layout, entries, factory=factory))
    inventory = read_inventory(layout.inventory)
    assert inventory.defaults["username"] == "ops"
    assert inventory.defaults["password_file"] == str(tmp_path / "password")
    assert inventory.defaults["cert"] == str(tmp_path / "operator.pem")
    assert inventory.defaults["key"] == str(tmp_path / "operator.key")
    assert inventory.targets["dev0002"]["address"] == "127.0.0.1:40002"
    if factory:
        assert "ca_file" not in inventory.defaults
        assert inventory.setting("dev0003", "ca_file") == str(
            tmp_path / "devices" / "dev0003" / "factory.pem"
        )
    else:
        assert inventory.setting("dev0003", "ca_file") == str(tmp_path / "ca" / "ca.pem")


def test_recording_a_port_changes_only_the_listen_address(tmp_path: Path) -> None:
    device = LabLayout.at(tmp_path).device(1)
    device.directory.mkdir(parents=True)
    write_config(device, hash_password("lab password", cost=LAB_SCRYPT_COST), port=0)
    device.config.write_text(
        "auth_failure_limit = 9  # an operator's edit\n" + device.config.read_text()
    )
    before = tomllib.loads(device.config.read_text())
    record_port(device, 41234)
    after = tomllib.loads(device.config.read_text())
    assert after["grpc"].pop("listen") == "127.0.0.1:41234"
    assert before["grpc"].pop("listen") == "127.0.0.1:0"
    assert after == before
    assert "# an operator's edit" in device.config.read_text()
    config = load_config(device.config)  # what gnoicertd serve --config reads
    assert config.grpc.listen_port == 41234
    assert config.state_dir == device.state
    assert config.auth_failure_limit == 9
    assert device.config.stat().st_mode & 0o777 == 0o600


def test_the_lab_hash_is_a_daemon_hash_of_lower_cost() -> None:
    hashed = hash_password("lab password", cost=LAB_SCRYPT_COST)
    assert hashed.split("$")[1] == str(LAB_SCRYPT_COST)
    assert verify_password("lab password", hashed)
    assert not verify_password("other password", hashed)
    for bad in (0, 1, 1000):
        with pytest.raises(ValueError, match="power of two"):
            hash_password("lab password", cost=bad)
