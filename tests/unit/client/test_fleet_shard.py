"""--shard I/N: a partition of the targets, stable when the list changes."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gnoicert.client.fleet.shard import parse_shard, shard_of, take_shard

_NAMES = st.lists(st.from_regex(r"[a-z0-9.-]{1,12}", fullmatch=True), unique=True, max_size=60)


@given(names=_NAMES, count=st.integers(1, 12))
def test_the_shards_partition_the_targets_in_order(names: list[str], count: int) -> None:
    shards = [take_shard(names, index, count) for index in range(1, count + 1)]
    assert sorted(name for shard in shards for name in shard) == sorted(names)
    for shard in shards:
        assert shard == [name for name in names if name in shard]  # original order kept


@given(names=_NAMES, extra=st.from_regex(r"[A-Z]{1,8}", fullmatch=True), count=st.integers(1, 9))
def test_adding_or_reordering_targets_moves_no_other(
    names: list[str], extra: str, count: int
) -> None:
    before = {name: shard_of(name, count) for name in names}
    grown = [extra, *reversed(names)]
    after = {
        name: index for index in range(1, count + 1) for name in take_shard(grown, index, count)
    }
    assert all(after[name] == shard for name, shard in before.items())


def test_the_split_is_roughly_even() -> None:
    names = [f"dev{i:04d}" for i in range(1, 1001)]
    sizes = [len(take_shard(names, index, 4)) for index in range(1, 5)]
    assert sum(sizes) == 1000
    assert all(200 < size < 300 for size in sizes), sizes


def test_the_assignment_is_fixed_across_runs() -> None:
    # A change of hash would silently reshuffle every operator's shards: pin the formula.
    digest = hashlib.sha256(b"r1").digest()
    assert shard_of("r1", 7) == int.from_bytes(digest[:8], "big") % 7 + 1


@pytest.mark.parametrize(
    ("text", "expected"), [("1/1", (1, 1)), ("2/5", (2, 5)), (" 3 / 3 ", (3, 3))]
)
def test_parse_shard(text: str, expected: tuple[int, int]) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0/3", "I must be from 1 to 3"),
        ("4/3", "I must be from 1 to 3"),
        ("1/0", "N must be from 1"),
        ("1", "must be I/N"),
        ("a/b", "must be I/N"),
        ("-1/2", "must be I/N"),
    ],
)
def test_bad_shards_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_shard(text)
    if "/" in text and text.replace("/", "").isdigit():
        index, count = (int(part) for part in text.split("/"))
        if count:
            with pytest.raises(ValueError, match="not in"):
                take_shard(["a"], index, count)
