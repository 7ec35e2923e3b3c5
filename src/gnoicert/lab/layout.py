"""Where a lab keeps its files: one home for every path under the work directory.

DIR/lab.json                  what the lab was made as (factory or provisioned)
DIR/ca/                       the lab CA (gnoicert.client.ca.LocalCA layout)
DIR/operator.pem, .key        the operator's client certificate (key 0600)
DIR/password                  the password of user `ops` (0600)
DIR/inventory.yaml            every device, for `gnoicert --inventory`
DIR/held                      device names the lab leaves to someone else (one a line)
DIR/devices/NAME/gnoicertd.toml   the device's configuration (`gnoicertd serve --config`)
DIR/devices/NAME/state/       its PKI store; audit.log its audit log
DIR/devices/NAME/factory.pem  its factory certificate (the trust anchor of --factory labs)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MAX_DEVICES = 9999  # dev0001 ... dev9999
USER = "ops"
CERTIFICATE_ID = "gnoi-server"


def device_name(number: int) -> str:
    """dev0001 for 1: zero-padded so names sort as they number."""
    if not 1 <= number <= MAX_DEVICES:
        raise ValueError(f"a lab device number is 1 to {MAX_DEVICES}, got {number}")
    return f"dev{number:04d}"


class _Below:
    """A fixed name below a layout's folder, read as a Path attribute (`base` names the folder)."""

    def __init__(self, base: str, name: str) -> None:
        self._base = base
        self._name = name

    def __get__(self, layout: object, owner: type | None = None) -> Path:
        folder: Path = getattr(layout, self._base)
        return folder / self._name


@dataclass(frozen=True, slots=True)
class DevicePaths:
    name: str
    directory: Path

    config = _Below("directory", "gnoicertd.toml")
    state = _Below("directory", "state")
    audit_log = _Below("directory", "audit.log")
    factory_pem = _Below("directory", "factory.pem")


@dataclass(frozen=True, slots=True)
class LabLayout:
    root: Path

    @classmethod
    def at(cls, workdir: str | Path) -> LabLayout:
        return cls(Path(workdir).absolute())

    record = _Below("root", "lab.json")
    ca_dir = _Below("root", "ca")
    operator_pem = _Below("root", "operator.pem")
    operator_key = _Below("root", "operator.key")
    password = _Below("root", "password")
    inventory = _Below("root", "inventory.yaml")
    held = _Below("root", "held")

    def device(self, number: int) -> DevicePaths:
        name = device_name(number)
        return DevicePaths(name, self.root / "devices" / name)

    def devices(self, count: int) -> list[DevicePaths]:
        return [self.device(number) for number in range(1, count + 1)]
