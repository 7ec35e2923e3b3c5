"""A change whose daemon is SIGKILLed right after the store swapped in the new state, before any
outcome record: after a restart the audit log closes it, once, as the store shows it
(docs/behaviour.md §8). gnoicertd runs as a real process with its crash point armed."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from gnoicert.daemon.audit import read_records
from gnoicert.daemon.crash_points import AFTER_COMMIT, ENV
from gnoicert.pki import crypto
from gnoicert.pki.store import Store, StoreView
from gnoicert.proto import cert_pb2
from tests.support.daemon import Clients, probe_fingerprint
from tests.support.flows import ADMIN, cert_stub, install, issue_server_cert
from tests.support.gnoi import LOCAL_SRV, SERVER_ID, certificate
from tests.support.pki import TestCA
from tests.support.target import TargetProcess, spawn_target, wait_for, write_config

VICTIM = "victim"


@dataclass(frozen=True)
class Plan:
    """One change: the ID its audit records name, how to ask for it, and its mark in the store."""

    cert_id: str
    send: Callable[[Any], Awaitable[object]]
    landed: Callable[[StoreView], bool]


def bundle_load(ca: TestCA, other: TestCA) -> Plan:
    request = cert_pb2.LoadCertificateAuthorityBundleRequest(
        ca_certificates=[certificate(ca.bundle_pem), certificate(other.bundle_pem)]
    )
    return Plan(
        crypto.CA_BUNDLE_ID,
        lambda stub: stub.LoadCertificateAuthorityBundle(request, metadata=ADMIN),
        lambda view: other.bundle_pem in view.ca_bundle_pem,
    )


def install_stream(ca: TestCA, other: TestCA) -> Plan:
    web = issue_server_cert(ca)

    async def send(stub: Any) -> object:
        call = stub.Install(metadata=ADMIN)
        await call.write(
            cert_pb2.InstallCertificateRequest(load_certificate=web.load_request("web"))
        )
        return await call.read()

    return Plan("web", send, lambda view: _holds(view, "web", web.fingerprint))


def load_unary(ca: TestCA, other: TestCA) -> Plan:
    leaf = issue_server_cert(ca)
    return Plan(
        "unary",
        lambda stub: stub.LoadCertificate(leaf.load_request("unary"), metadata=ADMIN),
        lambda view: _holds(view, "unary", leaf.fingerprint),
    )


def revoke(ca: TestCA, other: TestCA) -> Plan:
    request = cert_pb2.RevokeCertificatesRequest(certificate_id=[VICTIM])
    return Plan(
        VICTIM,
        lambda stub: stub.RevokeCertificates(request, metadata=ADMIN),
        lambda view: VICTIM not in view.entities,
    )


def _holds(view: StoreView, cert_id: str, fingerprint: str) -> bool:
    entity = view.entities.get(cert_id)
    return entity is not None and entity.fingerprint == fingerprint


PLANS: dict[str, Callable[[TestCA, TestCA], Plan]] = {
    "bundle_load": bundle_load,
    "install": install_stream,
    "load": load_unary,
    "revoke": revoke,
}


@pytest.fixture(scope="module")
def cas() -> tuple[TestCA, TestCA]:
    return TestCA(), TestCA(name="second root")


async def spawn(processes: list[TargetProcess], config: Path) -> TargetProcess:
    proc = await asyncio.to_thread(spawn_target, config)
    processes.append(proc)
    return proc


async def start_and_stop(processes: list[TargetProcess], config: Path) -> None:
    """A restart (which closes what the log left open), then a clean stop."""
    proc = await spawn(processes, config)
    assert await asyncio.to_thread(proc.terminate) == 0


def committed_store(config: Path) -> StoreView:
    store = Store.open(config.parent / "state")
    try:
        return store.committed_view()
    finally:
        store.close()


@pytest.mark.crash
@pytest.mark.parametrize("kind", sorted(PLANS))
async def test_killed_right_after_the_commit_the_restart_audits_the_change(
    tmp_path: Path,
    cas: tuple[TestCA, TestCA],
    processes: list[TargetProcess],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    ca, other = cas
    config = write_config(tmp_path, grpc_lines=[LOCAL_SRV])
    audit_path = tmp_path / "audit.jsonl"
    first = await spawn(processes, config)
    async with Clients(first.address) as clients:
        srv = issue_server_cert(ca)
        stub = cert_stub(clients.server_only())
        await install(stub, SERVER_ID, srv, bundle_pem=ca.bundle_pem)
        await wait_for(lambda: probe_fingerprint(first.address) == srv.fingerprint, what="srv")
        await install(cert_stub(clients.mutual(ca)), VICTIM, issue_server_cert(ca))
    assert await asyncio.to_thread(first.terminate) == 0
    plan = PLANS[kind](ca, other)
    assert not plan.landed(committed_store(config))

    known = len(read_records(audit_path))

    monkeypatch.setenv(ENV, AFTER_COMMIT)
    doomed = await spawn(processes, config)
    monkeypatch.delenv(ENV)
    async with Clients(doomed.address) as clients:
        with pytest.raises(grpc.aio.AioRpcError) as lost:
            await plan.send(cert_stub(clients.mutual(ca)))
    assert lost.value.code() is grpc.StatusCode.UNAVAILABLE
    assert await asyncio.to_thread(doomed.process.wait, 20) == -signal.SIGKILL
    assert plan.landed(committed_store(config)), "the kill came after the store's swap"

    await start_and_stop(processes, config)
    await start_and_stop(processes, config)  # a second restart finds nothing left open
    new = [r for r in read_records(audit_path)[known:] if r["certificate_id"] == plan.cert_id]
    assert [(r["event"], r["outcome"], r["detail"]) for r in new] == [
        (kind, "intent", "about to commit"),
        ("commit", "committed", "found committed at restart after a crash"),
    ]
    intent, close = new
    fields = ("rpc", "identity", "old_fingerprint", "new_fingerprint")
    assert {f: close[f] for f in fields} == {f: intent[f] for f in fields}
    if kind == "bundle_load":
        view = committed_store(config)
        assert close["new_fingerprint"] == crypto.bundle_fingerprint(view.ca_bundle_pem)
