"""TLS modes of the daemon (docs/behaviour.md §1): factory start, the switch to mutual TLS when
the first CA bundle arrives, and back when the bundle is revoked."""

from __future__ import annotations

import grpc
import pytest
from cryptography import x509

from gnoicert.daemon.policy import TlsMode
from gnoicert.proto import cert_pb2, system_pb2, system_pb2_grpc
from tests.support.flows import (
    ADMIN,
    audit_records,
    cert_stub,
    error_reason,
    fingerprint_of,
    install,
    install_with_csr,
    issue_server_cert,
    listed,
)
from tests.support.pki import TestCA
from tests.support.target import (
    Target,
    served_certificate_der,
    served_fingerprint,
    start_target,
    wait_for,
)

TIME = system_pb2.TimeRequest()


async def time_ok(channel: grpc.aio.Channel) -> bool:
    reply = await system_pb2_grpc.SystemStub(channel).Time(TIME, metadata=ADMIN)
    return reply.time > 0


async def test_factory_start_serves_self_signed_server_only_tls(target: Target) -> None:
    assert target.daemon.listener_mode is TlsMode.SERVER_ONLY
    served = x509.load_der_x509_certificate(served_certificate_der(target.address))
    assert served.issuer == served.subject  # self-signed
    assert fingerprint_of(target.factory_pem) == served_fingerprint(target.address)
    sans = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    # The client checks the server (hostname included) without presenting a certificate...
    channel = target.channel()
    assert await time_ok(channel)
    # ... and is known by username/password only.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await system_pb2_grpc.SystemStub(channel).Time(TIME)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(err.value) == "BAD_CREDENTIALS"
    # The factory certificate is not a gNOI entity.
    assert await listed(cert_stub(channel)) == {}


async def test_install_with_first_bundle_switches_to_mutual_tls(target: Target, ca: TestCA) -> None:
    old = target.channel()
    assert await time_ok(old)
    listener = target.daemon._server
    await install_with_csr(cert_stub(old), "srv", ca, bundle_pem=ca.bundle_pem)
    # The switch happens after the Install ended with OK: a new listener, same port.
    await wait_for(lambda: target.daemon.listener_mode is TlsMode.MUTUAL, what="mutual TLS")
    assert target.daemon._server is not listener

    # The connection of the Install is closed (GOAWAY): the channel leaves READY, and its next
    # RPC cannot reconnect without a client certificate.
    await wait_for(
        lambda: old.get_state() is not grpc.ChannelConnectivity.READY, what="old connection closed"
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await time_ok(old)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert old.get_state() is grpc.ChannelConnectivity.TRANSIENT_FAILURE

    # A new server-only client is refused by the handshake.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await time_ok(target.channel())
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE

    # A client with a certificate from the bundle's CA works (server still the factory cert).
    chain, key = ca.client_credentials()
    mtls = target.channel(client_chain_pem=chain, client_key_pem=key)
    assert await time_ok(mtls)
    assert list(await listed(cert_stub(mtls))) == ["srv"]

    switches = audit_records(target.audit_path, event="mode_switch")
    assert len(switches) == 1
    assert switches[0]["outcome"] == "ok"
    assert "mutual" in switches[0]["detail"]
    installs = audit_records(target.audit_path, event="install", outcome="committed")
    assert [r["certificate_id"] for r in installs] == ["srv"]
    assert installs[0]["identity"] == "user admin"


async def test_revoking_the_bundle_returns_to_server_only(target: Target, ca: TestCA) -> None:
    await install(
        cert_stub(target.channel()), "srv", issue_server_cert(ca), bundle_pem=ca.bundle_pem
    )
    await wait_for(lambda: target.daemon.listener_mode is TlsMode.MUTUAL, what="mutual TLS")
    chain, key = ca.client_credentials()
    mtls = target.channel(client_chain_pem=chain, client_key_pem=key)
    reply = await cert_stub(mtls).RevokeCertificates(
        cert_pb2.RevokeCertificatesRequest(certificate_id=["gnoi-ca-bundle"]), metadata=ADMIN
    )
    assert list(reply.revoked_certificate_id) == ["gnoi-ca-bundle"]
    await wait_for(
        lambda: target.daemon.listener_mode is TlsMode.SERVER_ONLY, what="server-only TLS"
    )
    assert await time_ok(target.channel())
    modes = [r["detail"] for r in audit_records(target.audit_path, event="mode_switch")]
    assert modes == ["listener now mutual", "listener now server-only"]


async def test_mutual_authentication_stanza_wins_over_the_bundle(
    tmp_path_factory: pytest.TempPathFactory, ca: TestCA
) -> None:
    """An explicit stanza with no-certificate keeps server-only TLS although a bundle is set."""
    target = await start_target(
        tmp_path_factory.mktemp("stanza"),
        grpc_lines=[
            "[grpc.mutual_authentication]",
            'certificate_authority = "gnoi-ca-bundle"',
            'client_certificate_request = "no-certificate"',
        ],
    )
    try:
        channel = target.channel()
        listener = target.daemon._server
        await install(cert_stub(channel), "srv", issue_server_cert(ca), bundle_pem=ca.bundle_pem)
        await target.daemon.reconcile()  # what the end of the Install scheduled, done now
        assert target.daemon._server is listener
        assert await time_ok(channel)
        assert channel.get_state() is grpc.ChannelConnectivity.READY
        assert await time_ok(target.channel())
        assert target.daemon.listener_mode is TlsMode.SERVER_ONLY
        assert audit_records(target.audit_path, event="mode_switch") == []
    finally:
        await target.close()
