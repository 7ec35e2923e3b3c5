"""A gnoicertd subprocess as the peers meet it, and the files an operator keeps next to it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.cli import LOCAL_SERVER, Lab, start_lab


@contextmanager
def factory_lab(directory: Path) -> Iterator[Lab]:
    """A gnoicertd in its factory state that will serve `gnoi-server` once installed.

    Default key sizes and users admin and reader: what an operator starts with.
    """
    started = start_lab(directory, grpc_lines=[LOCAL_SERVER])
    try:
        yield started
    finally:
        assert started.stop() == 0, started.process.stderr_text()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
