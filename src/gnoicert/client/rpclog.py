"""Every RPC with its time and final status, at DEBUG on the "gnoicert.client.rpc" logger.

A line reads "rpc GetCertificates 12.3 ms OK" (or the status code name). Unary RPCs are timed by
a grpc.aio client interceptor on the channel; the Install and Rotate streams by a done callback
on the call, because a stream-stream interceptor would put grpc.aio's request queue between the
client and its writes (docs/platform-notes.md, "Client interceptors").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio

LOGGER_NAME = "gnoicert.client.rpc"
_log = logging.getLogger(LOGGER_NAME)
# Tasks that read a finished stream's status; referenced until done so none is collected early.
_pending: set[asyncio.Task[None]] = set()


def method_name(method: str | bytes) -> str:
    """ "GetCertificates" from "/gnoi.certificate.CertificateManagement/GetCertificates"."""
    text = method.decode() if isinstance(method, bytes) else method
    return text.rsplit("/", 1)[-1]


def _emit(rpc: str, started: float, outcome: str) -> None:
    _log.debug("rpc %s %.1f ms %s", rpc, (time.perf_counter() - started) * 1000, outcome)


class UnaryTimer(grpc.aio.UnaryUnaryClientInterceptor):
    """Waits for each unary call to end, logs it, and hands the finished call on unchanged."""

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        started = time.perf_counter()
        rpc = method_name(client_call_details.method)
        call = await continuation(client_call_details, request)
        if not _log.isEnabledFor(logging.DEBUG):
            return call
        try:
            await call
        except grpc.aio.AioRpcError as exc:
            _emit(rpc, started, exc.code().name)
        except asyncio.CancelledError:
            _emit(rpc, started, "CANCELLED")
            raise
        else:
            _emit(rpc, started, "OK")
        return call


def time_stream(call: grpc.aio.Call, rpc: str) -> None:
    """Log the stream's time and status when it ends (the status is read in a task, since
    grpc.aio gives it only to a coroutine)."""
    if not _log.isEnabledFor(logging.DEBUG):
        return
    started = time.perf_counter()

    async def report(finished: grpc.aio.Call) -> None:
        outcome = "CANCELLED" if finished.cancelled() else (await finished.code()).name
        _emit(rpc, started, outcome)

    def done(finished: grpc.aio.Call) -> None:
        task = asyncio.get_running_loop().create_task(report(finished))
        _pending.add(task)
        task.add_done_callback(_pending.discard)

    call.add_done_callback(done)
