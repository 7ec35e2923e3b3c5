"""Atomic, durable file writes: the one way gnoicert replaces a file on disk.

A reader sees the old content or the new, never a torn file, and after a crash the rename is
either fully there or not (docs/platform-notes.md: rename plus fsync of file and directory).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


def fsync_directory(path: Path) -> None:
    """Make a rename or unlink inside `path` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(
    path: str | Path, data: bytes, *, mode: int = PUBLIC_MODE, exclusive: bool = False
) -> None:
    """Write `data` to `path`: temp file in the same directory with `mode` from creation (a key
    is never briefly readable by others), fsync, rename over `path`, fsync the directory.

    `exclusive` refuses to replace an existing file (FileExistsError). The temp file is removed
    when anything fails; `path` is then untouched.
    """
    target = Path(path)
    if exclusive and target.exists():
        raise FileExistsError(17, "File exists", str(target))
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            # link() fails if the name appeared meanwhile: no silent overwrite of a racing file.
            os.link(tmp, target)
            os.unlink(tmp)
        else:
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_directory(target.parent)
