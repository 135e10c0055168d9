"""One conformance suite for every :class:`~filodb.store.base.ColumnStore` / ``MetaStore`` backend.

A backend's test module subclasses :class:`StoreSuite` and provides the ``stores`` fixture (a
fresh, empty column store and its meta store, as :func:`~filodb.store.open_store` returns
them) and the back doors ``raw_chunks``, ``raw_part_keys``, ``raw_checkpoints`` (read what is
stored directly from the backend) and ``raw_put_chunks`` (store chunks directly), so each method
is checked against independent ground truth. Never override a suite test into a pass.

The suite's ``store`` and ``meta`` fixtures initialise dataset ``ds`` with 4 shards and ``other``
with 2 shards.
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections.abc import Sequence

import pytest

from filodb.errors import BadInputError, UnknownDatasetError
from filodb.store.base import (
    INT64_MAX,
    INT64_MIN,
    ChunkSet,
    ColumnStore,
    GroupFlush,
    MetaStore,
    PartKeyRecord,
)
from filodb.testing.suite import ConformanceSuite

Stores = tuple[ColumnStore, MetaStore]


def make_chunk(pk: bytes, chunk_id: int, start: int, end: int, size: int = 24) -> ChunkSet:
    """A chunk whose vectors are derived from (part key, chunk id, start, end): checkable anywhere."""
    seed = b"%s|%d|%d|%d|" % (pk, chunk_id, start, end)
    ts = (seed * (size // len(seed) + 1))[:size]
    return ChunkSet(pk, chunk_id, start, end, end - start + 1 if end - start < 1000 else 1000,
                    (ts, ts[::-1], b""))  # fmt: skip


def pk_of(i: int) -> bytes:
    return b"\x01metric\x00" + i.to_bytes(4, "big") + b"\xff"


def ids(chunks: Sequence[ChunkSet]) -> list[tuple[bytes, int]]:
    return [(c.part_key, c.chunk_id) for c in chunks]


class StoreSuite(ConformanceSuite):
    """Behaviour every column store and meta store backend must have."""

    @pytest.fixture
    @abstractmethod
    def stores(self) -> Stores:
        """A fresh, empty column store and its meta store (a fixture: may take others)."""

    @abstractmethod
    def raw_chunks(self, stores: Stores, dataset: str, shard: int) -> list[ChunkSet]:
        """Every chunk stored for the shard, read around the API, in any order."""

    @abstractmethod
    def raw_part_keys(self, stores: Stores, dataset: str, shard: int) -> list[PartKeyRecord]:
        """Every part key record stored for the shard, read around the API, in any order."""

    @abstractmethod
    def raw_checkpoints(self, stores: Stores, dataset: str, shard: int) -> dict[int, int]:
        """The shard's checkpoints (flush group -> offset), read around the API."""

    @abstractmethod
    def raw_put_chunks(
        self, stores: Stores, dataset: str, shard: int, chunks: Sequence[ChunkSet]
    ) -> None:
        """Store chunks around the API (the dataset is initialised)."""

    @pytest.fixture
    def store(self, stores: Stores) -> ColumnStore:
        stores[0].initialize("ds", 4)
        stores[0].initialize("other", 2)
        return stores[0]

    @pytest.fixture
    def meta(self, stores: Stores, store: ColumnStore) -> MetaStore:
        return stores[1]

    def sorted_raw(self, stores: Stores, dataset: str, shard: int) -> list[ChunkSet]:
        return sorted(
            self.raw_chunks(stores, dataset, shard), key=lambda c: (c.part_key, c.chunk_id)
        )

    # --- datasets and arguments ----------------------------------------------------------
    def test_unknown_dataset(self, stores: Stores) -> None:
        cs, ms = stores
        calls = [
            lambda: cs.write_chunks("nope", 0, [make_chunk(b"a", 1, 0, 1)]),
            lambda: cs.read_chunks("nope", 0, [b"a"], 0, 10),
            lambda: cs.write_part_keys("nope", 0, [PartKeyRecord(b"a", 0, 1)]),
            lambda: list(cs.scan_part_keys("nope", 0)),
            lambda: cs.delete_before("nope", 0, 10),
            lambda: cs.truncate("nope"),
            lambda: cs.stats("nope", 0),
            lambda: cs.num_shards("nope"),
            lambda: ms.write_checkpoint("nope", 0, 0, 1),
            lambda: ms.read_checkpoints("nope", 0),
            lambda: ms.clear_checkpoints("nope", 0),
        ]
        for call in calls:
            with pytest.raises(UnknownDatasetError):
                call()

    def test_initialize_is_idempotent(self, stores: Stores) -> None:
        cs = stores[0]
        cs.initialize("ds", 3)
        cs.write_chunks("ds", 2, [make_chunk(b"a", 1, 0, 5)])
        cs.initialize("ds", 3)
        assert cs.num_shards("ds") == 3
        assert ids(self.raw_chunks(stores, "ds", 2)) == [(b"a", 1)]
        with pytest.raises(BadInputError, match="3 shards"):
            cs.initialize("ds", 5)
        assert cs.num_shards("ds") == 3

    @pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "-x", "a b", "x" * 129, 5])
    def test_bad_dataset_names(self, stores: Stores, name: object) -> None:
        with pytest.raises(BadInputError):
            stores[0].initialize(name, 1)  # type: ignore[arg-type]
        with pytest.raises(BadInputError):
            stores[0].read_chunks(name, 0, [b"a"], 0, 1)  # type: ignore[arg-type]

    @pytest.mark.parametrize("num_shards", [0, -1, 1.5, True, "2"])
    def test_bad_shard_counts(self, stores: Stores, num_shards: object) -> None:
        with pytest.raises(BadInputError):
            stores[0].initialize("ds", num_shards)  # type: ignore[arg-type]

    @pytest.mark.parametrize("shard", [-1, 4, 100, True, "0", None])
    def test_bad_shard_numbers(self, store: ColumnStore, meta: MetaStore, shard: object) -> None:
        s: int = shard  # type: ignore[assignment]
        for call in (
            lambda: store.write_chunks("ds", s, [make_chunk(b"a", 1, 0, 1)]),
            lambda: store.read_chunks("ds", s, [b"a"], 0, 1),
            lambda: store.write_part_keys("ds", s, [PartKeyRecord(b"a", 0, 1)]),
            lambda: list(store.scan_part_keys("ds", s)),
            lambda: store.stats("ds", s),
            lambda: meta.write_checkpoint("ds", s, 0, 1),
            lambda: meta.read_checkpoints("ds", s),
        ):
            with pytest.raises(BadInputError):
                call()

    def test_bad_records(self) -> None:
        for make in (
            lambda: ChunkSet(b"", 1, 0, 1, 1, ()),
            lambda: ChunkSet("pk", 1, 0, 1, 1, ()),  # type: ignore[arg-type]
            lambda: ChunkSet(b"a", 1, 5, 4, 1, ()),
            lambda: ChunkSet(b"a", 1, 0, 1, 0, ()),
            lambda: ChunkSet(b"a", 2**63, 0, 1, 1, ()),
            lambda: ChunkSet(b"a", 1.0, 0, 1, 1, ()),  # type: ignore[arg-type]
            lambda: ChunkSet(b"a", 1, 0, 1, 1, [b"x"]),  # type: ignore[arg-type]
            lambda: ChunkSet(b"a", 1, 0, 1, 1, ("x",)),  # type: ignore[arg-type]
            lambda: PartKeyRecord(b"a", 2, 1),
            lambda: PartKeyRecord(b"", 1, 2),
        ):
            with pytest.raises(BadInputError):
                make()

    def test_bad_calls_write_nothing(
        self, stores: Stores, store: ColumnStore, meta: MetaStore
    ) -> None:
        good = make_chunk(b"a", 1, 0, 10)
        with pytest.raises(BadInputError):
            store.write_chunks("ds", 0, [good, "not a chunk"])  # type: ignore[list-item]
        with pytest.raises(BadInputError):
            store.write_chunks("ds", 0, good)  # type: ignore[arg-type]
        with pytest.raises(BadInputError):
            store.write_part_keys("ds", 0, [PartKeyRecord(b"a", 0, 1), (b"b", 0, 1)])  # type: ignore[list-item]
        with pytest.raises(BadInputError):
            meta.write_checkpoint("ds", 0, 0, -1)
        with pytest.raises(BadInputError):
            meta.write_checkpoint("ds", 0, -1, 5)
        with pytest.raises(BadInputError):
            store.write_flush(meta, "ds", 0, 0, [good], [PartKeyRecord(b"a", 0, 10)], -5)
        assert self.raw_chunks(stores, "ds", 0) == []
        assert self.raw_part_keys(stores, "ds", 0) == []
        assert self.raw_checkpoints(stores, "ds", 0) == {}

    def test_bad_read_arguments(self, store: ColumnStore) -> None:
        with pytest.raises(BadInputError, match="after"):
            store.read_chunks("ds", 0, [b"a"], 10, 9)
        with pytest.raises(BadInputError):
            store.read_chunks("ds", 0, b"a", 0, 9)  # type: ignore[arg-type]
        with pytest.raises(BadInputError):
            store.read_chunks("ds", 0, ["a"], 0, 9)  # type: ignore[list-item]
        with pytest.raises(BadInputError):
            store.read_chunks("ds", 0, [b"a"], 0, 2**63)
        with pytest.raises(BadInputError):
            store.delete_before("ds", 0, "10")  # type: ignore[arg-type]

    # --- chunks --------------------------------------------------------------------------
    def test_round_trip(self, stores: Stores, store: ColumnStore) -> None:
        chunks = [
            make_chunk(pk_of(i), cid, cid * 100, cid * 100 + 99)
            for i in range(5)
            for cid in range(3)
        ]
        store.write_chunks("ds", 1, chunks)
        assert self.sorted_raw(stores, "ds", 1) == sorted(
            chunks, key=lambda c: (c.part_key, c.chunk_id)
        )
        got = store.read_chunks("ds", 1, [pk_of(i) for i in range(5)], INT64_MIN, INT64_MAX)
        assert got == chunks

    def test_read_sees_back_door_writes(self, stores: Stores, store: ColumnStore) -> None:
        chunks = [make_chunk(b"pk", 7, 10, 20), make_chunk(b"pk", 8, 21, 30)]
        self.raw_put_chunks(stores, "ds", 3, chunks)
        assert store.read_chunks("ds", 3, [b"pk"], 0, 100) == chunks
        assert store.stats("ds", 3)["chunks"] == 2

    def test_binary_part_keys_and_extreme_values(self, stores: Stores, store: ColumnStore) -> None:
        pks = [b"a", b"a\x00", b"\x00", b"\xff" * 300, bytes(range(256))]
        chunks = [ChunkSet(pk, cid, s, e, 1, (bytes(range(256)),))
                  for pk in pks for cid, s, e in [(INT64_MIN, INT64_MIN, -1), (INT64_MAX, 0, INT64_MAX)]]  # fmt: skip
        store.write_chunks("ds", 0, chunks)
        assert store.read_chunks("ds", 0, pks, INT64_MIN, INT64_MAX) == chunks
        assert store.read_chunks("ds", 0, [b"a"], -5, -5) == [chunks[0]]
        assert len(self.raw_chunks(stores, "ds", 0)) == 10

    def test_upsert_is_idempotent(self, stores: Stores, store: ColumnStore) -> None:
        c = make_chunk(b"pk", 1, 100, 200)
        store.write_chunks("ds", 0, [c])
        store.write_chunks("ds", 0, [c, c])
        assert self.raw_chunks(stores, "ds", 0) == [c]
        assert store.read_chunks("ds", 0, [b"pk"], 0, 1000) == [c]
        assert store.stats("ds", 0)["chunks"] == 1

    def test_upsert_replaces_same_chunk_id(self, stores: Stores, store: ColumnStore) -> None:
        store.write_chunks("ds", 0, [make_chunk(b"pk", 1, 100, 200, size=10)])
        newer = ChunkSet(b"pk", 1, 100, 250, 7, (b"new",))
        store.write_chunks("ds", 0, [newer])
        assert self.raw_chunks(stores, "ds", 0) == [newer]
        assert store.read_chunks("ds", 0, [b"pk"], 240, 240) == [newer]

    @pytest.mark.parametrize(
        ("start", "end", "hit"),
        [(200, 300, True), (201, 300, False), (0, 100, True), (0, 99, False), (150, 150, True),
         (100, 100, True), (200, 200, True), (99, 201, True), (INT64_MIN, INT64_MAX, True),
         (-10, -1, False)],
    )  # fmt: skip
    def test_range_edges_are_inclusive(
        self, store: ColumnStore, start: int, end: int, hit: bool
    ) -> None:
        c = make_chunk(b"pk", 1, 100, 200)
        store.write_chunks("ds", 0, [c])
        assert store.read_chunks("ds", 0, [b"pk"], start, end) == ([c] if hit else [])

    def test_range_selects_overlapping_chunks(self, store: ColumnStore) -> None:
        chunks = [make_chunk(b"pk", i, i * 10, i * 10 + 9) for i in range(10)]  # [0,9] .. [90,99]
        store.write_chunks("ds", 0, chunks)
        assert store.read_chunks("ds", 0, [b"pk"], 25, 54) == chunks[2:6]
        assert store.read_chunks("ds", 0, [b"pk"], 30, 39) == chunks[3:4]
        assert store.read_chunks("ds", 0, [b"pk"], 100, 200) == []

    def test_ordering(self, store: ColumnStore) -> None:
        a = [make_chunk(b"a", cid, s, s + 5) for cid, s in [(3, 30), (1, 10), (2, 10), (9, -5)]]
        b = [make_chunk(b"b", cid, s, s + 5) for cid, s in [(5, 0), (4, 50)]]
        store.write_chunks("ds", 0, [a[0], b[0], a[1]])
        store.write_chunks("ds", 0, [a[2], b[1], a[3]])
        got = store.read_chunks("ds", 0, [b"b", b"zzz", b"a", b"b"], INT64_MIN, INT64_MAX)
        assert ids(got) == [(b"b", 5), (b"b", 4), (b"a", 9), (b"a", 1), (b"a", 2), (b"a", 3)]
        assert got[0] == b[0]

    def test_many_part_keys(self, stores: Stores, store: ColumnStore) -> None:
        n = 3000
        chunks = [
            make_chunk(pk_of(i), cid, cid * 1000, cid * 1000 + 999)
            for i in range(n)
            for cid in (0, 1)
        ]
        store.write_chunks("ds", 2, chunks)
        everything = store.read_chunks("ds", 2, [pk_of(i) for i in range(n)], 0, 10_000)
        assert everything == chunks
        some = [pk_of(i) for i in range(n - 1, 0, -7)]
        got = store.read_chunks("ds", 2, some, 1000, 1000)
        assert ids(got) == [(pk, 1) for pk in some]
        assert len(self.raw_chunks(stores, "ds", 2)) == 2 * n

    def test_empty_reads_and_writes(
        self, stores: Stores, store: ColumnStore, meta: MetaStore
    ) -> None:
        assert store.read_chunks("ds", 0, [], 0, 10) == []
        assert store.read_chunks("ds", 0, [b"absent"], INT64_MIN, INT64_MAX) == []
        store.write_chunks("ds", 0, [])
        store.write_part_keys("ds", 0, [])
        assert list(store.scan_part_keys("ds", 0)) == []
        assert store.stats("ds", 0) == {"chunks": 0, "vector_bytes": 0, "part_keys": 0}
        assert store.delete_before("ds", 0, INT64_MAX) == 0
        assert meta.read_checkpoints("ds", 0) == {}
        assert self.raw_chunks(stores, "ds", 0) == []

    def test_large_vectors(self, stores: Stores, store: ColumnStore) -> None:
        big = bytes(range(256)) * (3 << 12)  # 3 MiB
        huge = b"\x00\xff" * (5 << 19)  # 5 MiB
        c = ChunkSet(b"pk", 1, 0, 100, 101, (big, b"", huge))
        store.write_chunks("ds", 0, [c, make_chunk(b"pk", 2, 101, 200)])
        got = store.read_chunks("ds", 0, [b"pk"], 0, 50)
        assert got == [c]
        assert (
            store.stats("ds", 0)["vector_bytes"]
            == len(big) + len(huge) + make_chunk(b"pk", 2, 101, 200).nbytes
        )
        assert self.sorted_raw(stores, "ds", 0)[0] == c

    def test_no_vectors(self, store: ColumnStore) -> None:
        c = ChunkSet(b"pk", 1, 0, 0, 1, ())
        store.write_chunks("ds", 0, [c])
        assert store.read_chunks("ds", 0, [b"pk"], 0, 0) == [c]

    def test_stats(self, stores: Stores, store: ColumnStore) -> None:
        chunks = [make_chunk(pk_of(i % 3), i, i, i + 1, size=10 + i) for i in range(10)]
        store.write_chunks("ds", 1, chunks)
        store.write_part_keys("ds", 1, [PartKeyRecord(pk_of(i), 0, 20) for i in range(3)])
        raw = self.raw_chunks(stores, "ds", 1)
        assert store.stats("ds", 1) == {
            "chunks": len(raw), "vector_bytes": sum(c.nbytes for c in raw), "part_keys": 3}  # fmt: skip
        assert len(raw) == 10

    # --- part keys -----------------------------------------------------------------------
    def test_part_keys_round_trip(self, stores: Stores, store: ColumnStore) -> None:
        recs = [PartKeyRecord(pk_of(i), i, i + 100) for i in range(50)]
        store.write_part_keys("ds", 0, recs)
        key = lambda r: r.part_key  # noqa: E731
        assert sorted(store.scan_part_keys("ds", 0), key=key) == recs
        assert sorted(self.raw_part_keys(stores, "ds", 0), key=key) == recs

    def test_part_keys_merge_start_min_end_max(self, stores: Stores, store: ColumnStore) -> None:
        store.write_part_keys("ds", 0, [PartKeyRecord(b"a", 100, 200)])
        store.write_part_keys("ds", 0, [PartKeyRecord(b"a", 50, 150)])
        assert list(store.scan_part_keys("ds", 0)) == [PartKeyRecord(b"a", 50, 200)]
        store.write_part_keys("ds", 0, [PartKeyRecord(b"a", 120, 300)])
        assert list(store.scan_part_keys("ds", 0)) == [PartKeyRecord(b"a", 50, 300)]
        store.write_part_keys("ds", 0, [PartKeyRecord(b"b", 10, 20), PartKeyRecord(b"b", 5, 15),
                                        PartKeyRecord(b"b", 12, 25)])  # fmt: skip
        got = sorted(self.raw_part_keys(stores, "ds", 0), key=lambda r: r.part_key)
        assert got == [PartKeyRecord(b"a", 50, 300), PartKeyRecord(b"b", 5, 25)]

    def test_scan_many_part_keys(self, store: ColumnStore) -> None:
        n = 12_345
        store.write_part_keys("ds", 3, [PartKeyRecord(pk_of(i), i, i + 1) for i in range(n)])
        seen = list(store.scan_part_keys("ds", 3))
        assert len(seen) == n
        assert sorted(r.start_ms for r in seen) == list(range(n))
        assert all(r.part_key == pk_of(r.start_ms) and r.end_ms == r.start_ms + 1 for r in seen)

    # --- checkpoints and flushes ---------------------------------------------------------
    def test_checkpoints_per_group(self, stores: Stores, meta: MetaStore) -> None:
        for group, offset in [(0, 10), (1, 20), (2, 5), (7, 0)]:
            meta.write_checkpoint("ds", 1, group, offset)
        meta.write_checkpoint("ds", 1, 1, 25)
        meta.write_checkpoint("ds", 1, 0, 8)  # overwrite, even backwards
        assert meta.read_checkpoints("ds", 1) == {0: 8, 1: 25, 2: 5, 7: 0}
        assert self.raw_checkpoints(stores, "ds", 1) == {0: 8, 1: 25, 2: 5, 7: 0}
        assert meta.read_checkpoints("ds", 0) == {}
        assert meta.read_checkpoints("other", 1) == {}
        meta.clear_checkpoints("ds", 1)
        assert meta.read_checkpoints("ds", 1) == {}
        assert self.raw_checkpoints(stores, "ds", 1) == {}

    def test_write_flush(self, stores: Stores, store: ColumnStore, meta: MetaStore) -> None:
        chunks = [make_chunk(pk_of(i), 1, 0, 99) for i in range(20)]
        recs = [PartKeyRecord(pk_of(i), 0, 99) for i in range(20)]
        store.write_flush(meta, "ds", 2, 3, chunks, recs, 1234)
        store.write_flush(meta, "ds", 2, 3, chunks, recs, 1234)  # a replayed flush
        assert self.sorted_raw(stores, "ds", 2) == chunks
        assert sorted(self.raw_part_keys(stores, "ds", 2), key=lambda r: r.part_key) == recs
        assert self.raw_checkpoints(stores, "ds", 2) == {3: 1234}
        store.write_flush(meta, "ds", 2, 3, [], [PartKeyRecord(pk_of(0), 0, 150)], 1300)
        assert meta.read_checkpoints("ds", 2) == {3: 1300}
        assert PartKeyRecord(pk_of(0), 0, 150) in self.raw_part_keys(stores, "ds", 2)

    def test_write_flushes_of_several_groups(
        self, stores: Stores, store: ColumnStore, meta: MetaStore
    ) -> None:
        groups = [GroupFlush(g, [make_chunk(pk_of(g * 10 + i), 1, 0, 99) for i in range(5)],
                             [PartKeyRecord(pk_of(g * 10 + i), 0, 99) for i in range(5)],
                             1000 + g) for g in (3, 0, 1)]  # fmt: skip
        store.write_flushes(meta, "ds", 1, groups)
        store.write_flushes(meta, "ds", 1, groups)  # replayed
        assert self.sorted_raw(stores, "ds", 1) == sorted(
            (c for f in groups for c in f.chunks), key=lambda c: (c.part_key, c.chunk_id)
        )
        assert sorted(self.raw_part_keys(stores, "ds", 1), key=lambda r: r.part_key) == sorted(
            (r for f in groups for r in f.part_keys), key=lambda r: r.part_key
        )
        assert self.raw_checkpoints(stores, "ds", 1) == {3: 1003, 0: 1000, 1: 1001}
        with pytest.raises(BadInputError):  # a bad checkpoint anywhere: nothing written
            store.write_flushes(meta, "ds", 2, [groups[0], GroupFlush(5, [], [], -1)])
        assert self.raw_chunks(stores, "ds", 2) == [] and meta.read_checkpoints("ds", 2) == {}
        store.write_flushes(meta, "ds", 2, [])
        assert meta.read_checkpoints("ds", 2) == {}

    # --- isolation, retention, truncate --------------------------------------------------
    def test_shard_and_dataset_isolation(
        self, stores: Stores, store: ColumnStore, meta: MetaStore
    ) -> None:
        where = [("ds", 0), ("ds", 1), ("other", 0)]
        for n, (ds, shard) in enumerate(where):
            store.write_chunks(ds, shard, [make_chunk(b"pk", n, 0, 10)])
            store.write_part_keys(ds, shard, [PartKeyRecord(b"pk", n, 10)])
            meta.write_checkpoint(ds, shard, 0, n + 1)
        for n, (ds, shard) in enumerate(where):
            assert store.read_chunks(ds, shard, [b"pk"], 0, 10) == [make_chunk(b"pk", n, 0, 10)]
            assert list(store.scan_part_keys(ds, shard)) == [PartKeyRecord(b"pk", n, 10)]
            assert meta.read_checkpoints(ds, shard) == {0: n + 1}
        assert store.read_chunks("ds", 2, [b"pk"], 0, 10) == []
        assert store.read_chunks("other", 1, [b"pk"], 0, 10) == []

    def test_retention(self, stores: Stores, store: ColumnStore) -> None:
        chunks = [make_chunk(b"old", 1, 0, 99), make_chunk(b"old", 2, 100, 199),
                  make_chunk(b"mid", 1, 150, 200), make_chunk(b"mid", 2, 201, 300),
                  make_chunk(b"new", 1, 500, 600)]  # fmt: skip
        store.write_chunks("ds", 0, chunks)
        store.write_chunks("ds", 1, chunks)
        store.write_part_keys("ds", 0, [PartKeyRecord(b"old", 0, 199), PartKeyRecord(b"mid", 150, 300),
                                        PartKeyRecord(b"new", 500, 600)])  # fmt: skip
        assert store.delete_before("ds", 0, 200) == 2
        assert self.sorted_raw(stores, "ds", 0) == sorted(
            chunks[2:], key=lambda c: (c.part_key, c.chunk_id)
        )
        assert sorted(r.part_key for r in self.raw_part_keys(stores, "ds", 0)) == [b"mid", b"new"]
        assert store.delete_before("ds", 0, 200) == 0
        assert store.delete_before("ds", 0, 301) == 2
        assert [r.part_key for r in store.scan_part_keys("ds", 0)] == [b"new"]
        assert len(self.raw_chunks(stores, "ds", 1)) == 5

    def test_retention_many_chunks(self, stores: Stores, store: ColumnStore) -> None:
        chunks = [make_chunk(pk_of(i % 100), i, i, i) for i in range(50_000)]
        store.write_chunks("ds", 0, chunks)
        assert store.delete_before("ds", 0, 45_000) == 45_000
        assert sorted(c.chunk_id for c in self.raw_chunks(stores, "ds", 0)) == list(
            range(45_000, 50_000)
        )

    # --- deletion ------------------------------------------------------------------------
    def test_delete_chunks_and_series(self, stores: Stores, store: ColumnStore) -> None:
        chunks = [make_chunk(b"a", 1, 0, 9), make_chunk(b"a", 2, 10, 19),
                  make_chunk(b"b", 1, 0, 9), make_chunk(b"c", 1, 5, 6)]  # fmt: skip
        for shard in (0, 1):
            store.write_chunks("ds", shard, chunks)
            store.write_part_keys("ds", shard, [PartKeyRecord(b"a", 0, 19),
                                                PartKeyRecord(b"b", 0, 9),
                                                PartKeyRecord(b"c", 5, 6)])  # fmt: skip
        store.delete_chunks("ds", 0, [(b"a", 2), (b"b", 7), (b"zz", 1)])
        assert ids(self.sorted_raw(stores, "ds", 0)) == [(b"a", 1), (b"b", 1), (b"c", 1)]
        assert len(self.raw_part_keys(stores, "ds", 0)) == 3  # records stay
        store.delete_series("ds", 0, [b"a", b"c", b"unknown"])
        assert ids(self.sorted_raw(stores, "ds", 0)) == [(b"b", 1)]
        assert [r.part_key for r in store.scan_part_keys("ds", 0)] == [b"b"]
        assert len(self.raw_chunks(stores, "ds", 1)) == 4  # other shards untouched
        store.write_chunks("ds", 0, [make_chunk(b"a", 30, 30, 39)])  # a new series again
        store.write_part_keys("ds", 0, [PartKeyRecord(b"a", 30, 39)])
        assert ids(store.read_chunks("ds", 0, [b"a"], 0, 100)) == [(b"a", 30)]
        assert sorted(r.part_key for r in store.scan_part_keys("ds", 0)) == [b"a", b"b"]
        with pytest.raises(BadInputError):
            store.delete_series("ds", 0, b"a")  # type: ignore[arg-type]
        with pytest.raises(BadInputError):
            store.delete_chunks("ds", 0, [(b"", 1)])
        with pytest.raises(UnknownDatasetError):
            store.delete_series("nope", 0, [b"a"])

    def test_delete_range_rewrites_straddling_chunks(
        self, stores: Stores, store: ColumnStore
    ) -> None:
        def trim(c: ChunkSet, lo: int, hi: int) -> ChunkSet | None:
            s, e = (hi + 1, c.end_ms) if c.start_ms >= lo else (c.start_ms, lo - 1)
            return make_chunk(c.part_key, c.chunk_id, s, e) if s <= e else None

        chunks = [make_chunk(b"a", 0, 0, 9), make_chunk(b"a", 10, 10, 19),
                  make_chunk(b"a", 20, 20, 29), make_chunk(b"b", 0, 0, 29)]  # fmt: skip
        store.write_chunks("ds", 0, chunks)
        store.write_part_keys("ds", 0, [PartKeyRecord(b"a", 0, 29), PartKeyRecord(b"b", 0, 29)])
        assert store.delete_range("ds", 0, [b"a"], 5, 22, trim) == 3
        want = [make_chunk(b"a", 0, 0, 4), make_chunk(b"a", 20, 23, 29), chunks[3]]
        assert self.sorted_raw(stores, "ds", 0) == want
        assert store.delete_range("ds", 0, [b"a"], 5, 22, trim) == 0  # idempotent
        assert self.sorted_raw(stores, "ds", 0) == want
        assert len(self.raw_part_keys(stores, "ds", 0)) == 2

    def test_truncate(self, stores: Stores, store: ColumnStore, meta: MetaStore) -> None:
        for shard in range(4):
            store.write_chunks("ds", shard, [make_chunk(b"pk", 1, 0, 10)])
            store.write_part_keys("ds", shard, [PartKeyRecord(b"pk", 0, 10)])
        meta.write_checkpoint("ds", 0, 0, 99)
        store.write_chunks("other", 0, [make_chunk(b"pk", 1, 0, 10)])
        store.truncate("ds")
        for shard in range(4):
            assert self.raw_chunks(stores, "ds", shard) == []
            assert self.raw_part_keys(stores, "ds", shard) == []
        assert meta.read_checkpoints("ds", 0) == {0: 99}
        assert len(self.raw_chunks(stores, "other", 0)) == 1
        assert store.num_shards("ds") == 4
        store.write_chunks("ds", 0, [make_chunk(b"pk", 2, 0, 10)])
        assert ids(store.read_chunks("ds", 0, [b"pk"], 0, 10)) == [(b"pk", 2)]

    # --- concurrency ---------------------------------------------------------------------
    def test_concurrent_writers_and_readers(
        self, stores: Stores, store: ColumnStore, meta: MetaStore
    ) -> None:
        writers, calls, per_call = 4, 40, 10
        pks = [pk_of(w) for w in range(writers)]
        errors: list[BaseException] = []
        done = threading.Event()

        def write(w: int) -> None:
            try:
                for i in range(calls):
                    chunks = [make_chunk(pks[w], i * per_call + j, i * per_call + j, i * per_call + j)
                              for j in range(per_call)]  # fmt: skip
                    store.write_flush(
                        meta, "ds", 0, w, chunks, [PartKeyRecord(pks[w], 0, i)], i + 1
                    )
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        def read() -> None:
            last = [0] * writers
            try:
                while not done.is_set():
                    got = store.read_chunks("ds", 0, pks, INT64_MIN, INT64_MAX)
                    for w, pk in enumerate(pks):
                        mine = [c for c in got if c.part_key == pk]
                        assert len(mine) % per_call == 0 and len(mine) >= last[w]  # whole calls
                        assert all(
                            c == make_chunk(pk, c.chunk_id, c.start_ms, c.end_ms) for c in mine
                        )
                        last[w] = len(mine)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        readers = [threading.Thread(target=read) for _ in range(2)]
        for t in threads + readers:
            t.start()
        for t in threads:
            t.join()
        done.set()
        for t in readers:
            t.join()
        assert errors == []
        assert len(self.raw_chunks(stores, "ds", 0)) == writers * calls * per_call
        assert self.raw_checkpoints(stores, "ds", 0) == {w: calls for w in range(writers)}
        assert sorted(self.raw_part_keys(stores, "ds", 0), key=lambda r: r.part_key) == [
            PartKeyRecord(pk, 0, calls - 1) for pk in pks]  # fmt: skip
