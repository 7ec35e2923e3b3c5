"""A handler wrapper that counts running RPC handlers, so a stop can wait for them; and the
`around_handler` it shares with the metrics' RPC timer.

Wrappers are applied once, when the methods are registered (decoding.add_service), not by a
grpc.aio server interceptor: an interceptor runs a coroutine chain and rewraps the handler on
every call, which cost about a tenth of a GetCertificates call (docs/platform-notes.md).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar

_T = TypeVar("_T")
_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


def around_handler(handler: Any, enter: Callable[[], _T], leave: Callable[[_T], None]) -> Any:
    """handler (a grpc.RpcMethodHandler) with each async behaviour run between enter() and
    leave(enter's result): leave runs when a call ends, whatever the outcome, after a stream's
    own finally (InFlight and the metrics' RpcTimer both need exactly that window)."""
    return handler._replace(
        **{kind: _around(getattr(handler, kind), enter, leave) for kind in _KINDS}
    )


def _around(behavior: Any, enter: Callable[[], _T], leave: Callable[[_T], None]) -> Any:
    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            entered = enter()
            replies = behavior(request, context)
            try:
                async for reply in replies:
                    yield reply
            finally:
                try:
                    await replies.aclose()  # its own finally runs now, not at GC
                finally:
                    leave(entered)

        return stream
    if inspect.iscoroutinefunction(behavior):

        async def call(request: Any, context: Any) -> Any:
            entered = enter()
            try:
                return await behavior(request, context)
            finally:
                leave(entered)

        return call
    return behavior  # None (not this kind), or not async: not ours to wrap


class HandlerWrapper(Protocol):
    """Rewraps the handler (a grpc.RpcMethodHandler) of the method rpc, once, at registration."""

    def wrap(self, handler: Any, rpc: str) -> Any: ...


class InFlight:
    """Counts running RPC handlers, so that stop() returns only after the handlers cancelled at
    the end of the grace period have run their rollbacks and written their audit records (and
    before the store and the audit log are closed under them)."""

    def __init__(self) -> None:
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def wrap(self, handler: Any, rpc: str) -> Any:
        return around_handler(handler, self._enter, lambda _: self._leave())

    async def wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _enter(self) -> None:
        self._running += 1
        self._idle.clear()

    def _leave(self) -> None:
        self._running -= 1
        if not self._running:
            self._idle.set()
