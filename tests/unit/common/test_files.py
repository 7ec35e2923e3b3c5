"""The atomic writer: content, modes from creation, no leftovers, refusal to clobber."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gnoicert.common.files import PRIVATE_MODE, write_atomic


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_the_data_with_the_mode(tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    write_atomic(key, b"secret", mode=PRIVATE_MODE)
    assert key.read_bytes() == b"secret"
    assert _mode(key) == 0o600
    cert = tmp_path / "c.pem"
    write_atomic(cert, b"cert")
    assert _mode(cert) == 0o644


def test_replaces_an_existing_file_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"old")
    write_atomic(path, b"new", mode=PRIVATE_MODE)
    assert path.read_bytes() == b"new"
    assert _mode(path) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["f"]


def test_exclusive_refuses_an_existing_file_and_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        write_atomic(path, b"new", exclusive=True)
    assert path.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["f"]


def test_a_failed_write_leaves_the_target_untouched(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "f"
    with pytest.raises(FileNotFoundError):
        write_atomic(path, b"x")
    assert not path.parent.exists()


def test_keep_mode_and_owner_carries_the_replaced_files_permissions(tmp_path: Path) -> None:
    path = tmp_path / "gnoicertd.toml"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    before = path.stat()
    write_atomic(path, b"new", mode=PRIVATE_MODE, keep_mode_and_owner=True)
    after = path.stat()
    assert path.read_bytes() == b"new"
    assert _mode(path) == 0o640
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert after.st_ino != before.st_ino  # replaced by rename, not rewritten in place
    fresh = tmp_path / "new.toml"
    write_atomic(fresh, b"x", mode=PRIVATE_MODE, keep_mode_and_owner=True)
    assert _mode(fresh) == 0o600
