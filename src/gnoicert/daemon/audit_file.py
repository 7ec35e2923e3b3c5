"""The audit log's file: append-only, 0600, one write per record, size-capped with rotation.

When a write takes the file to `max_bytes` or beyond, it is renamed to `<name>.1` (older ones
shift up, the oldest beyond `files` is removed) and a new file is started, so the audit log
never holds more than about `files` x `max_bytes` (docs/behaviour.md §7). Like
logging.handlers.RotatingFileHandler, but over a raw descriptor: every record reaches the kernel
before `write` returns, and an external logrotate still works with `reopen`.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MAX_MIB = 64
DEFAULT_FILES = 4


def rotated(path: Path, n: int) -> Path:
    """The n-th older file of path (n >= 1): audit.jsonl.1 is the newest of them."""
    return path.with_name(f"{path.name}.{n}")


class RotatingAppendFile:
    """Not thread-safe: the caller (AuditLog) holds its lock around every call."""

    def __init__(
        self, path: Path, *, max_bytes: int = DEFAULT_MAX_MIB << 20, files: int = DEFAULT_FILES
    ) -> None:
        if max_bytes < 1 or files < 1:
            raise ValueError("max_bytes and files must be at least 1")
        self.path = path
        self.max_bytes = max_bytes
        self.files = files
        self._fd: int | None = None
        self._size = 0
        self.open()

    def open(self) -> None:
        if self._fd is not None:
            return
        if not self.path.parent.exists():
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.path, flags, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and _ends_torn(self.path):
                # A crash cut the last record short: end that line, so the next record is
                # not glued to it and stays readable.
                _write_all(fd, b"\n")
                size += 1
        except OSError:
            os.close(fd)
            raise
        self._fd, self._size = fd, size

    def write(self, line: bytes) -> None:
        """Append line (one whole record), then rotate if the file reached its cap."""
        self.open()
        assert self._fd is not None
        _write_all(self._fd, line)
        self._size += len(line)
        if self._size >= self.max_bytes:
            self._rotate()

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _rotate(self) -> None:
        self.close()
        keep = self.files - 1  # older files besides the current one
        if keep == 0:
            self.path.unlink(missing_ok=True)
        else:
            rotated(self.path, keep).unlink(missing_ok=True)
            for n in range(keep - 1, 0, -1):
                older = rotated(self.path, n)
                if older.exists():
                    older.rename(rotated(self.path, n + 1))
            self.path.rename(rotated(self.path, 1))
        self.open()


def read_tail(path: Path, tail_bytes: int) -> bytes:
    """Up to the last tail_bytes of the log, across the newest rotated file and the current one,
    from a line start (a partial first line is dropped)."""
    data = b""
    for part in (rotated(path, 1), path):
        try:
            with open(part, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - tail_bytes))
                data = (data + f.read())[-tail_bytes:] if data else f.read()
        except FileNotFoundError:
            continue
    if len(data) >= tail_bytes:
        cut = data.find(b"\n")
        data = data[cut + 1 :] if cut >= 0 else b""
    return data


def _ends_torn(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            if f.seek(0, os.SEEK_END) == 0:
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except OSError:  # not readable by us: nothing to repair that we could see
        return False


def _write_all(fd: int, data: bytes) -> None:
    # O_APPEND makes each write land at the end; loop for the rare short write.
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
