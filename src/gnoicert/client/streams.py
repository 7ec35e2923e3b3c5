"""One Install or Rotate stream: write, read, read to the end, every failure translated.

grpc.aio reports a stream that already ended in several ways (AioRpcError from read or write,
asyncio.InvalidStateError from write, EOF from read); this turns all of them into the client's
errors. `after_load` marks failures of a Rotate after its load step: the target rolled back.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from gnoicert.client.errors import GnoiCertError, ProtocolError, RpcFailed, rpc_failed

StreamCall = grpc.aio.StreamStreamCall[Any, Any]


@dataclass(frozen=True, slots=True)
class Stream:
    """A started bidi call with the context its errors need (target, RPC name, timeout)."""

    call: StreamCall
    target: str
    rpc: str
    timeout: float

    def cancel_if_running(self) -> None:
        """Cancel unless finished: the target rolls back whatever the stream changed."""
        if not self.call.done():
            self.call.cancel()

    async def write(self, request: Any, *, after_load: bool = False) -> None:
        try:
            await self.call.write(request)
        except grpc.aio.AioRpcError as exc:
            raise self._failed(exc, after_load) from exc
        except asyncio.InvalidStateError:
            # The stream had already ended: its status says why (UNIMPLEMENTED, say).
            raise await self._ended_early(after_load) from None

    async def read(self, *, after_load: bool = False) -> Any:
        """The next response; the stream ending instead is an error."""
        response = await self._read_within("no answer", after_load)
        if response is grpc.aio.EOF:
            raise ProtocolError(
                f"the target ended the {self.rpc} stream without an answer", target=self.target
            )
        return response

    async def half_close(self, *, after_load: bool = False) -> None:
        try:
            await self.call.done_writing()
        except grpc.aio.AioRpcError as exc:
            raise self._failed(exc, after_load) from exc

    async def finish(self, *, after_load: bool = False) -> None:
        """Read to the end of the stream: the final status must be OK."""
        response = await self._read_within(f"the {self.rpc} stream did not end", after_load)
        if response is not grpc.aio.EOF:
            raise ProtocolError(f"unexpected message at the end of {self.rpc}", target=self.target)

    async def _read_within(self, on_timeout: str, after_load: bool) -> Any:
        """The next read (a response or EOF) within the timeout; on timeout the stream is
        cancelled (nothing more is read from it) and the error says `on_timeout`."""
        try:
            return await asyncio.wait_for(self.call.read(), timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise self._failed(exc, after_load) from exc
        except TimeoutError:
            self.call.cancel()
            raise RpcFailed(
                code=grpc.StatusCode.DEADLINE_EXCEEDED,
                details=f"{on_timeout} within {self.timeout:g} s",
                target=self.target,
                rpc=self.rpc,
            ) from None

    def _failed(self, exc: grpc.aio.AioRpcError, after_load: bool) -> RpcFailed:
        return rpc_failed(exc, target=self.target, rpc=self.rpc, after_load=after_load)

    async def _ended_early(self, after_load: bool) -> GnoiCertError:
        code = await self.call.code()
        if code == grpc.StatusCode.OK:
            return ProtocolError(
                f"the target ended the {self.rpc} stream early", target=self.target
            )
        status = grpc.aio.AioRpcError(
            code,
            await self.call.initial_metadata(),
            await self.call.trailing_metadata(),
            details=await self.call.details(),
        )
        return self._failed(status, after_load)
