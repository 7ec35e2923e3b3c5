"""Authentication and authorization per call (docs/behaviour.md §s 1, 2 and 8): every refusal has
its status code and ErrorInfo reason and leaves an auth_failed audit record; failures from one
host are rate-limited; health and reflection need no credentials."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gnoicert.daemon.policy import TlsMode
from gnoicert.proto import cert_pb2, system_pb2, system_pb2_grpc
from tests.support.flows import (
    ADMIN,
    READER,
    Metadata,
    audit_records,
    cert_stub,
    error_reason,
    install,
    issue_server_cert,
    stream_refusal,
    x509_field,
)
from tests.support.pki import TestCA
from tests.support.target import Target, start_target, wait_for

if TYPE_CHECKING:
    from tests.support.flows import CertStub

TIME = system_pb2.TimeRequest()


async def refused(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code(), error_reason(err.value)


# -- server-only TLS: username/password ---------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "identity"),
    [
        ((), ""),
        ((("username", "admin"), ("password", "not-the-password")), "admin"),
        ((("username", "mallory"), ("password", "admin-password")), "mallory"),
        ((("username", "admin"),), "admin"),
    ],
    ids=["no-credentials", "wrong-password", "unknown-user", "no-password"],
)
async def test_bad_credentials_are_refused_and_audited(
    target: Target, metadata: Metadata, identity: str
) -> None:
    stub = system_pb2_grpc.SystemStub(target.channel())
    code, reason = await refused(stub.Time(TIME, metadata=metadata))
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "BAD_CREDENTIALS")
    records = audit_records(target.audit_path, event="auth_failed")
    assert len(records) == 1
    record = records[0]
    assert record["rpc"] == "/gnoi.system.System/Time"
    assert record["reason"] == "BAD_CREDENTIALS"
    assert record["outcome"] == "refused"
    assert record["identity"] == identity
    assert record["peer"].startswith("ipv4:127.0.0.1:")
    assert "admin-password" not in target.audit_path.read_text()


async def test_read_only_user_calling_install_is_refused_and_audited(target: Target) -> None:
    code, reason = await stream_refusal(cert_stub(target.channel()).Install(metadata=READER))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_AUTHORIZED")
    records = audit_records(target.audit_path, event="auth_failed")
    assert [(r["rpc"], r["reason"], r["identity"]) for r in records] == [
        ("/gnoi.certificate.CertificateManagement/Install", "NOT_AUTHORIZED", "reader")
    ]


async def test_read_only_user_may_only_read(target: Target, ca: TestCA) -> None:
    channel = target.channel()
    stub = cert_stub(channel)
    # Allowed: GetCertificates, CanGenerateCSR, Time.
    assert not (
        await stub.GetCertificates(cert_pb2.GetCertificatesRequest(), metadata=READER)
    ).certificate_info
    can = await stub.CanGenerateCSR(
        cert_pb2.CanGenerateCSRRequest(
            key_type=cert_pb2.KT_RSA, certificate_type=cert_pb2.CT_X509, key_size=2048
        ),
        metadata=READER,
    )
    assert can.can_generate
    assert (await system_pb2_grpc.SystemStub(channel).Time(TIME, metadata=READER)).time > 0
    # Refused: every call that changes something.
    leaf = issue_server_cert(ca)
    writes: list[Callable[[], Awaitable[Any]]] = [
        lambda: stub.GenerateCSR(cert_pb2.GenerateCSRRequest(certificate_id="x"), metadata=READER),
        lambda: stub.LoadCertificate(leaf.load_request("x"), metadata=READER),
        lambda: stub.LoadCertificateAuthorityBundle(
            cert_pb2.LoadCertificateAuthorityBundleRequest(
                ca_certificates=[x509_field(ca.bundle_pem)]
            ),
            metadata=READER,
        ),
        lambda: stub.RevokeCertificates(
            cert_pb2.RevokeCertificatesRequest(certificate_id=["x"]), metadata=READER
        ),
    ]
    for write in writes:
        assert await refused(write()) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_AUTHORIZED")
    rotate = stub.Rotate(metadata=READER)
    assert await rotate.code() == grpc.StatusCode.PERMISSION_DENIED
    assert len(audit_records(target.audit_path, event="auth_failed")) == len(writes) + 1
    assert not await listed_ids(stub)  # nothing changed


async def listed_ids(stub: CertStub) -> list[str]:
    reply = await stub.GetCertificates(cert_pb2.GetCertificatesRequest(), metadata=ADMIN)
    return [i.certificate_id for i in reply.certificate_info]


async def test_failures_from_one_host_are_rate_limited(tmp_path: Path) -> None:
    target = await start_target(tmp_path, top_lines=["auth_failure_limit = 3"])
    try:
        stub = system_pb2_grpc.SystemStub(target.channel())
        wrong = (("username", "admin"), ("password", "guess"))
        for _ in range(3):
            assert (await refused(stub.Time(TIME, metadata=wrong)))[0] == (
                grpc.StatusCode.UNAUTHENTICATED
            )
        # The right password (of any user) from the same host is now refused too.
        for metadata in (ADMIN, READER):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Time(TIME, metadata=metadata)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert error_reason(err.value) == "RATE_LIMITED"
            assert "too many failed attempts" in (err.value.details() or "")
        records = audit_records(target.audit_path, event="auth_failed")
        assert len(records) == 5
        assert "too many failed attempts" in records[-1]["detail"]
    finally:
        await target.close()


async def test_health_and_reflection_need_no_credentials(target: Target) -> None:
    channel = target.channel()
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = reflection.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    answer = await call.read()
    await call.done_writing()
    assert isinstance(answer, reflection_pb2.ServerReflectionResponse)
    services = {s.name for s in answer.list_services_response.service}
    assert {
        "gnoi.certificate.CertificateManagement",
        "gnoi.system.System",
        "grpc.health.v1.Health",
    } <= services
    assert audit_records(target.audit_path, event="auth_failed") == []


# -- mutual TLS: client certificates ------------------------------------------------------------


@pytest.fixture
async def mutual(target: Target, ca: TestCA) -> Target:
    await install(
        cert_stub(target.channel()), "srv", issue_server_cert(ca), bundle_pem=ca.bundle_pem
    )
    await wait_for(lambda: target.daemon.listener_mode is TlsMode.MUTUAL, what="mutual TLS")
    return target


async def test_mutual_tls_refuses_foreign_and_missing_client_certificates(
    mutual: Target, ca: TestCA
) -> None:
    foreign_chain, foreign_key = TestCA(name="someone else's CA").client_credentials()
    foreign = mutual.channel(client_chain_pem=foreign_chain, client_key_pem=foreign_key)
    for channel in (foreign, mutual.channel()):
        code, _ = await refused(system_pb2_grpc.SystemStub(channel).Time(TIME, metadata=ADMIN))
        # The TLS handshake refuses it (TLS 1.3: the client only sees the socket close).
        assert code == grpc.StatusCode.UNAVAILABLE
    # A certificate from the bundle's CA passes the handshake, and the password is still checked
    # because users are configured.
    chain, key = ca.client_credentials(cn="operator-7")
    good = mutual.channel(client_chain_pem=chain, client_key_pem=key)
    stub = system_pb2_grpc.SystemStub(good)
    assert await refused(stub.Time(TIME)) == (grpc.StatusCode.UNAUTHENTICATED, "BAD_CREDENTIALS")
    assert (await stub.Time(TIME, metadata=ADMIN)).time > 0
    code, reason = await stream_refusal(cert_stub(good).Install(metadata=READER))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_AUTHORIZED")
    records = audit_records(mutual.audit_path, event="auth_failed")
    assert [(r["reason"], r["identity"]) for r in records] == [
        ("BAD_CREDENTIALS", "CN=operator-7"),
        ("NOT_AUTHORIZED", "reader"),
    ]


async def test_mutual_tls_without_users_takes_the_certificate_as_identity(
    tmp_path: Path, ca: TestCA
) -> None:
    """An explicit stanza naming a CA file: mutual TLS from the first start, no users needed."""
    ca_file = tmp_path / "clients-ca.pem"
    ca_file.write_bytes(ca.bundle_pem)
    target = await start_target(
        tmp_path,
        users=(),
        grpc_lines=[
            "[grpc.mutual_authentication]",
            f'certificate_authority = "{ca_file}"',
            'client_certificate_request = "require-certificate-and-verify"',
        ],
    )
    try:
        assert target.daemon.listener_mode is TlsMode.MUTUAL
        chain, key = ca.client_credentials(cn="robot")
        channel = target.channel(client_chain_pem=chain, client_key_pem=key)
        assert (await system_pb2_grpc.SystemStub(channel).Time(TIME)).time > 0
        leaf = issue_server_cert(ca)
        await install(cert_stub(channel), "srv", leaf, bundle_pem=ca.bundle_pem, metadata=())
        records = audit_records(target.audit_path, event="install", outcome="committed")
        assert records[0]["identity"] == "client CN=robot"
        code, _ = await refused(system_pb2_grpc.SystemStub(target.channel()).Time(TIME))
        assert code == grpc.StatusCode.UNAVAILABLE
    finally:
        await target.close()
