"""ReadAhead: a read is always posted on the request stream (docs/behaviour.md §3)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gnoicert.daemon.read_ahead import ReadAhead


class Wire:
    """A request stream whose reads are counted, fed by the test."""

    def __init__(self) -> None:
        self.reads_posted = 0
        self.incoming: asyncio.Queue[str | Exception | None] = asyncio.Queue()

    async def stream(self) -> AsyncIterator[str]:
        while True:
            self.reads_posted += 1
            item = await self.incoming.get()
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item


async def until(condition: object, what: str) -> None:
    async with asyncio.timeout(5):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0)  # let the reader task run


async def test_the_next_read_is_posted_before_the_handler_asks() -> None:
    wire = Wire()
    reader = ReadAhead(wire.stream())
    await until(lambda: wire.reads_posted == 1, "the first read")
    wire.incoming.put_nowait("load")
    assert await reader.next() == "load"
    # The handler is busy (writing its load response): the next read is already posted.
    await until(lambda: wire.reads_posted == 2, "the read behind the load")
    wire.incoming.put_nowait("finalize")
    wire.incoming.put_nowait(None)
    assert await reader.next() == "finalize"
    assert await reader.next() is None
    assert await reader.next() is None  # the end stays the end
    reader.close()


async def test_settle_returns_what_the_read_in_flight_delivered() -> None:
    wire = Wire()
    reader = ReadAhead(wire.stream())
    wire.incoming.put_nowait("finalize")
    assert await reader.settle(5) == "finalize"
    wire.incoming.put_nowait(None)
    assert await reader.settle(5) is None
    reader.close()


async def test_settle_is_bounded_when_no_message_comes() -> None:
    wire = Wire()
    reader = ReadAhead(wire.stream())
    assert await reader.settle(0.01) is None
    reader.close()


async def test_a_failed_read_is_raised_in_the_handler_in_order() -> None:
    wire = Wire()
    reader = ReadAhead(wire.stream())
    wire.incoming.put_nowait("load")
    wire.incoming.put_nowait(ValueError("undecodable"))
    assert await reader.next() == "load"
    with pytest.raises(ValueError, match="undecodable"):
        await reader.next()
    assert await reader.next() is None
    reader.close()


async def test_reads_ahead_by_one_message_only() -> None:
    wire = Wire()
    reader = ReadAhead(wire.stream())
    for name in ("a", "b", "c", "d"):
        wire.incoming.put_nowait(name)
    await until(lambda: wire.reads_posted == 2, "two reads")
    for _ in range(20):
        await asyncio.sleep(0)
    assert wire.reads_posted == 2  # one message in the slot, one held: no more
    assert await reader.next() == "a"
    reader.close()
