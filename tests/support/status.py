"""Read the rich status a gnoicert target ends a failed RPC with: code, ErrorInfo reason, domain.

Clients must never have to parse messages (docs/behaviour.md §2), so tests assert on the
`google.rpc.ErrorInfo` detail the way a client would, through grpcio-status.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

DOMAIN = "gnoicert"


@dataclass(frozen=True, slots=True)
class Failure:
    """What a client learns from a failed RPC."""

    code: grpc.StatusCode
    reason: str
    domain: str
    message: str

    def expect(self, code: grpc.StatusCode, reason: str) -> Failure:
        """Assert code, reason and the project's domain; returns self for further checks."""
        assert (self.code, self.reason, self.domain) == (code, reason, DOMAIN), self
        return self


def failure_of(error: grpc.aio.AioRpcError) -> Failure:
    """The code and the single ErrorInfo of error; a status without one fails the test."""
    code = error.code()
    assert code is not grpc.StatusCode.UNKNOWN, f"an RPC ended in UNKNOWN: {error.details()}"
    status = rpc_status.from_call(error)
    assert status is not None, f"{code.name} without a google.rpc.Status: {error.details()}"
    infos = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            infos.append(info)
    assert len(infos) == 1, f"expected one ErrorInfo detail, got {len(infos)}: {status}"
    return Failure(code, infos[0].reason, infos[0].domain, error.details() or "")


async def failure(awaitable: Awaitable[Any]) -> Failure:
    """Await an RPC step (a unary call, a stream read) that must fail; its Failure."""
    try:
        result = await awaitable
    except grpc.aio.AioRpcError as error:
        return failure_of(error)
    raise AssertionError(f"expected the RPC to fail, got {result!r}")


async def expect(awaitable: Awaitable[Any], code: grpc.StatusCode, reason: str) -> Failure:
    """Await an RPC step that must fail with code and ErrorInfo reason (domain gnoicert)."""
    return (await failure(awaitable)).expect(code, reason)


async def final_code(call: Any) -> grpc.StatusCode:
    """The status code a streaming call ended with; never UNKNOWN."""
    code: grpc.StatusCode = await call.code()
    assert code is not grpc.StatusCode.UNKNOWN, f"a stream ended in UNKNOWN: {await call.details()}"
    return code
