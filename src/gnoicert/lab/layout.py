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


@dataclass(frozen=True, slots=True)
class DevicePaths:
    name: str
    directory: Path

    @property
    def config(self) -> Path:
        return self.directory / "gnoicertd.toml"

    @property
    def state(self) -> Path:
        return self.directory / "state"

    @property
    def audit_log(self) -> Path:
        return self.directory / "audit.log"

    @property
    def factory_pem(self) -> Path:
        return self.directory / "factory.pem"


@dataclass(frozen=True, slots=True)
class LabLayout:
    root: Path

    @classmethod
    def at(cls, workdir: str | Path) -> LabLayout:
        return cls(Path(workdir).absolute())

    @property
    def record(self) -> Path:
        return self.root / "lab.json"

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def operator_pem(self) -> Path:
        return self.root / "operator.pem"

    @property
    def operator_key(self) -> Path:
        return self.root / "operator.key"

    @property
    def password(self) -> Path:
        return self.root / "password"

    @property
    def inventory(self) -> Path:
        return self.root / "inventory.yaml"

    @property
    def held(self) -> Path:
        return self.root / "held"

    def device(self, number: int) -> DevicePaths:
        name = device_name(number)
        return DevicePaths(name, self.root / "devices" / name)

    def devices(self, count: int) -> list[DevicePaths]:
        return [self.device(number) for number in range(1, count + 1)]
