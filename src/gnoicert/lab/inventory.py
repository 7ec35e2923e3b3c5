"""DIR/inventory.yaml: the lab's devices in the fleet inventory format (docs/operator-guide.md,
"Lab"), usable as is by `gnoicert --inventory`.

Written by hand, not by a YAML library: every value is a JSON string or a flow mapping of them,
which YAML reads as written (JSON's double-quoted strings are YAML's).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gnoicert.common.address import format_host_port
from gnoicert.common.files import write_atomic
from gnoicert.lab.layout import CERTIFICATE_ID, USER, DevicePaths, LabLayout
from gnoicert.lab.provision import LOOPBACK


@dataclass(frozen=True, slots=True)
class InventoryEntry:
    device: DevicePaths
    port: int


def _q(text: str) -> str:
    return json.dumps(text)


def _relative(layout: LabLayout, path: Path) -> str:
    return path.relative_to(layout.root).as_posix()


def render_inventory(layout: LabLayout, entries: Sequence[InventoryEntry], *, factory: bool) -> str:
    defaults = {
        "username": USER,
        "password_file": _relative(layout, layout.password),
        "cert": _relative(layout, layout.operator_pem),
        "key": _relative(layout, layout.operator_key),
        "certificate_id": CERTIFICATE_ID,
    }
    if not factory:
        defaults["ca_file"] = _relative(layout, layout.ca_dir / "ca.pem")
    lines = [
        "# Written by `gnoicert lab` each time it starts; relative paths are relative to this",
        "# file. "
        + (
            "Factory-state devices: each trusts its own factory certificate."
            if factory
            else "Every device serves a lab CA certificate, mutual TLS."
        ),
        "defaults:",
        *(f"  {key}: {_q(value)}" for key, value in defaults.items()),
        f'  csr: {{common_name: "{{name}}", ip_address: {_q(LOOPBACK)}}}',
        "targets:",
    ]
    for entry in entries:
        fields = [f"address: {_q(format_host_port(LOOPBACK, entry.port))}"]
        if factory:
            fields.append(f"ca_file: {_q(_relative(layout, entry.device.factory_pem))}")
        lines.append(f"  {entry.device.name}: {{{', '.join(fields)}}}")
    if not entries:
        lines[-1] = "targets: {}"
    return "\n".join(lines) + "\n"


def write_inventory(layout: LabLayout, entries: Sequence[InventoryEntry], *, factory: bool) -> Path:
    write_atomic(layout.inventory, render_inventory(layout, entries, factory=factory).encode())
    return layout.inventory
