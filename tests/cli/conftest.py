"""One gnoicertd subprocess per test module; the module says how to configure it.

A module sets GRPC_LINES (extra lines for the daemon's [grpc] table) and uses the `lab`
fixture; the daemon runs on 127.0.0.1 with an ephemeral port until the module is done, and
must then stop cleanly. The `gnoicert` runner itself is tests/support/cli.py:run_cli.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.cli import Lab, start_lab


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    name = request.module.__name__.rsplit(".", 1)[-1]
    grpc_lines = getattr(request.module, "GRPC_LINES", ())
    started = start_lab(tmp_path_factory.mktemp(name), grpc_lines=grpc_lines)
    try:
        yield started
    finally:
        assert started.stop() == 0, started.process.stderr_text()
