"""The demo's helpers that need no daemon: configuration edits, audit tail, finding gnoicertd.

The demo itself runs against a real gnoicertd in the integration tests.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import pytest

from gnoicert.cli.demo import (
    DemoFailed,
    audit_tail,
    find_daemon_command,
    set_local_certificate,
    write_config,
)


def test_config_is_valid_toml_on_loopback(tmp_path: Path) -> None:
    path = tmp_path / "gnoicertd.toml"
    write_config(path, tmp_path)
    config = tomllib.loads(path.read_text(encoding="utf-8"))
    assert config["state_dir"] == str(tmp_path / "state")
    assert config["grpc"]["listen"] == "127.0.0.1:0"
    assert "local_certificate" not in config["grpc"]


def test_local_certificate_is_added_under_grpc(tmp_path: Path) -> None:
    path = tmp_path / "gnoicertd.toml"
    write_config(path, tmp_path)
    # What `gnoicertd passwd` appends must survive the edit.
    with path.open("a", encoding="utf-8") as handle:
        handle.write('\n[[users]]\nname = "ops"\npassword_hash = "x"\nrole = "admin"\n')
    set_local_certificate(path, "gnoi-server")
    config = tomllib.loads(path.read_text(encoding="utf-8"))
    assert config["grpc"]["local_certificate"] == "gnoi-server"
    assert config["users"][0]["name"] == "ops"


def test_local_certificate_needs_a_grpc_table(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text('state_dir = "s"\n', encoding="utf-8")
    with pytest.raises(DemoFailed):
        set_local_certificate(path, "x")


def test_audit_tail(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    records = [
        {"event": "install", "rpc": "Install", "certificate_id": f"c{i}", "outcome": "committed"}
        for i in range(10)
    ]
    lines = [json.dumps(record) for record in records] + ["not json"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tail = audit_tail(path, count=3)
    assert tail == ["install Install c8 committed", "install Install c9 committed", "not json"]
    assert audit_tail(tmp_path / "missing.log") == ["(no audit log)"]


def test_daemon_command() -> None:
    assert find_daemon_command("gnoicertd --verbose") == ["gnoicertd", "--verbose"]
    assert find_daemon_command() == [str(Path(sys.executable).parent / "gnoicertd")]


def test_daemon_command_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(DemoFailed, match="gnoicertd is not installed"):
        find_daemon_command()
