"""The interoperability suite: gnoicertd and gnoicert against the real peer programs.

The peers live beside the repository (tests/interop/peers.py); without them every test here is
skipped with the reason, as on a user's machine.
"""

from __future__ import annotations

import pytest

from tests.interop.peers import missing_peers


@pytest.fixture(scope="session", autouse=True)
def peers_present() -> None:
    reason = missing_peers()
    if reason:
        pytest.skip(f"interop suite skipped: {reason}")
