"""Rotate (docs/wire.md 5.1), the client behaviours of docs/behaviour.md §9, and rollback at every
point where a stream can be interrupted (docs/behaviour.md §3)."""

from __future__ import annotations

import threading

import grpc
import pytest

from gnoicert.pki.store import KeyOrigin
from gnoicert.proto import cert_pb2
from tests.support.gnoi import (
    FINALIZE,
    ID_PLACES,
    SERVER_ID,
    IdPlace,
    Launcher,
    Operator,
    StoreState,
    audit,
    client_key_pair,
    gen,
    ins,
    leaf_fingerprint,
    load,
    open_rotation,
    pem_csr,
    rot,
)
from tests.support.pki import PrivateKey
from tests.support.status import expect, final_code
from tests.support.target import served_fingerprint, wait_for

CAN_RSA_2048 = cert_pb2.CanGenerateCSRRequest(
    key_type=cert_pb2.KT_RSA, certificate_type=cert_pb2.CT_X509, key_size=2048
)


async def assert_rolled_back(
    operator: Operator, before: StoreState, *, audited: bool = True
) -> None:
    """Store (committed and effective), served certificate and lock are as before, the rollback
    is audited, and the ID can be rotated again."""
    store = operator.store
    await wait_for(lambda: not store.is_locked(SERVER_ID), what="the ID's lock released")
    await wait_for(lambda: operator.state() == before, what="the store restored")
    old = before.entity(SERVER_ID)
    assert old is not None
    assert served_fingerprint(operator.target.address) == old.fingerprint
    if audited:
        await wait_for(
            lambda: bool(audit(operator.target, certificate_id=SERVER_ID, outcome="rolled_back")),
            what="the rollback audited",
        )
    listing = await operator.listing()
    assert leaf_fingerprint(listing[SERVER_ID].certificate.certificate) == old.fingerprint
    new = await operator.rotate(SERVER_ID)
    assert served_fingerprint(operator.target.address) == new


# -- the flows ----------------------------------------------------------------------------------


@pytest.mark.parametrize("place", ID_PLACES)
async def test_rotate_with_target_key(operator: Operator, place: IdPlace) -> None:
    address = operator.target.address
    old = operator.state().entity(SERVER_ID)
    assert old is not None
    assert served_fingerprint(address) == old.fingerprint

    call, new = await open_rotation(operator, place=place)
    # In effect for new handshakes, not committed: GetCertificates still says the old one.
    assert served_fingerprint(address) == new
    listing = await operator.listing()
    assert leaf_fingerprint(listing[SERVER_ID].certificate.certificate) == old.fingerprint
    assert operator.store.committed_view().entities[SERVER_ID].fingerprint == old.fingerprint
    # The client tests the new certificate on a new connection; the stream's one stays up.
    assert await operator.time(operator.new_channel()) > 0

    await call.write(FINALIZE)
    assert await final_code(call) is grpc.StatusCode.OK
    entity = operator.store.committed_view().entities[SERVER_ID]
    assert (entity.fingerprint, entity.version) == (new, old.version + 1)
    assert entity.key_origin is KeyOrigin.TARGET
    assert served_fingerprint(address) == new
    listing = await operator.listing()
    assert leaf_fingerprint(listing[SERVER_ID].certificate.certificate) == new
    committed = audit(operator.target, event="rotate", outcome="committed")
    assert committed[-1]["new_fingerprint"] == new
    assert committed[-1]["old_fingerprint"] == old.fingerprint


@pytest.mark.parametrize("kind", ["rsa-pkcs1", "rsa-pkcs8", "ec-p256"])
async def test_rotate_with_client_key(
    operator: Operator, client_keys: dict[str, PrivateKey], kind: str
) -> None:
    key = client_keys[kind]
    private, public = client_key_pair(kind, key)
    signed = operator.ca.sign_csr(pem_csr(key))
    call = operator.stub.Rotate(metadata=operator.metadata)
    await call.write(rot(load(signed, SERVER_ID, private_key=private, public_key=public)))
    reply = await call.read()
    assert reply.WhichOneof("rotate_response") == "load_certificate"
    assert served_fingerprint(operator.target.address) == leaf_fingerprint(signed)
    assert await operator.time(operator.new_channel()) > 0
    await call.write(FINALIZE)
    assert await final_code(call) is grpc.StatusCode.OK
    entity = operator.store.committed_view().entities[SERVER_ID]
    assert entity.fingerprint == leaf_fingerprint(signed)
    assert entity.key_origin is KeyOrigin.CLIENT


