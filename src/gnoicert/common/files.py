"""Atomic, durable file writes: the one way gnoicert replaces a file on disk.

A reader sees the old content or the new, never a torn file, and after a crash the rename is
either fully there or not (docs/platform-notes.md: rename plus fsync of file and directory).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


TMP_PREFIX = ".tmp"  # every temp file starts so: a store's crash recovery removes them by it


def fsync_directory(path: Path) -> None:
    """Make a rename or unlink inside `path` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def removed_on_failure(path: str | Path) -> Iterator[None]:
    """Unlink the temp file `path` if the block raises (then re-raise): no debris left behind."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise


def write_atomic(
    path: str | Path,
    data: bytes,
    *,
    mode: int = PUBLIC_MODE,
    exclusive: bool = False,
    keep_mode_and_owner: bool = False,
) -> None:
    """Write `data` to `path`: temp file in the same directory with `mode` from creation (a key
    is never briefly readable by others), fsync, rename over `path`, fsync the directory.

    `exclusive` refuses to replace an existing file (FileExistsError). `keep_mode_and_owner`
    gives the new file the mode and owner of the one it replaces (an operator's file edited in
    place keeps its permissions; `mode` then applies only when there is none). The temp file is
    removed when anything fails; `path` is then untouched.
    """
    target = Path(path)
    if exclusive and target.exists():
        raise FileExistsError(17, "File exists", str(target))
    previous = target.stat() if keep_mode_and_owner and target.exists() else None
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f"{TMP_PREFIX}-{target.name}-")
    with removed_on_failure(tmp):
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(fd, mode if previous is None else stat.S_IMODE(previous.st_mode))
            if previous is not None:
                # Only root can give the file away; otherwise it already has our owner.
                with contextlib.suppress(PermissionError):
                    os.fchown(fd, previous.st_uid, previous.st_gid)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            # link() fails if the name appeared meanwhile: no silent overwrite of a racing file.
            os.link(tmp, target)
            os.unlink(tmp)
        else:
            os.replace(tmp, target)
    fsync_directory(target.parent)
