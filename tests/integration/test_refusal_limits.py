"""A stream of refused requests against a real gnoicertd process cannot fill the disk
(docs/behaviour.md §7): the audit log rotates at its cap, the daemon log summarizes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from gnoicert.daemon.audit import read_records
from tests.support.daemon import Clients
from tests.support.flows import ADMIN
from tests.support.target import TargetProcess, spawn_target, write_config

GARBAGE = b"\x0a\xff\xff\xff\xff\x0f"
GET = "/gnoi.certificate.CertificateManagement/GetCertificates"


async def test_refusals_rotate_the_audit_log_and_are_summarized(
    tmp_path: Path, processes: list[TargetProcess]
) -> None:
    config = write_config(tmp_path, top_lines=["audit_log_max_mib = 0.01", "audit_log_files = 3"])
    proc = spawn_target(config)
    processes.append(proc)
    sent = 600
    async with Clients(proc.address) as clients:
        get: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = clients.server_only().unary_unary(GET)
        for _ in range(sent):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await get(GARBAGE, metadata=ADMIN, timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await asyncio.to_thread(proc.terminate) == 0

    audit = tmp_path / "audit.jsonl"
    files = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("audit.jsonl"))
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    for name in files:
        assert (tmp_path / name).stat().st_size < 0.01 * (1 << 20) + 1024
    records = read_records(audit.with_name("audit.jsonl.2")) + read_records(
        audit.with_name("audit.jsonl.1")
    )
    records += read_records(audit)
    refused = [r for r in records if r["event"] == "refused"]
    assert refused
    assert all(r["reason"] == "MALFORMED_REQUEST" for r in refused)

    log = proc.stderr_text()
    assert "Traceback" not in log
    assert log.count("refused " + GET) == 10  # the first ten, one by one
    assert (
        f"refused {sent - 10} more requests in the last 60 s (MALFORMED_REQUEST {sent - 10})" in log
    )
