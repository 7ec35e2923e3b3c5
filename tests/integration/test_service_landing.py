"""A commit that lands after its RPC was cancelled (docs/behaviour.md §9: Finalize then an
immediate cancel; a client deadline) is a state change like any other: audited, and followed by
the listener changes it implies (a mode switch; a new listener when hot reloading is off)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from gnoicert.daemon.policy import TlsMode
from gnoicert.proto import cert_pb2
from tests.support.faults import Fsync
from tests.support.gnoi import (
    FINALIZE,
    SERVER_ID,
    Launcher,
    Operator,
    audit,
    certificate,
    gen,
    ins,
    load,
    open_rotation,
)
from tests.support.status import final_code
from tests.support.target import served_fingerprint, wait_for


async def cancel_during_commit(operator: Operator, fsync: Fsync, call: object) -> None:
    """With the commit held at its fsync: cancel the call, make sure the target has seen it
    (a later call on the same connection), then let the commit land."""
    await asyncio.to_thread(fsync.holding.wait, 10)
    assert fsync.holding.is_set(), "the commit never reached the disk"
    call.cancel()  # type: ignore[attr-defined]
    assert await operator.time() > 0
    fsync.release()


async def test_rotate_finalized_and_cancelled_without_hot_reloading(
    launcher: Launcher, fsync: Fsync
) -> None:
    operator = await launcher.provision(grpc_lines=["hot_reloading = false"])
    call, new = await open_rotation(operator)
    fsync.hold()
    await call.write(FINALIZE)
    await cancel_during_commit(operator, fsync, call)
    assert await final_code(call) is grpc.StatusCode.CANCELLED
    store = operator.store
    await wait_for(lambda: not store.is_locked(SERVER_ID), what="the commit")
    assert store.committed_view().entities[SERVER_ID].fingerprint == new
    await wait_for(
        lambda: bool(audit(operator.target, new_fingerprint=new, outcome="committed")),
        what="the commit audited",
    )
    address = operator.target.address
    await wait_for(lambda: served_fingerprint(address) == new, what="a listener serving it")


@pytest.mark.parametrize("rpc", ["Install", "LoadCertificateAuthorityBundle"])
async def test_first_bundle_committed_after_a_cancel_switches_to_mutual_tls(
    launcher: Launcher, fsync: Fsync, rpc: str
) -> None:
    target = await launcher.start()
    operator = Operator(target, launcher.ca)
    fsync.hold()
    if rpc == "Install":
        call = operator.stub.Install(metadata=operator.metadata)
        await call.write(ins(gen("first")))
        reply = await call.read()
        signed = operator.ca.sign_csr(reply.generated_csr.csr.csr)
        await call.write(ins(load(signed, bundle=[operator.ca.bundle_pem])))
    else:
        call = operator.stub.LoadCertificateAuthorityBundle(
            cert_pb2.LoadCertificateAuthorityBundleRequest(
                ca_certificates=[certificate(operator.ca.bundle_pem)]
            ),
            metadata=operator.metadata,
        )
    await cancel_during_commit(operator, fsync, call)
    store = target.daemon.store
    await wait_for(lambda: bool(store.committed_view().ca_bundle_pem), what="the commit")
    event = "install" if rpc == "Install" else "bundle_load"
    await wait_for(
        lambda: bool(audit(target, event=event, outcome="committed")), what="the commit audited"
    )
    await wait_for(
        lambda: target.daemon.listener_mode is TlsMode.MUTUAL, what="the switch to mutual TLS"
    )
