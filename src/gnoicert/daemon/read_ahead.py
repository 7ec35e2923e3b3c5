"""A read always posted on a request stream (docs/behaviour.md §3, docs/platform-notes.md).

grpcio hands a message to the handler only through a read the handler has posted; a message that
arrives with no read posted is dropped when a cancel follows it. A handler that reads only after
its write of the load response has completed can therefore lose the Finalize of a client that
writes it and cancels at once (docs/behaviour.md §9). A ReadAhead pulls the request iterator from
its own task into a one-slot queue, so the next read is posted while the handler is busy.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Generic, TypeVar

_T = TypeVar("_T")


class _End(enum.Enum):
    END = enum.auto()


_END = _End.END


@dataclass(frozen=True, slots=True)
class _Failed:
    error: Exception


class ReadAhead(Generic[_T]):
    """The messages of one request stream, read ahead of the handler by at most one.

    One slot is enough for every message order of docs/behaviour.md §3: the client waits for
    the answer to each message but Finalize, and Finalize is the last. A client that sends more
    than that only makes the reader wait for the slot (no unbounded buffering).
    """

    def __init__(self, requests: AsyncIterator[_T]) -> None:
        self._requests = requests
        self._slot: asyncio.Queue[_T | _End | _Failed] = asyncio.Queue(maxsize=1)
        self._ended = False
        self._task = asyncio.create_task(self._pump(), name="gnoicert stream read-ahead")

    async def next(self) -> _T | None:
        """The next message; None once the stream has ended. Re-raises what the read raised."""
        if self._ended:
            return None
        item = await self._slot.get()
        if item is _END:
            self._ended = True
            return None
        if isinstance(item, _Failed):
            self._ended = True
            raise item.error
        return item

    async def settle(self, timeout: float) -> _T | None:
        """The message the read in flight delivers, if it delivers one within timeout.

        For a handler being cancelled: grpcio ends the read of a cancelled call promptly, with
        the message if it arrived before the cancel. Waits on the read itself, not on a clock.
        """
        if self._ended:
            return None
        try:
            return await asyncio.wait_for(self.next(), timeout)
        except Exception:  # no message: the stream failed, or the read never ended
            return None

    def close(self) -> None:
        """Stop reading (the handler has ended, or is ending after settle())."""
        self._task.cancel()

    async def _pump(self) -> None:
        while True:
            item: _T | _End | _Failed
            try:
                item = await anext(self._requests, _END)
            except Exception as exc:  # re-raised in the handler, where errors are mapped
                item = _Failed(exc)
            await self._slot.put(item)
            if item is _END or isinstance(item, _Failed):
                return