async def test_rotate_ids_in_both_messages_must_agree(operator: Operator) -> None:
    before = operator.state()
    call = operator.stub.Rotate(metadata=operator.metadata)
    await call.write(rot(gen(SERVER_ID)))
    reply = await call.read()
    signed = operator.ca.sign_csr(reply.generated_csr.csr.csr)
    await call.write(rot(load(signed, "web")))
    await expect(call.read(), grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")
    await assert_rolled_back(operator, before)


async def test_rotate_load_takes_effect_off_the_event_loop(operator: Operator) -> None:
    """Store subscribers run in the thread that changes the store, and the credential manager
    checks keys there (tens of ms for RSA): a Rotate's load must not stall every other RPC."""
    loop_thread = threading.get_ident()
    notified: list[int] = []
    unsubscribe = operator.store.subscribe(lambda _view: notified.append(threading.get_ident()))
    try:
        call, new = await open_rotation(operator)
        assert served_fingerprint(operator.target.address) == new
        await call.write(FINALIZE)
        assert await final_code(call) is grpc.StatusCode.OK
    finally:
        unsubscribe()
    assert notified, "the load changed the effective view"
    assert loop_thread not in notified


# -- docs/behaviour.md §9 -----------------------------------------------------------------------


async def finalize_and_cancel(operator: Operator) -> None:
    old = operator.state().entity(SERVER_ID)
    assert old is not None
    call, new = await open_rotation(operator, bits=1024)
    await call.write(FINALIZE)
    call.cancel()
    store = operator.store
    await wait_for(lambda: not store.is_locked(SERVER_ID), what="the rotation ended")
    entity = store.committed_view().entities[SERVER_ID]
    assert (entity.fingerprint, entity.version) == (new, old.version + 1)
    assert served_fingerprint(operator.target.address) == new
    listing = await operator.listing()
    assert leaf_fingerprint(listing[SERVER_ID].certificate.certificate) == new
    # The commit may be audited just after the lock is released (its thread finished).
    await wait_for(
        lambda: bool(audit(operator.target, new_fingerprint=new, outcome="committed")),
        what="the commit audited",
    )
    assert not audit(operator.target, new_fingerprint=new, outcome="rolled_back")


async def test_finalize_then_immediate_cancel_commits(operator: Operator) -> None:
    """A common Go CLI sends Finalize and cancels at once, never reading the status; repeated
    because the cancel races the commit."""
    for _ in range(10):
        await finalize_and_cancel(operator)


@pytest.mark.parametrize("rpc", ["Rotate", "Install"])
async def test_can_generate_csr_while_a_stream_is_open_and_silent(
    operator: Operator, rpc: str
) -> None:
    """Clients open the stream, then ask CanGenerateCSR on the same connection."""
    stub = operator.stub
    call = getattr(stub, rpc)(metadata=operator.metadata)
    await call.wait_for_connection()
    reply = await stub.CanGenerateCSR(CAN_RSA_2048, metadata=operator.metadata)
    assert reply.can_generate
    # The silent stream is still good for a whole transaction afterwards.
    cert_id = SERVER_ID if rpc == "Rotate" else "silent"
    wrap = rot if rpc == "Rotate" else ins
    await call.write(wrap(gen(cert_id)))
    reply = await call.read()
    signed = operator.ca.sign_csr(reply.generated_csr.csr.csr)
    await call.write(wrap(load(signed, cert_id)))
    await call.read()
    if rpc == "Rotate":
        await call.write(FINALIZE)
    assert await final_code(call) is grpc.StatusCode.OK
    assert operator.store.committed_view().entities[cert_id].fingerprint == leaf_fingerprint(signed)


# -- rollback at every interruption point ------------------------------------------------------


async def test_rotate_cancelled_after_generate_csr_rolls_back(operator: Operator) -> None:
    before = operator.state()
    call = operator.stub.Rotate(metadata=operator.metadata)
    await call.write(rot(gen(SERVER_ID)))
    await call.read()
    assert operator.store.is_locked(SERVER_ID)
    call.cancel()
    assert await call.code() is grpc.StatusCode.CANCELLED
    await assert_rolled_back(operator, before)


async def test_install_cancelled_after_generate_csr_rolls_back(operator: Operator) -> None:
    before = operator.state()
    call = operator.stub.Install(metadata=operator.metadata)
    await call.write(ins(gen("fresh")))
    await call.read()
    assert operator.store.is_locked("fresh")
    call.cancel()
    await wait_for(lambda: not operator.store.is_locked("fresh"), what="the lock released")
    assert operator.state() == before
    assert audit(operator.target, certificate_id="fresh", outcome="rolled_back")
    await operator.install("fresh")


async def test_rotate_cancelled_after_load_rolls_back(operator: Operator) -> None:
    before = operator.state()
    call, new = await open_rotation(operator)
    assert served_fingerprint(operator.target.address) == new
    call.cancel()
    await assert_rolled_back(operator, before)


async def test_rotate_half_closed_without_finalize_is_aborted(operator: Operator) -> None:
    before = operator.state()
    call, _ = await open_rotation(operator)
    await call.done_writing()
    await expect(call.read(), grpc.StatusCode.ABORTED, "NOT_FINALIZED")
    await assert_rolled_back(operator, before)


@pytest.mark.parametrize("steps", ["nothing", "generate_csr"])
async def test_half_close_before_the_end_is_aborted(operator: Operator, steps: str) -> None:
    before = operator.state()
    for rpc, wrap, cert_id in (("Rotate", rot, SERVER_ID), ("Install", ins, "early")):
        call = getattr(operator.stub, rpc)(metadata=operator.metadata)
        if steps == "generate_csr":
            await call.write(wrap(gen(cert_id)))
            await call.read()
        await call.done_writing()
        await expect(call.read(), grpc.StatusCode.ABORTED, "NOT_FINALIZED")
    await assert_rolled_back(operator, before, audited=steps != "nothing")
    assert "early" not in operator.store.view().entities


async def test_finalize_deadline_rolls_back(launcher: Launcher) -> None:
    # The deadline also covers generate_csr -> load, so leave room for key generation.
    operator = await launcher.provision(grpc_lines=["finalize_timeout_s = 2"])
    before = operator.state()
    call, new = await open_rotation(operator)
    assert served_fingerprint(operator.target.address) == new
    await expect(call.read(), grpc.StatusCode.ABORTED, "FINALIZE_TIMEOUT")
    await assert_rolled_back(operator, before)


@pytest.mark.parametrize("rpc", ["Rotate", "Install"])
async def test_a_silent_stream_holding_an_id_is_ended_by_the_deadline(
    launcher: Launcher, rpc: str
) -> None:
    """A client that named an ID and then went quiet cannot keep it locked."""
    operator = await launcher.provision(grpc_lines=["finalize_timeout_s = 0.5"])
    before = operator.state()
    wrap, cert_id = (rot, SERVER_ID) if rpc == "Rotate" else (ins, "quiet")
    call = getattr(operator.stub, rpc)(metadata=operator.metadata)
    await call.write(wrap(gen(cert_id)))
    await call.read()  # the CSR; then nothing more is sent
    await expect(call.read(), grpc.StatusCode.ABORTED, "FINALIZE_TIMEOUT")
    assert operator.state() == before
    assert not operator.store.is_locked(cert_id)


async def test_server_shutdown_mid_rotation_rolls_back(launcher: Launcher) -> None:
    operator = await launcher.provision()
    before = operator.state()
    call, new = await open_rotation(operator)
    assert served_fingerprint(operator.target.address) == new
    await operator.target.daemon.stop(grace=0)
    assert await final_code(call) in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    assert operator.state() == before
    [rolled_back] = audit(operator.target, certificate_id=SERVER_ID, outcome="rolled_back")
    assert rolled_back["reason"] == "SHUTTING_DOWN"  # not as if the client had half-closed

    # No uncommitted change survives: a new daemon on the same state starts from `before`.
    restarted = await launcher.restart(operator.target)
    again = Operator(
        restarted,
        operator.ca,
        client_chain_pem=operator.client_chain_pem,
        client_key_pem=operator.client_key_pem,
    )
    assert again.state() == before
    await assert_rolled_back(again, before)
