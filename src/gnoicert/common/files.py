"""Atomic, durable file writes: the one way gnoicert replaces a file on disk.

A reader sees the old content or the new, never a torn file, and after a crash the rename is
either fully there or not (docs/platform-notes.md: rename plus fsync of file and directory).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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


# Concurrent fsyncs on one filesystem share its journal commits (ext4, xfs): a commit that
# must make ten files and directories durable waits for about one flush, not ten in a row
# (docs/platform-notes.md, Storage). A few threads, made on first use, shared by every store.
_SYNC_THREADS = 8
_sync_pool: ThreadPoolExecutor | None = None
_sync_pool_lock = threading.Lock()


def _forget_sync_pool() -> None:
    """A forked child has none of the parent's threads: it makes its own pool."""
    global _sync_pool
    _sync_pool = None


os.register_at_fork(after_in_child=_forget_sync_pool)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # also opens a directory
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pool() -> ThreadPoolExecutor:
    global _sync_pool
    with _sync_pool_lock:
        if _sync_pool is None:
            _sync_pool = ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="file-sync")
        return _sync_pool


def in_background(work: Callable[[], None]) -> Future[None]:
    """Run file work that nobody waits for (removing an old generation) on the same threads."""
    return _pool().submit(work)


def fsync_all(paths: Iterable[Path]) -> None:
    """Make every path (files and directories) durable, fsyncing them concurrently.

    Returns once all of them are durable; raises the first OSError after every fsync ended.
    """
    todo = list(paths)
    if len(todo) <= 1:
        for path in todo:
            _fsync_path(path)
        return
    pool = _pool()
    futures = [pool.submit(_fsync_path, path) for path in todo]
    errors = [exc for future in futures if (exc := future.exception()) is not None]
    if errors:
        raise errors[0]


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
