"""The daemon's native memory bound, and an opt-in memory report for finding leaks.

glibc gives each thread that allocates its own malloc arena (up to 8 per core), and memory
freed in an arena is seldom returned: under a stream of requests served by grpc's and asyncio's
worker threads the RSS climbed from 86 to 154 MiB over 100,000 fuzzed messages while the Python
heap (tracemalloc) stayed flat; with two arenas it stays at about 80 MiB
(docs/platform-notes.md). `limit_malloc_arenas` sets that limit before any thread starts, and
`fix_mmap_threshold` keeps scrypt's 16 MiB blocks from staying resident after password checks;
an operator's own MALLOC_ARENA_MAX or MALLOC_MMAP_THRESHOLD_ is kept.

GNOICERTD_DEBUG_MEMORY=SECONDS: tracemalloc runs from start-up and every SECONDS the daemon
logs the ten allocation sites that grew most since the first report, the live object types
that grew most, and the gc counters. Off by default: tracemalloc slows every allocation.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import gc
import logging
import os

log = logging.getLogger("gnoicertd.memory")
ENV = "GNOICERTD_DEBUG_MEMORY"


MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt parameter numbers in glibc's malloc.h
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1024 * 1024


def limit_malloc_arenas() -> bool:
    """mallopt(M_ARENA_MAX, 2) on glibc; False where it does not apply or was set already."""
    return _mallopt("MALLOC_ARENA_MAX", _M_ARENA_MAX, MALLOC_ARENAS)


def fix_mmap_threshold() -> bool:
    """mallopt(M_MMAP_THRESHOLD, 1 MiB) on glibc; False where it does not apply or was set.

    glibc raises its mmap threshold to the size of any mmapped block that is freed (up to
    32 MiB). The first scrypt check frees a 16 MiB block, so every later one took its 16 MiB
    from the heap, where it stayed resident after the check (docs/platform-notes.md). A
    fixed threshold keeps blocks of 1 MiB and more in their own mappings, returned on free.
    """
    return _mallopt("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def _mallopt(environment_name: str, parameter: int, value: int) -> bool:
    """mallopt(parameter, value) unless the operator's environment sets it.

    mallopt is looked up among the symbols the process has loaded (libc's among them), not
    through ctypes.util, whose imports (tempfile, shutil, bz2, lzma) would stay resident.
    """
    if environment_name in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    return bool(mallopt(parameter, value))


def interval() -> float | None:
    value = os.environ.get(ENV, "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def _types() -> collections.Counter[str]:
    return collections.Counter(type(o).__qualname__ for o in gc.get_objects())


async def report_forever(seconds: float) -> None:
    import tracemalloc  # only when asked for: a daemon without the report does not hold it

    tracemalloc.start(6)
    await asyncio.sleep(seconds)
    base, base_types = tracemalloc.take_snapshot(), _types()
    while True:
        await asyncio.sleep(seconds)
        snapshot, types = tracemalloc.take_snapshot(), _types()
        current, _peak = tracemalloc.get_traced_memory()
        log.warning("traced %.1f MiB; gc counts %s", current / 2**20, gc.get_count())
        for stat in snapshot.compare_to(base, "traceback")[:10]:
            where = " <- ".join(f"{f.filename}:{f.lineno}" for f in list(stat.traceback)[:4])
            log.warning("  %+9d B %+7d blocks at %s", stat.size_diff, stat.count_diff, where)
        grown = (types - base_types).most_common(8)
        log.warning("  objects grown: %s", ", ".join(f"{k} +{v}" for k, v in grown))
