"""Configuration reload of a running daemon (docs/operator-guide.md "Configuration"): a changed
local_certificate is hot-swapped without dropping connections; a bad file is refused, audited,
and the running configuration stays."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest

from gnoicert.daemon.policy import TlsMode
from gnoicert.proto import cert_pb2, system_pb2, system_pb2_grpc
from tests.support.daemon import probe_fingerprint
from tests.support.flows import (
    ADMIN,
    ServerCert,
    audit_records,
    cert_stub,
    install,
    issue_server_cert,
    rotate_until_loaded,
)
from tests.support.pki import TestCA
from tests.support.target import Target, served_fingerprint, start_target, wait_for, write_config


class TwoCertificates:
    """A mutual-TLS target with "srv" and "srv2" installed and "srv" served."""

    def __init__(self, target: Target, ca: TestCA, srv: ServerCert, srv2: ServerCert) -> None:
        self.target, self.ca, self.srv, self.srv2 = target, ca, srv, srv2

    def channel(self) -> grpc.aio.Channel:
        chain, key = self.ca.client_credentials()
        return self.target.channel(self.ca.bundle_pem, client_chain_pem=chain, client_key_pem=key)


@pytest.fixture
async def two(tmp_path: Path, ca: TestCA) -> AsyncIterator[TwoCertificates]:
    target = await start_target(tmp_path, grpc_lines=['local_certificate = "srv"'])
    try:
        srv, srv2 = issue_server_cert(ca), issue_server_cert(ca)
        await install(cert_stub(target.channel()), "srv", srv, bundle_pem=ca.bundle_pem)
        await wait_for(lambda: target.daemon.listener_mode is TlsMode.MUTUAL, what="mutual TLS")
        running = TwoCertificates(target, ca, srv, srv2)
        await install(cert_stub(running.channel()), "srv2", srv2)
        assert served_fingerprint(target.address) == srv.fingerprint
        yield running
    finally:
        await target.close()


async def time_ok(channel: grpc.aio.Channel) -> bool:
    reply = await system_pb2_grpc.SystemStub(channel).Time(system_pb2.TimeRequest(), metadata=ADMIN)
    return reply.time > 0


async def test_reload_switches_local_certificate_without_dropping_connections(
    two: TwoCertificates,
) -> None:
    target = two.target
    established = two.channel()
    assert await time_ok(established)
    watch = asyncio.ensure_future(established.wait_for_state_change(grpc.ChannelConnectivity.READY))
    # An open stream on another connection must survive too (a Rotate of an unrelated ID).
    streaming = two.channel()
    other = issue_server_cert(two.ca)
    await install(cert_stub(streaming), "other", other)
    call = await rotate_until_loaded(cert_stub(streaming), "other", issue_server_cert(two.ca))
    listener = target.daemon._server

    write_config(target.directory, grpc_lines=['local_certificate = "srv2"'])
    assert await target.daemon.reload(target.config_path)

    assert served_fingerprint(target.address) == two.srv2.fingerprint
    assert target.daemon._server is listener
    assert await time_ok(established)
    assert not watch.done()
    watch.cancel()
    await call.write(
        cert_pb2.RotateCertificateRequest(finalize_rotation=cert_pb2.FinalizeRequest())
    )
    assert await call.code() == grpc.StatusCode.OK
    reply = await cert_stub(established).GetCertificates(
        cert_pb2.GetCertificatesRequest(), metadata=ADMIN
    )
    endpoints = {
        i.certificate_id: [e.endpoint for e in i.endpoints] for i in reply.certificate_info
    }
    assert endpoints == {"other": [], "srv": [], "srv2": ["grpc-server"]}
    assert audit_records(target.audit_path, event="config_reload", outcome="ok")


def _bad_files() -> dict[str, tuple[Callable[[Path], Path], str]]:
    served = 'local_certificate = "srv"'

    def syntax(d: Path) -> Path:
        path = write_config(d, grpc_lines=[served])
        path.write_text(path.read_text() + "[grpc\n")
        return path

    def audit_elsewhere(d: Path) -> Path:
        path = write_config(d, grpc_lines=[served])
        path.write_text(path.read_text().replace("audit.jsonl", "elsewhere.jsonl"))
        return path

    return {
        "syntax": (syntax, "invalid TOML"),
        "unknown-key": (lambda d: write_config(d, top_lines=["colour = 'blue'"]), "colour"),
        "bad-local-certificate": (
            lambda d: write_config(d, grpc_lines=["local_certificate = '../x'"]),
            "grpc.local_certificate",
        ),
        "bad-value": (
            lambda d: write_config(d, grpc_lines=[served, "hot_reloading = 'yes'"]),
            "grpc.hot_reloading",
        ),
        "listen-change": (lambda d: write_config(d, grpc_lines=[served], port=1), "grpc.listen"),
        "audit-log-change": (audit_elsewhere, "audit_log"),
    }


BAD_FILES = _bad_files()


@pytest.mark.parametrize("case", list(BAD_FILES))
async def test_bad_reload_is_refused_and_keeps_the_running_configuration(
    two: TwoCertificates, case: str
) -> None:
    target = two.target
    established = two.channel()
    assert await time_ok(established)
    running = target.daemon.config
    write_bad, named = BAD_FILES[case]
    assert write_bad(target.directory) == target.config_path

    assert not await target.daemon.reload(target.config_path)

    assert target.daemon.config is running
    assert served_fingerprint(target.address) == two.srv.fingerprint
    assert await time_ok(established)
    assert await time_ok(two.channel())
    refused = audit_records(target.audit_path, event="config_reload", outcome="refused")
    assert len(refused) == 1
    assert named in refused[0]["detail"]
    assert str(target.config_path) in refused[0]["detail"]


async def test_stop_during_a_listener_replacement_leaves_no_listener(
    tmp_path: Path, ca: TestCA
) -> None:
    """SIGTERM (stop) racing a reload that replaces the listener: nothing may outlive it."""
    lines = ["hot_reloading = false"]
    target = await start_target(tmp_path, grpc_lines=lines)
    try:
        channel = target.channel()
        await install(cert_stub(channel), "srv", issue_server_cert(ca), bundle_pem=ca.bundle_pem)
        await wait_for(lambda: target.daemon.listener_mode is TlsMode.MUTUAL, what="mutual TLS")
        await channel.close()
        write_config(tmp_path, grpc_lines=[*lines, 'local_certificate = "srv"'])
        reload = asyncio.ensure_future(target.daemon.reload(target.config_path))
        # Step the loop until the replacement is under way (the reconcile lock is only held
        # across an await while a listener is being replaced).
        for _ in range(10_000):
            if target.daemon._reconcile_lock.locked():
                break
            await asyncio.sleep(0)
        assert target.daemon._reconcile_lock.locked()
        await target.daemon.stop(grace=0)
        assert reload.done()
        assert probe_fingerprint(target.address) is None
    finally:
        await target.close()


def mode(target: Target) -> TlsMode:
    return target.daemon.listener_mode


async def test_reload_adding_and_removing_a_mutual_stanza_switches_the_mode(
    tmp_path: Path, ca: TestCA
) -> None:
    target = await start_target(tmp_path)
    try:
        ca_file = tmp_path / "clients-ca.pem"
        ca_file.write_bytes(ca.bundle_pem)
        assert await time_ok(target.channel())
        stanza = [
            "[grpc.mutual_authentication]",
            f'certificate_authority = "{ca_file}"',
        ]
        write_config(tmp_path, grpc_lines=stanza)
        assert await target.daemon.reload(target.config_path)
        assert mode(target) is TlsMode.MUTUAL
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await time_ok(target.channel())
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        chain, key = ca.client_credentials()
        assert await time_ok(target.channel(client_chain_pem=chain, client_key_pem=key))

        write_config(tmp_path)
        assert await target.daemon.reload(target.config_path)
        assert mode(target) is TlsMode.SERVER_ONLY
        assert await time_ok(target.channel())
        modes = [r["detail"] for r in audit_records(target.audit_path, event="mode_switch")]
        assert modes == ["listener now mutual", "listener now server-only"]
    finally:
        await target.close()


async def test_reload_reopens_the_audit_log_after_rotation(tmp_path: Path) -> None:
    """logrotate moves the file away, then SIGHUP: new records go to a new file."""
    target = await start_target(tmp_path)
    try:
        rotated = tmp_path / "audit.jsonl.1"
        target.audit_path.rename(rotated)
        assert await target.daemon.reload(target.config_path)
        with pytest.raises(grpc.aio.AioRpcError):
            await system_pb2_grpc.SystemStub(target.channel()).Time(system_pb2.TimeRequest())
        assert [r["event"] for r in audit_records(target.audit_path)] == [
            "config_reload",
            "auth_failed",
        ]
        assert stat.S_IMODE(target.audit_path.stat().st_mode) == 0o600
        assert not audit_records(rotated, event="auth_failed")
    finally:
        await target.close()
