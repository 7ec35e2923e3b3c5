"""Bytes that are not a valid protobuf of the request type (docs/behaviour.md §7): the caller is
authenticated first, then refused with MALFORMED_REQUEST; one audit record each; no traceback."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from tests.support.flows import ADMIN, audit_records, error_reason
from tests.support.fuzz import stream_once
from tests.support.target import Target

# A truncated length-delimited field 1: not a valid message of any type.
GARBAGE = b"\x0a\xff\xff\xff\xff\x0f"
UNARY = [
    "/gnoi.certificate.CertificateManagement/GenerateCSR",
    "/gnoi.certificate.CertificateManagement/LoadCertificate",
    "/gnoi.certificate.CertificateManagement/LoadCertificateAuthorityBundle",
    "/gnoi.certificate.CertificateManagement/GetCertificates",
    "/gnoi.certificate.CertificateManagement/RevokeCertificates",
    "/gnoi.certificate.CertificateManagement/CanGenerateCSR",
    "/gnoi.system.System/Time",
]
STREAMS = [
    "/gnoi.certificate.CertificateManagement/Rotate",
    "/gnoi.certificate.CertificateManagement/Install",
]


def _unary(
    channel: grpc.aio.Channel, method: str
) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(method)  # bytes in, bytes out


@pytest.mark.parametrize("method", UNARY)
async def test_unary_garbage_without_credentials_is_unauthenticated(
    target: Target, method: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _unary(target.channel(), method)(GARBAGE, timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(err.value) == "BAD_CREDENTIALS"


@pytest.mark.parametrize("method", UNARY)
async def test_unary_garbage_is_malformed_and_audited(target: Target, method: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _unary(target.channel(), method)(GARBAGE, metadata=ADMIN, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(err.value) == "MALFORMED_REQUEST"
    assert "is not a valid" in (err.value.details() or "")
    [record] = audit_records(target.audit_path, rpc=method, event="refused")
    assert record["reason"] == "MALFORMED_REQUEST"
    assert record["identity"] == "user admin"


@pytest.mark.parametrize("method", STREAMS)
@pytest.mark.parametrize("user", [None, "admin"])
async def test_stream_garbage(target: Target, method: str, user: str | None) -> None:
    # The sync client: grpc.aio's reports its own INTERNAL when its write races the server's
    # early status (see stream_once).
    creds = grpc.ssl_channel_credentials(root_certificates=target.factory_pem)
    with grpc.secure_channel(target.address, creds) as channel:
        code, _details = await asyncio.to_thread(
            stream_once, channel, method, GARBAGE, ADMIN if user else ()
        )
    assert code == ("INVALID_ARGUMENT" if user else "UNAUTHENTICATED")
    if user:
        [record] = audit_records(target.audit_path, rpc=method, event="refused")
        assert record["reason"] == "MALFORMED_REQUEST"


async def test_health_garbage_is_malformed(target: Target) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _unary(target.channel(), "/grpc.health.v1.Health/Check")(GARBAGE, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(err.value) == "MALFORMED_REQUEST"
