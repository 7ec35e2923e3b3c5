"""A Finalize whose write completed is never lost to the cancel right behind it
(docs/behaviour.md §3 "A read is always posted", §9)."""

from __future__ import annotations

from pathlib import Path

from gnoicert.daemon.audit import read_records
from tests.support.finalize_cancel import client_key_loads, provisioned_process, run_rounds
from tests.support.flows import cert_stub, listed
from tests.support.gnoi import SERVER_ID
from tests.support.pki import TestCA

ROUNDS = 300


async def test_every_finalize_then_cancel_commits(tmp_path: Path, ca: TestCA) -> None:
    """A raw asyncio client, as a common Go client behaves: write Finalize, await the write,
    cancel at once. 300 rounds on one connection to gnoicertd as its own process (hot
    reloading on): 300 commits. Before the read was kept posted, 11 to 15 of 300 rolled back."""
    loads = client_key_loads(ca, ROUNDS)
    async with provisioned_process(tmp_path, ca) as target:
        tally = await run_rounds(target.channel, target.metadata, target.audit_path, loads)
        listing = await listed(cert_stub(target.channel))
    assert (tally.commits, tally.rollbacks) == (ROUNDS, 0)
    assert listing[SERVER_ID] == loads[-1][1]  # the store agrees with the audit log
    rotations = [r for r in read_records(target.audit_path) if r["event"] == "rotate"]
    assert [r["outcome"] for r in rotations] == ["applied", "committed"] * ROUNDS
