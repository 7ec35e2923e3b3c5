"""RSA keys made ahead of need, so a GenerateCSR does not wait for key generation.

RSA-2048 generation takes tens of milliseconds and RSA-4096 hundreds: more than the rest of a
Rotate. One background thread keeps up to `depth` keys of each configured size. The thread
lowers its own scheduling priority (on Linux a nice value belongs to a thread) so it only uses
idle CPU; cryptography releases the GIL while it generates, so the event loop keeps serving.

Each key is handed out at most once (popped under the lock) and lives only in this process's
memory until the caller makes it a pending or stored key, which persists it like any other key.
A killed daemon loses the pooled keys and nothing else. Keys are never logged; only counts are.
With the pool empty a key is made on the spot, as without a pool (docs/behaviour.md §5); the
filler's key in the making goes to that caller if it is ready first, and whichever of the two
keys the caller does not use goes to the pool (or to the next caller waiting): no key is made
for nothing, and a burst drains the pool more slowly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import rsa

from gnoicert.pki import crypto

log = logging.getLogger("gnoicertd.key_pool")

# Keys of the default size kept ready (other sizes 0 unless configured): enough for a run of
# Rotates back to back, which outpaces one core making keys (docs/decisions.md).
DEFAULT_DEPTH = 8
MAX_DEPTH = 16  # each RSA-4096 key costs about 0.4 s of CPU to make
_IDLE_NICE = 19


def parse_depths(
    value: object, key_sizes: tuple[int, ...], default_key_size: int
) -> tuple[tuple[int, int], ...]:
    """grpc.key_pool_depth: an integer (keys of default_key_size) or a table size -> depth.

    Raises ValueError with the problem (the configuration reader names the key).
    """
    if value is None:
        return ((default_key_size, DEFAULT_DEPTH),)
    if type(value) is int:
        table: Mapping[object, object] = {str(default_key_size): value}
    elif isinstance(value, Mapping):
        table = value
    else:
        raise ValueError(
            f"must be an integer or a table of key size = depth, got {type(value).__name__}"
        )
    depths: dict[int, int] = {}
    by_text = {str(size): size for size in key_sizes}
    for size_text, depth in table.items():
        size = by_text.get(size_text) if isinstance(size_text, str) else None
        if size is None:
            listed = ", ".join(map(str, key_sizes))
            raise ValueError(f"key size {size_text!r} is not one of grpc.key_sizes ({listed})")
        if type(depth) is not int or not 0 <= depth <= MAX_DEPTH:
            raise ValueError(f"depth for {size} must be an integer from 0 to {MAX_DEPTH}")
        depths[size] = depth
    return tuple(sorted(depths.items()))


class KeyPool:
    """Keys of each size ready to hand out once; `hits` and `misses` count takers."""

    def __init__(self, depths: Mapping[int, int] | tuple[tuple[int, int], ...] = ()) -> None:
        self._ready: dict[int, list[rsa.RSAPrivateKey]] = {}
        self._depths: dict[int, int] = {}
        self._changed = threading.Condition()
        self._closed = False
        self._started = False
        self._thread: threading.Thread | None = None
        # Callers that missed, waiting for the filler's next key of a size (oldest first).
        self._waiters: dict[int, list[_Waiter]] = {}
        self.hits = 0
        self.misses = 0
        self.set_depths(depths)

    def set_depths(self, depths: Mapping[int, int] | tuple[tuple[int, int], ...]) -> None:
        """Apply a (re)loaded configuration; keys above a lowered depth are dropped."""
        wanted = dict(depths.items() if isinstance(depths, Mapping) else depths)
        with self._changed:
            self._depths = {size: depth for size, depth in wanted.items() if depth > 0}
            for size in list(self._ready):
                del self._ready[size][self._depths.get(size, 0) :]
            self._start_filler()
            self._changed.notify_all()

    def start(self) -> None:
        """Start filling; the thread itself starts once some size is pooled (maybe at reload)."""
        with self._changed:
            self._started = True
            self._start_filler()

    def _start_filler(self) -> None:
        """Called with the lock held."""
        if self._started and self._depths and self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._fill, name="key-pool", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Drop every ready key and stop the filler; a key it is still making is dropped when
        made (not waited for: at idle priority on a busy host that may take seconds)."""
        with self._changed:
            self._closed = True
            self._ready.clear()
            self._changed.notify_all()

    @property
    def filling(self) -> bool:
        """Whether the filler thread runs (none while no size is pooled)."""
        with self._changed:
            return self._thread is not None and self._thread.is_alive()

    def ready(self, size: int) -> int:
        with self._changed:
            return len(self._ready.get(size, ()))

    def take(self, size: int) -> rsa.RSAPrivateKey | None:
        """A pooled key of exactly `size` bits, removed from the pool, or None (a miss)."""
        with self._changed:
            keys = self._ready.get(size)
            if keys:
                self.hits += 1
                key = keys.pop()
                self._changed.notify_all()
                log.debug("key pool hit for RSA-%d (%d left)", size, len(keys))
                return key
            self.misses += 1
            self._changed.notify_all()
        log.debug("key pool miss for RSA-%d: generating on the spot", size)
        return None

    async def key(self, size: int) -> rsa.RSAPrivateKey:
        """A fresh key of `size` bits: from the pool, or else the first ready of one made now off
        the event loop and the filler's next one; the other goes to the pool."""
        key = self.take(size)
        if key is not None:
            return key
        own = asyncio.ensure_future(asyncio.to_thread(crypto.generate_rsa_key, size))
        waiter = self._wait_for_filler(size)
        if waiter is None:  # a size not pooled: nothing else is being made
            return await own
        try:
            await asyncio.wait((own, waiter.handed), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self._abandon(waiter, own, size)
            raise
        if waiter.handed.done():
            log.debug("key pool miss for RSA-%d: took the filler's next key", size)
            own.add_done_callback(lambda made: self._offer(size, made))
            return waiter.handed.result()
        self._abandon(waiter, None, size)
        return own.result()

    def _wait_for_filler(self, size: int) -> _Waiter | None:
        with self._changed:
            if self._closed or not self._started or self._depths.get(size, 0) == 0:
                return None
            waiter = _Waiter(asyncio.get_running_loop())
            self._waiters.setdefault(size, []).append(waiter)
            return waiter

    def _abandon(
        self, waiter: _Waiter, own: asyncio.Future[rsa.RSAPrivateKey] | None, size: int
    ) -> None:
        """The caller no longer waits (on the loop): a key handed to it, or made for it, later
        goes to the pool."""
        with self._changed, contextlib.suppress(ValueError):
            self._waiters.get(size, []).remove(waiter)
        if waiter.handed.done() and not waiter.handed.cancelled():
            self._put(size, waiter.handed.result())
        waiter.handed.cancel()
        if own is not None:
            own.add_done_callback(lambda made: self._offer(size, made))

    def _offer(self, size: int, made: asyncio.Future[rsa.RSAPrivateKey]) -> None:
        if not made.cancelled() and made.exception() is None:
            self._put(size, made.result())

    def _put(self, size: int, key: rsa.RSAPrivateKey) -> None:
        """An unused key: to a caller waiting for one, else to the pool if it has room."""
        with self._changed:
            if self._closed or self._hand(size, key):
                return
            keys = self._ready.setdefault(size, [])
            if len(keys) < self._depths.get(size, 0):
                keys.append(key)
                self._changed.notify_all()

    def _hand(self, size: int, key: rsa.RSAPrivateKey) -> bool:
        """Give a new key to the oldest caller waiting for one (called with the lock held)."""
        waiters = self._waiters.get(size)
        if not waiters:
            return False
        waiter = waiters.pop(0)
        try:
            waiter.loop.call_soon_threadsafe(self._deliver, size, waiter, key)
        except RuntimeError:  # that loop is closed: nobody waits any more
            return False
        return True

    def _deliver(self, size: int, waiter: _Waiter, key: rsa.RSAPrivateKey) -> None:
        """On the waiter's loop: to the caller if it still waits, else to the pool."""
        if waiter.handed.done():
            self._put(size, key)
        else:
            waiter.handed.set_result(key)

    def _wanted(self) -> int | None:
        """The smallest size below its depth (called with the lock held)."""
        for size, depth in sorted(self._depths.items()):
            if len(self._ready.get(size, ())) < depth:
                return size
        return None

    def _fill(self) -> None:
        with contextlib.suppress(OSError):  # best effort: a full-priority filler still works
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _IDLE_NICE)
        while True:
            with self._changed:
                size = self._wanted()
                while size is None and not self._closed:
                    self._changed.wait()
                    size = self._wanted()
                if self._closed or size is None:
                    return
            key = crypto.generate_rsa_key(size)
            with self._changed:
                if self._closed:
                    return
                if self._hand(size, key):
                    continue
                keys = self._ready.setdefault(size, [])
                depth = self._depths.get(size, 0)
                if len(keys) < depth:
                    keys.append(key)
                    log.debug("key pool: %d of %d RSA-%d keys ready", len(keys), depth, size)


@dataclass(eq=False, slots=True)
class _Waiter:
    """A caller that missed: the filler's next key of its size is handed to it on its loop."""

    loop: asyncio.AbstractEventLoop
    handed: asyncio.Future[rsa.RSAPrivateKey] = field(init=False)

    def __post_init__(self) -> None:
        self.handed = self.loop.create_future()
