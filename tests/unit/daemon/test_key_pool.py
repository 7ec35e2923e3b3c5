"""The key pool (daemon/key_pool.py): each key handed out once, sized as asked, fresh; bursts
beyond its depth fall back to on-the-spot generation; its configuration is validated."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from gnoicert.daemon.config import DEFAULT_KEY_SIZE, ConfigError, parse_config
from gnoicert.daemon.key_pool import DEFAULT_DEPTH, MAX_DEPTH, KeyPool, parse_depths
from gnoicert.pki import crypto

SIZES = (1024, 2048, 3072, 4096)


def wait_until(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    """Key generation runs at idle priority on a shared machine: wait on the condition."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the pool did not fill in time"
        time.sleep(0.01)


@pytest.fixture
def pools() -> Iterator[list[KeyPool]]:
    made: list[KeyPool] = []
    yield made
    for pool in made:
        pool.close()


def started(pools: list[KeyPool], depths: dict[int, int]) -> KeyPool:
    pool = KeyPool(depths)
    pools.append(pool)
    pool.start()
    return pool


def modulus(key: rsa.RSAPrivateKey) -> int:
    return key.public_key().public_numbers().n


def test_concurrent_takers_never_get_the_same_key(pools: list[KeyPool]) -> None:
    depth = 6
    pool = started(pools, {1024: depth})
    wait_until(lambda: pool.ready(1024) == depth)
    taken: list[rsa.RSAPrivateKey | None] = []
    lock = threading.Lock()
    barrier = threading.Barrier(3 * depth)

    def taker() -> None:
        barrier.wait()
        key = pool.take(1024)
        with lock:
            taken.append(key)

    threads = [threading.Thread(target=taker) for _ in range(3 * depth)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    keys = [key for key in taken if key is not None]
    # The filler may add a key during the race: at least the ready ones were handed out.
    assert len(keys) == pool.hits >= depth
    assert pool.hits + pool.misses == 3 * depth
    assert len({id(key) for key in keys}) == len(keys)
    assert len({modulus(key) for key in keys}) == len(keys)


async def test_a_burst_larger_than_the_depth_gets_fresh_keys_made_on_the_spot(
    pools: list[KeyPool],
) -> None:
    pool = started(pools, {1024: 2})
    await asyncio.to_thread(wait_until, lambda: pool.ready(1024) == 2)
    keys = await asyncio.gather(*(pool.key(1024) for _ in range(7)))
    assert len({modulus(key) for key in keys}) == 7
    assert all(key.key_size == 1024 for key in keys)
    assert pool.hits >= 2  # the filler may have made one more during the burst
    assert pool.hits + pool.misses == 7
    # ... and it refills for the next caller.
    await asyncio.to_thread(wait_until, lambda: pool.ready(1024) == 2)
    hits = pool.hits
    assert modulus(await pool.key(1024)) not in {modulus(key) for key in keys}
    assert pool.hits == hits + 1


class GatedGeneration:
    """Key generation that waits for a gate in the filler ("key-pool" thread) or elsewhere (a
    caller's own key), recording which thread made each key."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, gated: str) -> None:
        self.gate = threading.Event()
        self.made: dict[str, list[int]] = {"filler": [], "caller": []}
        self._gated = gated
        real = crypto.generate_rsa_key

        def generate(size: int) -> rsa.RSAPrivateKey:
            who = "filler" if threading.current_thread().name == "key-pool" else "caller"
            if who == self._gated:
                assert self.gate.wait(timeout=120)
            key = real(size)
            self.made[who].append(modulus(key))
            return key

        monkeypatch.setattr(crypto, "generate_rsa_key", generate)


async def test_a_miss_takes_the_fillers_key_when_it_is_ready_first(
    pools: list[KeyPool], monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = GatedGeneration(monkeypatch, gated="caller")
    pool = started(pools, {1024: 1})
    await asyncio.to_thread(wait_until, lambda: pool.ready(1024) == 1)
    first = pool.take(1024)
    assert first is not None
    key = await pool.key(1024)  # the caller's own generation is held at the gate
    assert modulus(key) in gen.made["filler"]
    assert modulus(key) != modulus(first)
    gen.gate.set()  # the caller's key, made too late, is not lost to anyone twice
    await asyncio.to_thread(wait_until, lambda: len(gen.made["caller"]) == 1)
    await asyncio.to_thread(wait_until, lambda: pool.ready(1024) == 1)
    later = pool.take(1024)
    assert later is not None
    assert modulus(later) not in {modulus(first), modulus(key)}


async def test_a_miss_uses_its_own_key_and_the_fillers_goes_to_the_pool(
    pools: list[KeyPool], monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = GatedGeneration(monkeypatch, gated="filler")
    pool = started(pools, {1024: 1})
    key = await pool.key(1024)  # the filler is held at the gate: the caller's key wins
    assert gen.made == {"filler": [], "caller": [modulus(key)]}
    gen.gate.set()
    await asyncio.to_thread(wait_until, lambda: pool.ready(1024) == 1)
    pooled = pool.take(1024)
    assert pooled is not None
    assert modulus(pooled) in gen.made["filler"]
    assert modulus(pooled) != modulus(key)


def test_keys_are_as_large_as_asked_distinct_and_use_e_65537(pools: list[KeyPool]) -> None:
    pool = started(pools, {1024: 3, 2048: 2})
    wait_until(lambda: pool.ready(1024) == 3 and pool.ready(2048) == 2)
    small = [pool.take(1024) for _ in range(3)]
    large = [pool.take(2048) for _ in range(2)]
    keys = [key for key in small + large if key is not None]
    assert len(keys) == 5
    assert [key.key_size for key in keys] == [1024] * 3 + [2048] * 2
    assert all(key.public_key().public_numbers().e == 65537 for key in keys)
    assert len({modulus(key) for key in keys}) == 5
    # Primes differ too (no key shares a factor with another).
    primes = [p for key in keys for p in (key.private_numbers().p, key.private_numbers().q)]
    assert len(set(primes)) == 10


def test_a_size_not_pooled_is_a_miss_and_nothing_is_made_for_it(pools: list[KeyPool]) -> None:
    pool = started(pools, {1024: 1})
    wait_until(lambda: pool.ready(1024) == 1)
    assert pool.take(2048) is None
    assert (pool.hits, pool.misses) == (0, 1)
    assert pool.ready(2048) == 0


def test_lowering_the_depth_drops_ready_keys_and_closing_drops_all(pools: list[KeyPool]) -> None:
    pool = started(pools, {1024: 3})
    wait_until(lambda: pool.ready(1024) == 3)
    pool.set_depths({1024: 1})
    assert pool.ready(1024) == 1
    pool.close()
    assert pool.ready(1024) == 0
    assert pool.take(1024) is None


def test_an_unstarted_pool_only_misses() -> None:
    pool = KeyPool({1024: 2})
    assert pool.take(1024) is None
    assert asyncio.run(pool.key(1024)).key_size == 1024
    assert (pool.hits, pool.misses) == (0, 2)


# -- configuration ------------------------------------------------------------------------------


def grpc_config(line: str) -> tuple[tuple[int, int], ...]:
    return parse_config(f'state_dir = "/tmp/x"\n[grpc]\n{line}\n').grpc.key_pool_depths


def test_the_default_keeps_a_few_keys_of_the_default_size_only() -> None:
    assert grpc_config("") == ((DEFAULT_KEY_SIZE, DEFAULT_DEPTH),)
    assert grpc_config("default_key_size = 3072") == ((3072, DEFAULT_DEPTH),)


@pytest.mark.parametrize(
    ("line", "depths"),
    [
        ("key_pool_depth = 0", ((DEFAULT_KEY_SIZE, 0),)),
        ("key_pool_depth = 5", ((DEFAULT_KEY_SIZE, 5),)),
        ("key_pool_depth = { 4096 = 1, 2048 = 3 }", ((2048, 3), (4096, 1))),
    ],
)
def test_depths_from_the_configuration(line: str, depths: tuple[tuple[int, int], ...]) -> None:
    assert grpc_config(line) == depths


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("key_pool_depth = -1", "from 0 to 16"),
        ("key_pool_depth = 17", "from 0 to 16"),
        ("key_pool_depth = true", "an integer or a table"),
        ('key_pool_depth = "2"', "an integer or a table"),
        ("key_pool_depth = 1.5", "an integer or a table"),
        ("key_pool_depth = { 2047 = 1 }", "'2047' is not one of grpc.key_sizes"),
        ("key_pool_depth = { 2048 = 1.0 }", "from 0 to 16"),
        ("key_sizes = [2048]\nkey_pool_depth = { 4096 = 1 }", "not one of grpc.key_sizes (2048)"),
    ],
)
def test_bad_depths_are_refused_naming_the_key(line: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        grpc_config(line)
    assert len(raised.value.problems) == 1
    assert "grpc.key_pool_depth" in str(raised.value)
    assert problem in str(raised.value)


@given(st.integers(min_value=-(2**40), max_value=2**40), st.sampled_from(SIZES))
def test_parse_depths_accepts_exactly_0_to_max(depth: int, size: int) -> None:
    if 0 <= depth <= MAX_DEPTH:
        assert parse_depths({str(size): depth}, SIZES, 2048) == ((size, depth),)
        assert parse_depths(depth, SIZES, size) == ((size, depth),)
    else:
        with pytest.raises(ValueError, match="from 0 to"):
            parse_depths({str(size): depth}, SIZES, 2048)


@given(st.text(max_size=8))
def test_parse_depths_refuses_any_size_that_is_not_configured(size: str) -> None:
    if size in {str(s) for s in SIZES}:
        return
    with pytest.raises(ValueError, match=r"is not one of grpc\.key_sizes"):
        parse_depths({size: 1}, SIZES, 2048)


def test_no_thread_without_a_pooled_size_until_a_reload_adds_one(pools: list[KeyPool]) -> None:
    pool = started(pools, {})
    assert not pool.filling
    pool.set_depths({1024: 1})
    assert pool.filling
    wait_until(lambda: pool.ready(1024) == 1)
