from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.bundle import Bundle, make_bundle
from tests.support.faults import fsync  # noqa: F401 (a fixture)
from tests.support.gnoi import Launcher, Operator
from tests.support.pki import PrivateKey, TestCA, ec_key, rsa_key
from tests.support.target import Target, start_target


@pytest.fixture(scope="session")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="session")
def foreign_ca() -> TestCA:
    """A CA the targets never trust."""
    return TestCA(name="foreign root")


@pytest.fixture(scope="session")
def client_keys() -> dict[str, PrivateKey]:
    """Key pairs a client makes itself (docs/wire.md case 2), by the encoding they are sent in."""
    return {"rsa-pkcs1": rsa_key(2048), "rsa-pkcs8": rsa_key(2048), "ec-p256": ec_key()}


@pytest.fixture(scope="session")
def big_bundle() -> Bundle:
    """19,999 CAs (a few seconds to make); with the test CA in front, a bundle of 20,000."""
    return make_bundle(19_999)


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[Target]:
    running = await start_target(tmp_path)
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def launcher(tmp_path: Path, ca: TestCA) -> AsyncIterator[Launcher]:
    started = Launcher(tmp_path, ca)
    try:
        yield started
    finally:
        await started.close()


@pytest.fixture
async def operator(launcher: Launcher) -> Operator:
    """A target in its working state (mutual TLS, `srv` served), and its operator."""
    return await launcher.provision()
