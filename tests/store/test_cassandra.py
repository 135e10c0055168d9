"""The Cassandra backend against a real Cassandra 5.0 node (``filodb.devservices``).

The node is started once per test session (``cassandra_env`` in tests/conftest.py, shared with
the end-to-end test) and stopped at its end. Every test starts from empty
tables (TRUNCATE; the node runs with ``auto_snapshot: false``).
"""

from __future__ import annotations

import threading
import time
import zlib

import pytest

from filodb.devservices import base
from filodb.errors import BadInputError, UnavailableError
from filodb.store import open_store
from filodb.store.base import INT64_MAX, INT64_MIN, ChunkSet, PartKeyRecord
from filodb.store.cassandra import TABLES, CassandraColumnStore, open_cassandra
from filodb.testing.store_suite import Stores, StoreSuite, make_chunk, pk_of
from filodb.testing.wait import eventually

KEYSPACE = "filodb_test"


@pytest.fixture(scope="session")
def contact(cassandra_env: dict[str, str]) -> dict:
    return {"hosts": cassandra_env["FILODB_CASSANDRA_HOSTS"].split(","),
            "port": int(cassandra_env["FILODB_CASSANDRA_PORT"]), "keyspace": KEYSPACE}  # fmt: skip


@pytest.fixture(scope="session")
def raw(contact: dict):  # type: ignore[no-untyped-def]
    """A driver session of our own, for the back doors (the schema is created by the store)."""
    from cassandra.cluster import Cluster

    cs, ms = open_cassandra(**contact)  # creates keyspace and tables if missing
    cs.close()
    cluster = Cluster(contact["hosts"], port=contact["port"])
    session = cluster.connect(KEYSPACE)
    yield session
    cluster.shutdown()


@pytest.fixture
def empty(raw) -> None:  # type: ignore[no-untyped-def]
    for table in TABLES:
        raw.execute(f"TRUNCATE {table}", timeout=60)


def _rows(raw, cql: str, *params):  # type: ignore[no-untyped-def]
    return list(raw.execute(raw.prepare(cql), params))


