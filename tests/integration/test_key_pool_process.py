"""The key pool in a real gnoicertd: GenerateCSR takes pooled keys, and a SIGKILL with keys in
the pool loses nothing that was promised durable (pending and stored keys); pooled keys vanish."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from cryptography import x509

from gnoicert.proto import cert_pb2
from tests.support.daemon import Clients, private_keys_on_disk
from tests.support.flows import (
    ADMIN,
    cert_stub,
    csr_request,
    install_with_csr,
    listed,
    x509_field,
)
from tests.support.pki import TestCA
from tests.support.target import TargetProcess, spawn_target, write_config

DEPTH = 2
POOL_LINE = re.compile(r"key pool: (\d+) of (\d+) RSA-2048 keys ready")


def spawn(processes: list[TargetProcess], config: Path) -> TargetProcess:
    proc = spawn_target(config, extra=("--insecure",), verbose=True)
    processes.append(proc)
    return proc


def pool_fills(proc: TargetProcess) -> int:
    """How many times the log has said the RSA-2048 pool reached its depth."""
    return sum(1 for m in POOL_LINE.finditer(proc.stderr_text()) if m[1] == m[2])


async def wait_pool_full(proc: TargetProcess, fills: int, timeout: float = 120.0) -> None:
    """The filler runs at idle priority on a shared machine: wait on the log line."""
    deadline = time.monotonic() + timeout
    while pool_fills(proc) < fills:
        assert time.monotonic() < deadline, proc.stderr_text()
        await asyncio.sleep(0.02)


async def test_kill_9_with_a_full_pool_keeps_pending_and_stored_keys(
    tmp_path: Path, ca: TestCA, processes: list[TargetProcess]
) -> None:
    config = write_config(tmp_path, grpc_lines=[f"key_pool_depth = {DEPTH}"])
    proc = spawn(processes, config)
    await wait_pool_full(proc, 1)
    async with Clients(proc.address) as clients:
        stub = cert_stub(clients.insecure())
        # A stored key (Install with a target key) and a pending one (unary GenerateCSR),
        # both from the pool.
        stored = await install_with_csr(stub, "stored", ca, bundle_pem=ca.bundle_pem)
        reply = await stub.GenerateCSR(csr_request("pending"), metadata=ADMIN)
    log = proc.stderr_text()
    assert log.count("key pool hit for RSA-2048") == 2, log
    assert "key pool miss" not in log
    csr = x509.load_pem_x509_csr(reply.csr.csr)
    assert csr.public_key().key_size == 2048  # type: ignore[union-attr]

    await wait_pool_full(proc, 2)  # refilled: keys only in memory when the process dies
    before = private_keys_on_disk(tmp_path / "state")
    proc.kill()

    restarted = spawn(processes, config)
    after = private_keys_on_disk(tmp_path / "state")
    assert {p.relative_to(tmp_path): pem for p, pem in after.items()} == {
        p.relative_to(tmp_path): pem for p, pem in before.items()
    }
    async with Clients(restarted.address) as clients:
        stub = cert_stub(clients.insecure())
        assert (await listed(stub))["stored"] == stored
        # The pending key survived: the certificate for its CSR loads.
        await stub.LoadCertificate(
            cert_pb2.LoadCertificateRequest(
                certificate_id="pending", certificate=x509_field(ca.sign_csr(reply.csr.csr))
            ),
            metadata=ADMIN,
        )
        assert "pending" in await listed(stub)
