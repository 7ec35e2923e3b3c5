"""Rounds of "write Finalize, await the write, cancel at once" (docs/behaviour.md §9), the way a
common Go client ends a Rotate, and their tally from the audit log.

Shared by the CI test and bench/finalize_cancel.py. Each round rotates `srv` with a client EC
key (cheap to make, so the rounds are quick) over one reused connection, then waits for the
audit record that ends that rotation: the audit log is the daemon's own word on the outcome,
in-process or not.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from gnoicert.proto import cert_pb2, cert_pb2_grpc
from tests.support.daemon import Clients, probe_fingerprint
from tests.support.flows import ADMIN, cert_stub, install, issue_server_cert
from tests.support.gnoi import FINALIZE, LOCAL_SRV, SERVER_ID, leaf_fingerprint, load, rot
from tests.support.pki import TestCA, cert_pem, ec_key, key_pem
from tests.support.target import spawn_target, wait_for, write_config

ENDINGS = frozenset({"committed", "rolled_back"})


@dataclass
class AuditTail:
    """Reads the records appended to an audit log since the last read."""

    path: Path
    offset: int = 0
    endings: dict[str, str] = field(default_factory=dict)  # new fingerprint -> outcome

    def poll(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line being written waits for next time
        self.offset += len(complete)
        for line in complete.splitlines():
            record: dict[str, Any] = json.loads(line)
            if (
                record.get("event") in ("rotate", "commit", "rollback")
                and record.get("outcome") in ENDINGS
            ):
                self.endings[str(record.get("new_fingerprint"))] = str(record["outcome"])

    async def ending(self, new_fingerprint: str, *, timeout: float = 20.0) -> str:
        """The outcome the daemon recorded for the rotation to new_fingerprint."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if new_fingerprint in self.endings:
                return self.endings[new_fingerprint]
            if time.monotonic() > deadline:
                raise AssertionError(f"no audit record ends the rotation to {new_fingerprint}")
            await asyncio.sleep(0.002)  # polling a condition, bounded by the deadline


def client_key_loads(ca: TestCA, count: int) -> list[tuple[cert_pb2.LoadCertificateRequest, str]]:
    """count load_certificate messages for `srv`, each with a fresh EC key: (request, print)."""
    loads = []
    for _ in range(count):
        key = ec_key()
        signed = cert_pem(ca.issue(key.public_key())) + ca.chain_pem
        loads.append((load(signed, SERVER_ID, private_key=key_pem(key)), leaf_fingerprint(signed)))
    return loads


async def finalize_then_cancel(
    stub: Any,
    metadata: tuple[tuple[str, str], ...],
    request: cert_pb2.LoadCertificateRequest,
) -> None:
    """Load, read the load response, write Finalize, and cancel as soon as the write is done."""
    call: Any = stub.Rotate(metadata=metadata)
    await call.write(rot(request))
    reply = await call.read()
    assert reply.WhichOneof("rotate_response") == "load_certificate", reply
    await call.write(FINALIZE)
    call.cancel()
    # CANCELLED as the client sees it, or OK when the daemon ended the call first.
    assert await call.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.OK)


@dataclass
class Tally:
    commits: int = 0
    rollbacks: int = 0


async def run_rounds(
    channel: grpc.aio.Channel,
    metadata: tuple[tuple[str, str], ...],
    audit_path: Path,
    loads: list[tuple[cert_pb2.LoadCertificateRequest, str]],
) -> Tally:
    """One round per load, one after the other on channel; how they ended."""
    stub = cert_pb2_grpc.CertificateManagementStub(channel)
    tail = AuditTail(audit_path)
    tail.poll()
    tally = Tally()
    for request, new in loads:
        await finalize_then_cancel(stub, metadata, request)
        if await tail.ending(new) == "committed":
            tally.commits += 1
        else:
            tally.rollbacks += 1
    return tally


@asynccontextmanager
async def provisioned_process(directory: Path, ca: TestCA) -> AsyncIterator[Provisioned]:
    """gnoicertd as its own process (as a client meets it), serving `srv` from ca over mutual
    TLS with hot reloading; stopped with SIGTERM at the end."""
    config = write_config(directory, grpc_lines=[LOCAL_SRV])
    process = await asyncio.to_thread(spawn_target, config)
    try:
        async with Clients(process.address) as clients:
            srv = issue_server_cert(ca)
            stub = cert_stub(clients.server_only())
            await install(stub, SERVER_ID, srv, bundle_pem=ca.bundle_pem)
            await wait_for(
                lambda: probe_fingerprint(process.address) == srv.fingerprint, what="srv served"
            )
            yield Provisioned(clients.mutual(ca), ADMIN, process.audit_path)
    finally:
        if process.process.poll() is None:
            await asyncio.to_thread(process.terminate)


@dataclass
class Provisioned:
    channel: grpc.aio.Channel
    metadata: tuple[tuple[str, str], ...]
    audit_path: Path
