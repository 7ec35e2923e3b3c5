from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.pki import TestCA
from tests.support.target import Target, start_target


@pytest.fixture(scope="session")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[Target]:
    running = await start_target(tmp_path)
    try:
        yield running
    finally:
        await running.close()
