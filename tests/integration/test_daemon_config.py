"""Configuration reload of a running daemon (DESIGN.md "Configuration", issue 5): a changed
local_certificate is hot-swapped without dropping connections; a bad file is refused, audited,
and the running configuration stays."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest

from gnoicert.proto import cert_pb2, system_pb2, system_pb2_grpc
from gnoicert.target.policy import TlsMode
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
