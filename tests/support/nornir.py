"""A Nornir run configured the way a user would: SimpleInventory files written to a folder."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from nornir import InitNornir
from nornir.core import Nornir


def init_nornir(
    directory: Path,
    *,
    hosts: Mapping[str, Any],
    groups: Mapping[str, Any],
    defaults: Mapping[str, Any],
    workers: int,
) -> Nornir:
    """hosts.yaml, groups.yaml and defaults.yaml in directory, and a threaded Nornir over them."""
    files = {}
    for kind, content in (("hosts", hosts), ("groups", groups), ("defaults", defaults)):
        files[kind] = directory / f"{kind}.yaml"
        files[kind].write_text(yaml.safe_dump(dict(content)))
    return InitNornir(
        runner={"plugin": "threaded", "options": {"num_workers": workers}},
        inventory={
            "plugin": "SimpleInventory",
            "options": {
                "host_file": str(files["hosts"]),
                "group_file": str(files["groups"]),
                "defaults_file": str(files["defaults"]),
            },
        },
        logging={"enabled": False},
    )
