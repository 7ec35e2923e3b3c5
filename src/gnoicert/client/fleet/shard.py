"""`--shard I/N`: one machine's part of the selected targets.

A target's shard depends only on its name and N (a SHA-256 of the name), never on its place in
the list, so adding or removing a target moves no other target between shards, and every
machine computes the same split without talking to the others.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from typing import TypeVar

_T = TypeVar("_T")
_SHARD_RE = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
MAX_SHARDS = 10_000


def parse_shard(text: str) -> tuple[int, int]:
    """(I, N) from "I/N", with 1 <= I <= N; ValueError says what is wrong."""
    match = _SHARD_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"--shard must be I/N (for example 2/5), got {text!r}")
    index, count = int(match[1]), int(match[2])
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"--shard {text}: N must be from 1 to {MAX_SHARDS}")
    if not 1 <= index <= count:
        raise ValueError(f"--shard {text}: I must be from 1 to {count}")
    return index, count


def shard_of(name: str, count: int) -> int:
    """The 1-based shard of a target name among `count` shards."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def take_shard(
    items: Sequence[_T], index: int, count: int, *, name: Callable[[_T], str] = str
) -> list[_T]:
    """The items of shard `index` of `count`, in their original order."""
    if not 1 <= index <= count:
        raise ValueError(f"shard {index} is not in 1..{count}")
    return [item for item in items if shard_of(name(item), count) == index]
