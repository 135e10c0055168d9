"""BoundedCache: hits, the bound, the second generation, and sharing keys with the caller;
SeenTable and the caches that keep a key the second time it is missed."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from filodb.model.cache import BoundedCache, SeenTable


def test_miss_is_none_and_hit_returns_the_value() -> None:
    c: BoundedCache[bytes, tuple] = BoundedCache(4)
    assert c.get(b"a") is None
    c.put(b"a", (("__name__", "up"),))
    assert c.get(b"a") == (("__name__", "up"),)
    assert c.get(b"b") is None
    assert len(c) == 1  # a miss stores nothing


def test_falsy_values_are_hits() -> None:
    c: BoundedCache[str, int] = BoundedCache(4)
    c.put("shard", 0)  # shard 0 and the empty label set must not read as misses
    c.put("labels", ())  # type: ignore[arg-type]
    assert c.get("shard") == 0 and c.get("shard") is not None
    assert c.get("labels") == ()


def test_never_holds_more_than_two_generations() -> None:
    c: BoundedCache[int, int] = BoundedCache(100)
    for i in range(10_000):
        c.put(i, i)
        assert len(c) <= 100 and len(c) + len(c._old) <= 200
    # the newest max_entries keys are all still there
    assert all(c.get(i) == i for i in range(9_900, 10_000))
    assert c.get(0) is None


def test_a_key_of_the_old_generation_comes_back() -> None:
    c: BoundedCache[int, str] = BoundedCache(3)
    for i in range(3):
        c.put(i, str(i))
    c.put(3, "3")  # young is full: 0..2 become the old generation
    assert len(c) == 1
    assert c.get(1) == "1"  # found in the old generation, moved back
    assert 1 in c
    c.put(4, "4")
    c.put(5, "5")  # young full again (3, 1, 4): old is now {3, 1, 4}; 0 and 2 are gone
    assert c.get(0) is None and c.get(2) is None
    assert [c.get(k) for k in (3, 1, 4, 5)] == ["3", "1", "4", "5"]


def test_hits_at_least_those_of_a_clear_when_full_dict() -> None:
    # a working set as large as the bound stays cached: after warming, every get hits
    c: BoundedCache[int, int] = BoundedCache(50)
    misses = 0
    for rnd in range(5):
        for k in range(50):
            if c.get(k) is None:
                misses += rnd > 0
                c.put(k, k)
    assert misses == 0


def test_overwriting_a_key_when_full_keeps_the_generation() -> None:
    c: BoundedCache[int, int] = BoundedCache(2)
    c.put(1, 1)
    c.put(2, 2)
    c.put(2, 20)
    assert dict(c) == {1: 1, 2: 20}


def test_forget_and_bad_bound() -> None:
    c: BoundedCache[int, int] = BoundedCache(1)
    c.put(1, 1)
    c.put(2, 2)
    c.forget()
    assert c.get(1) is None and c.get(2) is None
    with pytest.raises(ValueError):
        BoundedCache(0)


def test_byte_bounded_cache_holds_at_most_its_bytes() -> None:
    from filodb.model.cache import ByteBoundedCache

    c: ByteBoundedCache[int, bytes] = ByteBoundedCache(1000, len)
    for i in range(500):
        c.put(i, bytes(i % 97))
        assert c.nbytes <= 1000
        held = sum(len(v) for v in c.values()) + sum(len(v) for v in c._old.values())
        assert held == c.nbytes
    assert c.get(499) == bytes(499 % 97)  # the newest is held
    c.put(499, bytes(3))  # a replaced value is weighed again
    assert c.get(499) == bytes(3)
    c.put(-1, bytes(501))  # heavier than a generation: not cached
    assert c.get(-1) is None
    c.forget()
    assert c.nbytes == 0 and c.get(499) is None
    off: ByteBoundedCache[int, bytes] = ByteBoundedCache(0, len)
    off.put(1, b"x")
    assert off.get(1) is None and off.nbytes == 0


def test_seen_table_answers_whether_a_hash_was_offered_before() -> None:
    seen = SeenTable(bits=16)
    first = np.array([5, -7, 1000, 77777, 5], np.int64)
    assert seen.offer(first).tolist() == [False] * 5  # a batch's repeats count from the next
    assert seen.offer(first).tolist() == [True] * 5
    assert seen.contains(np.array([6, -7], np.int64)).tolist() == [False, True]
    seen.add(np.array([6], np.int64))
    assert seen.contains(np.array([6], np.int64)).tolist() == [True]
    seen.clear()
    assert not seen.contains(first).any()
    # a full table forgets (a later admission), it never says yes to a hash it was not offered
    many = np.arange(1, 100_000, dtype=np.int64) * 0x9E3779B97F4A7C1 % (2**61)
    seen.offer(many)
    assert not seen.contains(many + 2).any()
    assert 0 < seen.contains(many).sum() <= 1 << 16
    with pytest.raises(ValueError):
        SeenTable(bits=0)


def test_map_through_keeps_a_key_the_second_time_it_is_missed() -> None:
    cache: BoundedCache[str, str] = BoundedCache(100)
    seen, lock, calls = SeenTable(), threading.Lock(), []

    def fn(k: str) -> str:
        calls.append(k)
        return k.upper()

    assert cache.map_through(["a", "b"], fn, lock, seen) == ["A", "B"]
    assert len(cache) == 0  # asked once: computed, not kept
    assert cache.map_through(["b", "c"], fn, lock, seen) == ["B", "C"]
    assert list(cache) == ["b"]
    assert cache.map_through(["b", "c", "c"], fn, lock, seen) == ["B", "C", "C"]
    assert calls == ["a", "b", "b", "c", "c", "c"]  # the third "c" of a batch is computed too
    assert sorted(cache) == ["b", "c"]
    assert cache.map_through(["a"], fn, lock) == ["A"] and "a" in cache  # without: kept at once