class TestCassandraStore(StoreSuite):
    @pytest.fixture
    def stores(self, contact: dict, empty: None) -> Stores:
        cs, ms = open_store("cassandra", "/nonexistent", **contact)
        yield cs, ms
        cs.close()

    # The back doors read and write the tables as docs/cassandra.md lays them out.
    def raw_chunks(self, stores, dataset, shard):  # type: ignore[no-untyped-def]
        raw = stores[0].ks.session
        rows = raw.execute(f"SELECT dataset, shard, part_key, chunk_id, start_ms, end_ms, "
                           f"num_rows, vectors FROM {KEYSPACE}.chunks")  # fmt: skip
        return [ChunkSet(r[2], r[3], r[4], r[5], r[6], tuple(r[7] or ())) for r in rows
                if r[0] == dataset and r[1] == shard]  # fmt: skip

    def raw_part_keys(self, stores, dataset, shard):  # type: ignore[no-untyped-def]
        raw = stores[0].ks.session
        merged: dict[bytes, tuple[int, int]] = {}
        for pk, s, e in _rows(raw, f"SELECT part_key, start_ms, end_ms FROM {KEYSPACE}.part_keys "
                                   "WHERE dataset = ? AND shard = ?", dataset, shard):  # fmt: skip
            have = merged.get(pk, (s, e))
            merged[pk] = (min(have[0], s), max(have[1], e))  # rows per (part key, start)
        return [PartKeyRecord(pk, s, e) for pk, (s, e) in merged.items()]

    def raw_checkpoints(self, stores, dataset, shard):  # type: ignore[no-untyped-def]
        raw = stores[0].ks.session
        return dict(_rows(raw, f"SELECT flush_group, log_offset FROM {KEYSPACE}.checkpoints "
                               "WHERE dataset = ? AND shard = ?", dataset, shard))  # fmt: skip

    def raw_put_chunks(self, stores, dataset, shard, chunks):  # type: ignore[no-untyped-def]
        raw = stores[0].ks.session
        put = raw.prepare(
            f"INSERT INTO {KEYSPACE}.chunks (dataset, shard, part_key, chunk_id, "
            "start_ms, end_ms, num_rows, vectors) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        idx = raw.prepare(
            f"INSERT INTO {KEYSPACE}.chunk_index (dataset, shard, slot, part_key, "
            "chunk_id, end_ms, vector_bytes) VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        for c in chunks:
            raw.execute(put, (dataset, shard, c.part_key, c.chunk_id, c.start_ms, c.end_ms,
                              c.num_rows, list(c.vectors)))  # fmt: skip
            raw.execute(idx, (dataset, shard, zlib.crc32(c.part_key) % 16, c.part_key,
                              c.chunk_id, c.end_ms, sum(len(v) for v in c.vectors)))  # fmt: skip

    # --- Cassandra's own ------------------------------------------------------------------
    def test_many_writes_in_flight_are_bounded(self, contact: dict, empty: None) -> None:
        cs, ms = open_cassandra(**contact, max_in_flight=8)
        session = cs.ks.session
        real = session.execute_async
        now, peak, lock = [0], [0], threading.Lock()

        def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
            with lock:
                now[0] += 1
                peak[0] = max(peak[0], now[0])
            f = real(*args, **kwargs)

            def done(_: object = None) -> None:
                with lock:
                    now[0] -= 1

            f.add_callbacks(done, done)
            return f

        session.execute_async = counting
        try:
            cs.initialize("ds", 1)
            chunks = [make_chunk(pk_of(i), 1, i, i + 10, size=300) for i in range(5000)]
            cs.write_chunks("ds", 0, chunks)
            assert 2 <= peak[0] <= 8  # concurrent, and never more than allowed
            assert cs.pipeline.peak == peak[0]
            got = cs.read_chunks("ds", 0, [c.part_key for c in chunks], INT64_MIN, INT64_MAX)
            assert got == chunks
            assert peak[0] <= 8
            assert cs.stats("ds", 0)["chunks"] == 5000
        finally:
            session.execute_async = real
            cs.close()

    def test_failed_write_raises(self, stores: Stores, store: CassandraColumnStore) -> None:
        # 40 MiB exceeds the node's largest mutation (half a 32 MiB commit-log segment).
        chunks = [make_chunk(pk_of(i), 1, 0, 10) for i in range(50)]
        chunks.append(ChunkSet(b"huge", 1, 0, 10, 1, (b"\x00" * (40 << 20),)))
        with pytest.raises(UnavailableError, match="Cassandra request failed"):
            store.write_chunks("ds", 0, chunks)
        assert store.read_chunks("ds", 0, [b"huge"], 0, 10) == []
        store.write_chunks("ds", 0, chunks[:3])  # the store is still usable
        assert store.read_chunks("ds", 0, [pk_of(0)], 0, 10) == chunks[:1]

    def test_ttl_retention(self, contact: dict, empty: None) -> None:
        cs, ms = open_cassandra(**contact, ttl_s=2)
        keep, _ = open_cassandra(**contact)
        try:
            cs.initialize("ds", 1)
            cs.write_chunks("ds", 0, [make_chunk(b"short", 1, 0, 10)])
            cs.write_part_keys("ds", 0, [PartKeyRecord(b"short", 0, 10)])
            keep.write_chunks("ds", 0, [make_chunk(b"long", 1, 0, 10)])
            keep.write_part_keys("ds", 0, [PartKeyRecord(b"long", 0, 10)])
            ms.write_checkpoint("ds", 0, 0, 5)
            assert cs.stats("ds", 0) == {"chunks": 2, "vector_bytes": 96, "part_keys": 2}
            (ttl,) = cs.ks.session.execute(
                f"SELECT TTL(num_rows) FROM {KEYSPACE}.chunks WHERE dataset = 'ds' AND shard = 0 "
                "AND part_key = 0x73686f7274").one()  # fmt: skip
            assert 0 < ttl <= 2

            def expired() -> None:  # Cassandra's clock: the 2 s TTL runs out on the server
                assert cs.read_chunks("ds", 0, [b"short", b"long"], 0, 10) == [
                    make_chunk(b"long", 1, 0, 10)]  # fmt: skip
                assert list(cs.scan_part_keys("ds", 0)) == [PartKeyRecord(b"long", 0, 10)]
                assert cs.stats("ds", 0) == {"chunks": 1, "vector_bytes": 48, "part_keys": 1}

            eventually(expired, 10, 0.2)
            assert ms.read_checkpoints("ds", 0) == {0: 5}  # checkpoints never expire
        finally:
            cs.close()
            keep.close()

    def test_reopened_store_reads_what_another_wrote(self, contact: dict, empty: None) -> None:
        cs, ms = open_cassandra(**contact)
        cs.initialize("prom_v1-a", 3)
        chunks = [make_chunk(pk_of(i), 7, 100, 200) for i in range(10)]
        cs.write_flush(ms, "prom_v1-a", 2, 1, chunks, [PartKeyRecord(pk_of(0), 100, 200)], 42)
        cs.close()
        with pytest.raises(RuntimeError, match="closed"):
            cs.stats("prom_v1-a", 2)
        cs2, ms2 = open_cassandra(**contact)  # a new Cluster and Session
        try:
            assert cs2.num_shards("prom_v1-a") == 3
            assert cs2.read_chunks("prom_v1-a", 2, [pk_of(i) for i in range(10)], 0, 150) == chunks
            assert list(cs2.scan_part_keys("prom_v1-a", 2)) == [PartKeyRecord(pk_of(0), 100, 200)]
            assert ms2.read_checkpoints("prom_v1-a", 2) == {1: 42}
            with pytest.raises(BadInputError, match="3 shards"):
                cs2.initialize("prom_v1-a", 4)
        finally:
            cs2.close()

    def test_unreachable_contact_point(self) -> None:
        port = base.free_port()  # nothing listens there
        t0 = time.monotonic()
        with pytest.raises(UnavailableError, match=f"cannot reach Cassandra at 127.0.0.1:{port}"):
            open_cassandra(["127.0.0.1"], port=port, connect_timeout_s=2.0)
        assert time.monotonic() - t0 < 15

    @pytest.mark.parametrize(
        "options",
        [{"keyspace": "Bad-Name"}, {"keyspace": ""}, {"max_in_flight": 0}, {"ttl_s": -1},
         {"ttl_s": 10**10}, {"consistency": "SOMETIMES"}, {"hosts": []}, {"port": "9042"}],
    )  # fmt: skip
    def test_bad_options(self, contact: dict, options: dict) -> None:
        with pytest.raises(BadInputError):
            open_cassandra(**{**contact, **options})

    def test_concurrent_part_key_merges(self, stores: Stores, store: CassandraColumnStore) -> None:
        # Many writers merge into the same records at once, without reading: min/max still hold.
        def write(w: int) -> None:
            for i in range(20):
                store.write_part_keys(
                    "ds",
                    0,
                    [
                        PartKeyRecord(pk_of(k), 1000 - w * 20 - i, 1000 + w * 20 + i)
                        for k in range(5)
                    ],
                )

        threads = [threading.Thread(target=write, args=(w,)) for w in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(store.scan_part_keys("ds", 0), key=lambda r: r.part_key) == [
            PartKeyRecord(pk_of(k), 1000 - 119, 1000 + 119) for k in range(5)]  # fmt: skip

    def test_part_keys_come_back_after_retention_and_truncate(
        self, stores: Stores, store: CassandraColumnStore
    ) -> None:
        store.write_part_keys("ds", 0, [PartKeyRecord(b"a", 0, 100), PartKeyRecord(b"b", 0, 500)])
        store.delete_before("ds", 0, 200)
        assert list(store.scan_part_keys("ds", 0)) == [PartKeyRecord(b"b", 0, 500)]
        # The series resumes after the cutoff: its new record is not hidden by the tombstone.
        store.write_part_keys("ds", 0, [PartKeyRecord(b"a", 300, 400)])
        assert sorted(self.raw_part_keys(stores, "ds", 0), key=lambda r: r.part_key) == [
            PartKeyRecord(b"a", 300, 400), PartKeyRecord(b"b", 0, 500)]  # fmt: skip
        # After truncate even the very same records may be written again.
        store.truncate("ds")
        assert self.raw_part_keys(stores, "ds", 0) == []
        store.write_part_keys("ds", 0, [PartKeyRecord(b"b", 0, 500), PartKeyRecord(b"c", 1, 2)])
        assert sorted(store.scan_part_keys("ds", 0), key=lambda r: r.part_key) == [
            PartKeyRecord(b"b", 0, 500), PartKeyRecord(b"c", 1, 2)]  # fmt: skip
        assert store.stats("ds", 0)["part_keys"] == 2
        store.truncate("ds")
        store.write_part_keys("ds", 0, [PartKeyRecord(b"b", INT64_MIN, INT64_MAX)])
        assert list(store.scan_part_keys("ds", 0)) == [PartKeyRecord(b"b", INT64_MIN, INT64_MAX)]
