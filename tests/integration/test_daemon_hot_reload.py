"""Hot reload of the server certificate (docs/behaviour.md §s 1 and 3, "Rotate between load and
Finalize"): new handshakes see the new certificate at once, established connections and the
Rotate's own stream are untouched; without hot reloading the listener is replaced instead."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from gnoicert.daemon.policy import TlsMode
from gnoicert.proto import cert_pb2, system_pb2, system_pb2_grpc
from tests.support.flows import (
    ADMIN,
    ServerCert,
    audit_records,
    cert_stub,
    finalize,
    fingerprint_of,
    install,
    issue_server_cert,
    listed,
    rotate_until_loaded,
)
from tests.support.pki import TestCA
from tests.support.target import (
    Target,
    served_fingerprint,
    start_target,
    wait_for,
    write_config,
)


@dataclass
class ServingTarget:
    """A target in mutual TLS that serves the installed certificate "srv"."""

    target: Target
    ca: TestCA
    srv: ServerCert

    def channel(self) -> grpc.aio.Channel:
        """A new mutual-TLS connection that verifies the server against the CA."""
        chain, key = self.ca.client_credentials()
        return self.target.channel(self.ca.bundle_pem, client_chain_pem=chain, client_key_pem=key)


async def serve_srv(
    directory: Path, ca: TestCA, *, grpc_lines: Sequence[str] = ()
) -> ServingTarget:
    target = await start_target(directory, grpc_lines=grpc_lines)
    srv = issue_server_cert(ca)
    await install(cert_stub(target.channel()), "srv", srv, bundle_pem=ca.bundle_pem)
    await wait_for(lambda: target.daemon.listener_mode is TlsMode.MUTUAL, what="mutual TLS")
    write_config(directory, grpc_lines=[*grpc_lines, 'local_certificate = "srv"'])
    assert await target.daemon.reload(target.config_path)
    assert served_fingerprint(target.address) == srv.fingerprint
    return ServingTarget(target, ca, srv)


@pytest.fixture
async def serving(tmp_path: Path, ca: TestCA) -> AsyncIterator[ServingTarget]:
    running = await serve_srv(tmp_path, ca)
    try:
        yield running
    finally:
        await running.target.close()


async def time_ok(channel: grpc.aio.Channel) -> bool:
    reply = await system_pb2_grpc.SystemStub(channel).Time(system_pb2.TimeRequest(), metadata=ADMIN)
    return reply.time > 0


def state_watch(channel: grpc.aio.Channel) -> asyncio.Task[None]:
    """Done as soon as a READY channel changes state (a dropped or replaced connection)."""
    assert channel.get_state() is grpc.ChannelConnectivity.READY
    return asyncio.ensure_future(channel.wait_for_state_change(grpc.ChannelConnectivity.READY))


async def test_rotate_of_the_server_certificate_is_hot_reloaded(
    serving: ServingTarget,
) -> None:
    target, old = serving.target, serving.srv
    before = serving.channel()
    assert await time_ok(before)
    before_watch = state_watch(before)
    listener = target.daemon._server

    rotating = serving.channel()
    stub = cert_stub(rotating)
    new = issue_server_cert(serving.ca)
    call = await rotate_until_loaded(stub, "srv", new)
    rotating_watch = state_watch(rotating)

    # Between load and Finalize: a new connection gets the new certificate ...
    assert served_fingerprint(target.address) == new.fingerprint
    assert await time_ok(serving.channel())
    # ... the stream's own connection still works ...
    reply = await stub.CanGenerateCSR(
        cert_pb2.CanGenerateCSRRequest(
            key_type=cert_pb2.KT_RSA, certificate_type=cert_pb2.CT_X509, key_size=2048
        ),
        metadata=ADMIN,
    )
    assert reply.can_generate
    # ... and GetCertificates still reports the committed certificate.
    assert await listed(stub) == {"srv": old.fingerprint}

    assert await finalize(call) == grpc.StatusCode.OK
    assert await listed(stub) == {"srv": new.fingerprint}
    assert served_fingerprint(target.address) == new.fingerprint
    # The connection opened before the rotation still serves RPCs, never having been dropped.
    assert await time_ok(before)
    assert await time_ok(rotating)
    assert not before_watch.done()
    assert not rotating_watch.done()
    assert target.daemon._server is listener
    before_watch.cancel()
    rotating_watch.cancel()

    rotations = audit_records(target.audit_path, event="rotate", certificate_id="srv")
    assert [r["outcome"] for r in rotations] == ["applied", "committed"]
    assert rotations[-1]["old_fingerprint"] == old.fingerprint
    assert rotations[-1]["new_fingerprint"] == new.fingerprint


async def test_rotate_cancelled_after_load_serves_the_old_certificate_again(
    serving: ServingTarget,
) -> None:
    target, old = serving.target, serving.srv
    stub = cert_stub(serving.channel())
    new = issue_server_cert(serving.ca)
    call = await rotate_until_loaded(stub, "srv", new)
    assert served_fingerprint(target.address) == new.fingerprint
    call.cancel()
    await wait_for(
        lambda: served_fingerprint(target.address) == old.fingerprint,
        what="old certificate served again",
    )
    assert await listed(cert_stub(serving.channel())) == {"srv": old.fingerprint}
    rotations = audit_records(target.audit_path, event="rotate", certificate_id="srv")
    assert [r["outcome"] for r in rotations] == ["applied", "rolled_back"]
    # grpcio shows the handler a client cancel as the end of the stream (docs/platform-notes.md).
    assert rotations[-1]["reason"] in ("CANCELLED", "NOT_FINALIZED")


async def test_without_hot_reloading_the_rotation_replaces_the_listener(
    tmp_path: Path, ca: TestCA
) -> None:
    serving = await serve_srv(tmp_path, ca, grpc_lines=["hot_reloading = false"])
    target, old = serving.target, serving.srv
    try:
        listener = target.daemon._server
        stub = cert_stub(serving.channel())
        new = issue_server_cert(ca)
        call = await rotate_until_loaded(stub, "srv", new)
        # Between load and Finalize, new handshakes still get the old certificate: the new one
        # takes effect only when the listener is replaced, after the Rotate has ended.
        assert served_fingerprint(target.address) == old.fingerprint
        assert await time_ok(serving.channel())
        assert target.daemon._server is listener

        assert await finalize(call) == grpc.StatusCode.OK
        await wait_for(lambda: target.daemon._server is not listener, what="a new listener")
        assert served_fingerprint(target.address) == new.fingerprint
        assert await time_ok(serving.channel())
        assert target.daemon.listener_mode is TlsMode.MUTUAL
        assert await listed(stub) == {"srv": new.fingerprint}
        # Audited as new credentials, not as a change of TLS mode (there was one: the first).
        switches = audit_records(target.audit_path, event="mode_switch")
        assert [r["detail"] for r in switches] == ["listener now mutual"]
        replaced = [
            r["detail"]
            for r in audit_records(target.audit_path, event="credentials")
            if r["detail"].startswith("listener")
        ]
        assert replaced == [
            "listener replaced, still mutual (hot reloading is off)",  # local_certificate set
            "listener replaced, still mutual (hot reloading is off)",  # the Rotate
        ]
    finally:
        await target.close()


async def test_revoking_the_server_certificate_keeps_sessions_and_serves_factory(
    serving: ServingTarget,
) -> None:
    """docs/behaviour.md §4: established sessions, the caller's included, are not disturbed;
    new handshakes get the factory certificate until the configuration names another."""
    target = serving.target
    caller = serving.channel()
    stub = cert_stub(caller)
    assert await time_ok(caller)
    watch = state_watch(caller)
    reply = await stub.RevokeCertificates(
        cert_pb2.RevokeCertificatesRequest(certificate_id=["srv"]), metadata=ADMIN
    )
    assert list(reply.revoked_certificate_id) == ["srv"]
    factory = fingerprint_of(target.factory_pem)
    await wait_for(lambda: served_fingerprint(target.address) == factory, what="factory cert")
    assert await time_ok(caller)
    assert await listed(stub) == {}
    assert not watch.done()
    watch.cancel()
    chain, key = serving.ca.client_credentials()
    fresh = target.channel(target.factory_pem, client_chain_pem=chain, client_key_pem=key)
    assert await time_ok(fresh)


async def stop_during_rotate(serving: ServingTarget) -> dict[str, Any]:
    """Stop the daemon while a Rotate of "srv" is loaded; the audit record of its end."""
    target = serving.target
    call = await rotate_until_loaded(
        cert_stub(serving.channel()), "srv", issue_server_cert(serving.ca)
    )
    await target.daemon.stop(grace=0.2)
    # stop() returned: the handler has rolled back and written its record already.
    rotations = audit_records(target.audit_path, event="rotate", certificate_id="srv")
    assert [r["outcome"] for r in rotations] == ["applied", "rolled_back"]
    assert await call.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    return rotations[-1]


async def test_stop_returns_after_the_open_rotate_is_rolled_back(
    serving: ServingTarget,
) -> None:
    ended = await stop_during_rotate(serving)
    assert ended["old_fingerprint"] == serving.srv.fingerprint


async def test_shutdown_rollback_is_audited_as_shutting_down(serving: ServingTarget) -> None:
    assert (await stop_during_rotate(serving))["reason"] == "SHUTTING_DOWN"
