"""The column store and meta store on Apache Cassandra (tested against 5.0), via cassandra-driver.

Tables, all in one keyspace, each dataset a column (dataset names may hold '.' and '-')::

    datasets     (name) -> num_shards
    chunks       ((dataset, shard, part_key), chunk_id) -> start_ms, end_ms, num_rows, vectors
    chunk_index  ((dataset, shard, slot), part_key, chunk_id) -> end_ms, vector_bytes
    part_keys    ((dataset, shard), part_key) -> start_ms, end_ms
    checkpoints  ((dataset, shard), flush_group) -> log_offset

A series' chunks are one partition clustered by chunk id, so a query reads one partition per
series. ``chunk_index`` lists every chunk of a shard (spread over ``SLOTS`` partitions by a hash
of the part key, so none grows too large) with what retention and ``stats`` need and no vectors:
``delete_before`` and ``truncate`` find a shard's chunks there without scanning the cluster.

Write path: every statement is prepared once; ``write_chunks`` sends one single-partition
UNLOGGED batch per series (Cassandra applies it atomically and in isolation, so a reader sees
a series' chunks of one call all or none) and the index rows in batches per slot, all through
:class:`Pipeline`: ``execute_async`` with at most ``max_in_flight`` requests outstanding. A
call returns when every request is acknowledged at ``consistency`` (QUORUM; one replica when the
replication factor is 1) and raises :class:`~filodb.errors.UnavailableError` if any failed.
How durable an acknowledged write is depends on the cluster's ``commitlog_sync``.

Part keys merge (start = min, end = max) with compare-and-set: one read of the stored records
(a single-partition ``IN`` query), then a lightweight transaction per record that changes
(``INSERT ... IF NOT EXISTS`` or ``UPDATE ... IF start_ms = s AND end_ms = e``), retried
with the values a lost race returns. Writers never lose each other's updates, and deletes need
no special timestamps. The trick of encoding min/max in write timestamps was rejected: the
tombstones of retention and truncate would have to carry timestamps that also hide any later
rewrite of the same part key. Records that change nothing cost one read and no transaction.
Retention deletes a part key with ``DELETE ... IF end_ms < cutoff``, so a concurrent extension
wins.

Retention: ``delete_before`` (explicit deletes, found through ``chunk_index``) and, with
``ttl_s > 0``, a TTL on every chunk, index row and part key written (expiry counts from the
write, not from the data's time). See ``docs/cassandra.md``.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from filodb.errors import BadInputError, UnavailableError, UnknownDatasetError
from filodb.model.dataset import check_dataset_name
from filodb.store.base import (
    INT64_MAX,
    ChunkSet,
    ColumnStore,
    MetaStore,
    PartKeyRecord,
    check_checkpoint,
    check_range,
)

_END_SPAN = 1 << 43
_MAX_GENERATION = (1 << 19) - 1
SLOTS = 16  # chunk_index partitions per shard; part of the layout (changing it loses rows)
_BATCH_BYTES = 4 << 20  # vector bytes per single-partition batch (max mutation is 16 MiB)
_INDEX_BATCH = 500  # chunk_index rows or deletes per batch
_KEYSPACE_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS {ks}.datasets (
        name text PRIMARY KEY,
        num_shards int,
        generation bigint)""",
    """CREATE TABLE IF NOT EXISTS {ks}.chunks (
        dataset text, shard int, part_key blob, chunk_id bigint,
        start_ms bigint, end_ms bigint, num_rows bigint, vectors frozen<list<blob>>,
        PRIMARY KEY ((dataset, shard, part_key), chunk_id))""",
    """CREATE TABLE IF NOT EXISTS {ks}.chunk_index (
        dataset text, shard int, slot int, part_key blob, chunk_id bigint,
        end_ms bigint, vector_bytes bigint,
        PRIMARY KEY ((dataset, shard, slot), part_key, chunk_id))""",
    """CREATE TABLE IF NOT EXISTS {ks}.part_keys (
        dataset text, shard int, part_key blob, start_ms bigint, end_ms bigint,
        PRIMARY KEY ((dataset, shard), part_key, start_ms))""",
    """CREATE TABLE IF NOT EXISTS {ks}.checkpoints (
        dataset text, shard int, flush_group bigint, log_offset bigint,
        PRIMARY KEY ((dataset, shard), flush_group))""",
)
TABLES = ("datasets", "chunks", "chunk_index", "part_keys", "checkpoints")

_CQL = {
    "get_dataset": "SELECT num_shards FROM {ks}.datasets WHERE name = ?",
    "add_dataset": "INSERT INTO {ks}.datasets (name, num_shards) VALUES (?, ?) IF NOT EXISTS",
    "put_chunk": "INSERT INTO {ks}.chunks (dataset, shard, part_key, chunk_id, start_ms, end_ms, "
                 "num_rows, vectors) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?",
    "put_index": "INSERT INTO {ks}.chunk_index (dataset, shard, slot, part_key, chunk_id, end_ms, "
                 "vector_bytes) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?",
    "get_chunks": "SELECT chunk_id, start_ms, end_ms, num_rows, vectors FROM {ks}.chunks "
                  "WHERE dataset = ? AND shard = ? AND part_key = ? AND start_ms <= ? "
                  "AND end_ms >= ? ALLOW FILTERING",
    "old_index": "SELECT part_key, chunk_id FROM {ks}.chunk_index WHERE dataset = ? AND "
                 "shard = ? AND slot = ? AND end_ms < ? ALLOW FILTERING",
    "index_keys": "SELECT part_key FROM {ks}.chunk_index WHERE dataset = ? AND shard = ? "
                  "AND slot = ?",
    "index_stats": "SELECT count(*), sum(vector_bytes) FROM {ks}.chunk_index WHERE dataset = ? "
                   "AND shard = ? AND slot = ?",
    "del_chunk": "DELETE FROM {ks}.chunks WHERE dataset = ? AND shard = ? AND part_key = ? "
                 "AND chunk_id = ?",
    "del_series": "DELETE FROM {ks}.chunks WHERE dataset = ? AND shard = ? AND part_key = ?",
    "del_index": "DELETE FROM {ks}.chunk_index WHERE dataset = ? AND shard = ? AND slot = ? "
                 "AND part_key = ? AND chunk_id = ?",
    "del_index_series": "DELETE FROM {ks}.chunk_index WHERE dataset = ? AND shard = ? AND "
                        "slot = ? AND part_key = ?",
    "get_pk_ends": "SELECT end_ms FROM {ks}.part_keys WHERE dataset = ? AND shard = ? "
                   "AND part_key = ?",
    "del_index_slot": "DELETE FROM {ks}.chunk_index WHERE dataset = ? AND shard = ? AND slot = ?",
    "scan_pks": "SELECT part_key, start_ms, end_ms FROM {ks}.part_keys WHERE dataset = ? "
                "AND shard = ?",
    "get_generation": "SELECT generation FROM {ks}.datasets WHERE name = ?",
    "set_generation": "UPDATE {ks}.datasets SET generation = ? WHERE name = ?",
    "put_pk": "UPDATE {ks}.part_keys USING TTL ? AND TIMESTAMP ? SET end_ms = ? "
              "WHERE dataset = ? AND shard = ? AND part_key = ? AND start_ms = ?",
    "del_pk": "DELETE FROM {ks}.part_keys USING TIMESTAMP ? WHERE dataset = ? AND shard = ? "
              "AND part_key = ?",
    "del_pks": "DELETE FROM {ks}.part_keys USING TIMESTAMP ? WHERE dataset = ? AND shard = ?",
    "put_checkpoint": "INSERT INTO {ks}.checkpoints (dataset, shard, flush_group, log_offset) "
                      "VALUES (?, ?, ?, ?)",
    "get_checkpoints": "SELECT flush_group, log_offset FROM {ks}.checkpoints "
                       "WHERE dataset = ? AND shard = ?",
    "del_checkpoints": "DELETE FROM {ks}.checkpoints WHERE dataset = ? AND shard = ?",
}  # fmt: skip


def end_timestamp(end_ms: int, generation: int) -> int:
    """The write timestamp of a part key's ``end_ms`` cell: larger ends win, later generations win.

    ``generation << 44`` plus the end clamped to +-2**43 ms (+-278 years around 1970) and offset
    to be positive; generations 1 .. 2**19-1 fit in Cassandra's positive int64 timestamps.
    """
    clamped = min(max(end_ms, -_END_SPAN), _END_SPAN - 1)
    return (generation << 44) + clamped + _END_SPAN


def slot_of(part_key: bytes) -> int:
    """The ``chunk_index`` partition of a part key: CRC-32 modulo :data:`SLOTS`."""
    return zlib.crc32(part_key) % SLOTS


class Pipeline:
    """Runs statements with ``execute_async``, at most ``max_in_flight`` outstanding at once.

    :meth:`run` submits in order, blocks while the limit is reached, stops submitting after the
    first failure, waits for everything in flight, and raises :class:`UnavailableError` if any
    request failed. ``peak`` is the most requests ever in flight together (a test hook).
    """

    def __init__(self, session: Any, max_in_flight: int, timeout_s: float):
        self.session = session
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self.peak = 0
        self._lock = threading.Lock()

    def run(self, work: Iterable[tuple[Any, Any]], profile: Any = None) -> list[Any]:
        """Execute ``(statement, parameters)`` pairs; their finished ResponseFutures, in order."""
        from cassandra.cluster import EXEC_PROFILE_DEFAULT

        profile = EXEC_PROFILE_DEFAULT if profile is None else profile
        slots = threading.Semaphore(self.max_in_flight)
        errors: list[BaseException] = []
        futures = []
        in_flight = [0]

        def finished(_result: object = None) -> None:
            with self._lock:
                in_flight[0] -= 1
            slots.release()

        def failed(exc: BaseException) -> None:
            errors.append(exc)
            finished()

        for stmt, params in work:
            slots.acquire()
            if errors:
                slots.release()
                break
            with self._lock:
                in_flight[0] += 1
                self.peak = max(self.peak, in_flight[0])
            try:
                f = self.session.execute_async(stmt, params, timeout=self.timeout_s,
                                               execution_profile=profile)  # fmt: skip
            except Exception as e:  # noqa: BLE001 - e.g. a closed session; reported below
                failed(e)
                break
            f.add_callbacks(finished, failed)
            futures.append(f)
        for _ in range(self.max_in_flight):  # every submitted request has come back
            slots.acquire()
        for _ in range(self.max_in_flight):
            slots.release()
        if errors:
            raise UnavailableError(
                f"Cassandra request failed ({len(errors)} of {len(futures)}): {errors[0]!r}"
            ) from errors[0]
        return futures


class _Keyspace:
    """The cluster connection, prepared statements and dataset registry shared by both stores."""

    def __init__(self, hosts: Sequence[str], port: int, keyspace: str, replication_factor: int,
                 max_in_flight: int, ttl_s: int, consistency: str, connect_timeout_s: float,
                 request_timeout_s: float, protocol_version: int | None):  # fmt: skip
        from cassandra import ConsistencyLevel
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
        from cassandra.query import dict_factory, tuple_factory

        if isinstance(hosts, str):
            hosts = [h for h in hosts.split(",") if h]
        if not hosts or not all(isinstance(h, str) and h for h in hosts):
            raise BadInputError(f"hosts must be a non-empty list of host names, got {hosts!r}")
        for name, v, lo in (("port", port, 1), ("replication_factor", replication_factor, 1),
                            ("max_in_flight", max_in_flight, 1), ("ttl_s", ttl_s, 0)):  # fmt: skip
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise BadInputError(f"{name} must be an int >= {lo}, got {v!r}")
        if ttl_s > 630_720_000:  # Cassandra's limit: 20 years
            raise BadInputError(f"ttl_s must be at most 630720000 (20 years), got {ttl_s}")
        if not isinstance(keyspace, str) or not keyspace or not set(keyspace) <= _KEYSPACE_CHARS \
                or len(keyspace) > 48 or keyspace[0] == "_":  # fmt: skip
            raise BadInputError(
                f"keyspace must be 1-48 lower-case letters, digits or '_', got {keyspace!r}"
            )
        level = getattr(ConsistencyLevel, str(consistency).upper(), None)
        if not isinstance(level, int):
            raise BadInputError(f"unknown consistency level {consistency!r}")
        self.keyspace, self.ttl_s = keyspace, ttl_s

        def profile(factory: Any) -> ExecutionProfile:
            return ExecutionProfile(
                load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
                consistency_level=level, serial_consistency_level=ConsistencyLevel.SERIAL,
                request_timeout=request_timeout_s, row_factory=factory,
            )  # fmt: skip

        kwargs: dict[str, Any] = {}
        if protocol_version is not None:
            kwargs["protocol_version"] = protocol_version
        self.cluster = Cluster(
            list(hosts), port=port, connect_timeout=connect_timeout_s,
            control_connection_timeout=connect_timeout_s,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile(tuple_factory),
                                "dicts": profile(dict_factory)},
            **kwargs,
        )  # fmt: skip
        try:
            self.session = self.cluster.connect()
        except Exception as e:
            self.cluster.shutdown()
            raise UnavailableError(
                f"cannot reach Cassandra at {','.join(hosts)}:{port}: {e}"
            ) from e
        try:
            self._create_schema(replication_factor)
            self.q = {k: self.session.prepare(v.format(ks=keyspace)) for k, v in _CQL.items()}
        except Exception as e:
            self.cluster.shutdown()
            if isinstance(e, BadInputError | UnavailableError):
                raise
            raise UnavailableError(f"Cassandra keyspace {keyspace!r} setup failed: {e}") from e
        self.pipeline = Pipeline(self.session, max_in_flight, request_timeout_s)
        self._shards: dict[str, int] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _create_schema(self, replication_factor: int) -> None:
        ks = self.keyspace
        meta = self.cluster.metadata.keyspaces.get(ks)
        if meta is not None and all(t in meta.tables for t in TABLES):
            return  # every table exists: no schema change (they are slow and cluster-wide)
        self.session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
            f"{{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}",
            timeout=60,
        )
        for stmt in _SCHEMA:
            self.session.execute(stmt.format(ks=ks), timeout=60)
        if not self.cluster.control_connection.wait_for_schema_agreement():
            raise UnavailableError(f"Cassandra nodes disagree on the schema of {ks!r}")

    # --- datasets and arguments ----------------------------------------------------------
    def check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the Cassandra store is closed")

    def register(self, dataset: str, num_shards: int) -> None:
        check_dataset_name(dataset)
        if not isinstance(num_shards, int) or isinstance(num_shards, bool) \
                or not 1 <= num_shards < 2**31:  # fmt: skip
            raise BadInputError(f"num_shards must be an int >= 1, got {num_shards!r}")
        self.check_open()
        row = self._execute(self.q["add_dataset"], (dataset, num_shards), "dicts").one()
        have = num_shards if row["[applied]"] else row["num_shards"]
        if have != num_shards:
            raise BadInputError(f"dataset {dataset!r} already has {have} shards, not {num_shards}")
        with self._lock:
            self._shards[dataset] = num_shards

    def num_shards(self, dataset: str) -> int:
        check_dataset_name(dataset)
        self.check_open()
        with self._lock:
            n = self._shards.get(dataset)
        if n is None:
            row = self._execute(self.q["get_dataset"], (dataset,)).one()
            if row is None:
                raise UnknownDatasetError(
                    f"dataset {dataset!r} is not initialized in keyspace {self.keyspace!r}"
                )
            n = row[0]
            with self._lock:
                self._shards[dataset] = n
        return n

    def generation(self, dataset: str) -> int:
        """The dataset's part-key generation (see :func:`end_timestamp`), read fresh each time."""
        row = self._execute(self.q["get_generation"], (dataset,)).one()
        return (row[0] if row and row[0] else 1) if row else 1

    def set_generation(self, dataset: str, generation: int) -> None:
        if generation > _MAX_GENERATION:
            raise UnavailableError(f"dataset {dataset!r} was truncated {generation} times: no "
                                   "part-key generation left; drop and recreate it")  # fmt: skip
        self._execute(self.q["set_generation"], (generation, dataset))

    def check_shard(self, dataset: str, shard: int) -> None:
        n = self.num_shards(dataset)
        if not isinstance(shard, int) or isinstance(shard, bool) or not 0 <= shard < n:
            raise BadInputError(f"shard {shard!r} out of range: dataset {dataset!r} has {n} shards")

    def _execute(self, stmt: Any, params: Any, profile: Any = None) -> Any:
        (f,) = self.pipeline.run([(stmt, params)], profile)
        return f.result()

    def rows(self, stmt: Any, params: Any) -> Any:
        """The rows of one (paged) query, fetched as they are iterated."""
        return self._execute(stmt, params)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.cluster.shutdown()


def _batches(stmt: Any, rows: Iterable[tuple[Any, ...]], max_rows: int, max_bytes: int = 0,
             size_of: Any = None) -> Iterator[tuple[Any, Any]]:  # fmt: skip
    """(statement, params) pairs: a lone row as itself, several as UNLOGGED batches."""
    from cassandra.query import BatchStatement, BatchType

    group: list[tuple[Any, ...]] = []
    nbytes = 0

    def flush() -> tuple[Any, Any]:
        if len(group) == 1:
            return stmt, group[0]
        batch = BatchStatement(BatchType.UNLOGGED)
        for r in group:
            batch.add(stmt, r)
        return batch, None

    for r in rows:
        size = size_of(r) if size_of else 0
        if group and (len(group) >= max_rows or (max_bytes and nbytes + size > max_bytes)):
            yield flush()
            group, nbytes = [], 0
        group.append(r)
        nbytes += size
    if group:
        yield flush()


class CassandraColumnStore(ColumnStore):
    """:class:`ColumnStore` on Cassandra tables (see the module docstring for the layout)."""

    def __init__(self, ks: _Keyspace):
        self.ks = ks

    @property
    def pipeline(self) -> Pipeline:
        return self.ks.pipeline

    def initialize(self, dataset: str, num_shards: int) -> None:
        self.ks.register(dataset, num_shards)

    def num_shards(self, dataset: str) -> int:
        return self.ks.num_shards(dataset)

    def write_chunks(self, dataset: str, shard: int, chunks: Sequence[ChunkSet]) -> None:
        self.ks.check_shard(dataset, shard)
        if isinstance(chunks, ChunkSet):
            raise BadInputError("write_chunks takes a sequence of ChunkSet, not one ChunkSet")
        latest: dict[tuple[bytes, int], ChunkSet] = {}
        for c in chunks:
            if not isinstance(c, ChunkSet):
                raise BadInputError(f"expected ChunkSet, got {type(c).__name__}")
            latest.pop((c.part_key, c.chunk_id), None)  # the last write of a key wins
            latest[(c.part_key, c.chunk_id)] = c
        if not latest:
            return
        ttl, q = self.ks.ttl_s, self.ks.q
        by_series: dict[bytes, list[tuple[Any, ...]]] = {}
        by_slot: dict[int, list[tuple[Any, ...]]] = {}
        for c in latest.values():
            by_series.setdefault(c.part_key, []).append(
                (dataset, shard, c.part_key, c.chunk_id, c.start_ms, c.end_ms, c.num_rows,
                 list(c.vectors), ttl))  # fmt: skip
            slot = slot_of(c.part_key)
            by_slot.setdefault(slot, []).append(
                (dataset, shard, slot, c.part_key, c.chunk_id, c.end_ms, c.nbytes, ttl)
            )

        def work() -> Iterator[tuple[Any, Any]]:
            for rows in by_series.values():  # one partition each: atomic, isolated
                yield from _batches(q["put_chunk"], rows, 10_000, _BATCH_BYTES,
                                    lambda r: sum(len(v) for v in r[7]))  # fmt: skip
            for rows in by_slot.values():
                yield from _batches(q["put_index"], rows, _INDEX_BATCH)

        self.ks.check_open()
        self.ks.pipeline.run(work())

    def read_chunks(
        self, dataset: str, shard: int, part_keys: Sequence[bytes], start_ms: int, end_ms: int
    ) -> list[ChunkSet]:
        check_range(start_ms, end_ms)
        if isinstance(part_keys, bytes | str):
            raise BadInputError("read_chunks takes a sequence of part keys, not one part key")
        wanted = list(dict.fromkeys(part_keys))
        if not all(isinstance(pk, bytes) and pk for pk in wanted):
            raise BadInputError("part keys must be non-empty bytes")
        self.ks.check_shard(dataset, shard)
        self.ks.check_open()
        stmt = self.ks.q["get_chunks"]
        futures = self.ks.pipeline.run(
            (stmt, (dataset, shard, pk, end_ms, start_ms)) for pk in wanted
        )
        out: list[ChunkSet] = []
        for pk, f in zip(wanted, futures, strict=True):
            found = [
                ChunkSet.from_store(pk, cid, s, e, n, tuple(vs) if vs else ())
                for cid, s, e, n, vs in f.result()
            ]
            found.sort(key=lambda c: (c.start_ms, c.chunk_id))
            out.extend(found)
        return out

    def write_part_keys(self, dataset: str, shard: int, records: Sequence[PartKeyRecord]) -> None:
        self.ks.check_shard(dataset, shard)
        if isinstance(records, PartKeyRecord):
            raise BadInputError("write_part_keys takes a sequence of PartKeyRecord, not one record")
        want: dict[bytes, tuple[int, int]] = {}
        for r in records:
            if not isinstance(r, PartKeyRecord):
                raise BadInputError(f"expected PartKeyRecord, got {type(r).__name__}")
            have = want.get(r.part_key)
            want[r.part_key] = (r.start_ms, r.end_ms) if have is None else (
                min(have[0], r.start_ms), max(have[1], r.end_ms))  # fmt: skip
        if not want:
            return
        gen, ttl = self.ks.generation(dataset), self.ks.ttl_s
        rows = [
            (ttl, end_timestamp(e, gen), e, dataset, shard, pk, s) for pk, (s, e) in want.items()
        ]
        # One partition per shard: batches of many records are one mutation each.
        self.ks.pipeline.run(_batches(self.ks.q["put_pk"], rows, _INDEX_BATCH))

    def scan_part_keys(self, dataset: str, shard: int) -> Iterator[PartKeyRecord]:
        self.ks.check_shard(dataset, shard)
        return (PartKeyRecord(pk, s, e) for pk, s, e in self._merged(dataset, shard))

    def _merged(self, dataset: str, shard: int) -> Iterator[tuple[bytes, int, int]]:
        """(part key, min start, max end) from the rows, which come sorted by (part key, start)."""
        pk, start, end = None, 0, 0
        for key, s, e in self.ks.rows(self.ks.q["scan_pks"], (dataset, shard)):
            if key != pk:
                if pk is not None:
                    yield pk, start, end
                pk, start, end = key, s, e
            elif e > end:
                end = e
        if pk is not None:
            yield pk, start, end

    def delete_before(self, dataset: str, shard: int, cutoff_ms: int) -> int:
        check_range(cutoff_ms, cutoff_ms)
        self.ks.check_shard(dataset, shard)
        self.ks.check_open()
        q, run = self.ks.q, self.ks.pipeline.run
        old: dict[bytes, list[int]] = {}
        for f in run((q["old_index"], (dataset, shard, slot, cutoff_ms)) for slot in range(SLOTS)):
            for pk, cid in f.result():
                old.setdefault(pk, []).append(cid)
        # Chunks first, then their index rows: a crash in between leaves index rows that the
        # next run deletes again, never chunks that nothing lists.
        run(
            b for pk, cids in old.items()
            for b in _batches(q["del_chunk"], [(dataset, shard, pk, c) for c in cids], 1000)
        )  # fmt: skip
        by_slot: dict[int, list[tuple[Any, ...]]] = {}
        for pk, cids in old.items():
            slot = slot_of(pk)
            by_slot.setdefault(slot, []).extend((dataset, shard, slot, pk, c) for c in cids)
        run(b for rows in by_slot.values() for b in _batches(q["del_index"], rows, _INDEX_BATCH))
        # A part key's tombstone carries the timestamp of its stored end: it hides what ended
        # before the cutoff, never a concurrent write that extends the series past it.
        gen = self.ks.generation(dataset)
        dead = [(end_timestamp(e, gen), dataset, shard, pk)
                for pk, _, e in self._merged(dataset, shard) if e < cutoff_ms]  # fmt: skip
        run(_batches(q["del_pk"], dead, _INDEX_BATCH))
        return sum(len(c) for c in old.values())

    def delete_chunks(self, dataset: str, shard: int, keys: Sequence[tuple[bytes, int]]) -> None:
        keys = list(dict.fromkeys(keys))
        if not all(isinstance(pk, bytes) and pk and isinstance(c, int) for pk, c in keys):
            raise BadInputError("delete_chunks takes (part key, chunk id) pairs")
        self.ks.check_shard(dataset, shard)
        self.ks.check_open()
        q, run = self.ks.q, self.ks.pipeline.run
        # Chunks first, then their index rows (as delete_before).
        run((q["del_chunk"], (dataset, shard, pk, c)) for pk, c in keys)
        run((q["del_index"], (dataset, shard, slot_of(pk), pk, c)) for pk, c in keys)

    def delete_series(self, dataset: str, shard: int, part_keys: Sequence[bytes]) -> None:
        if isinstance(part_keys, bytes | str):
            raise BadInputError("delete_series takes a sequence of part keys, not one part key")
        wanted = list(dict.fromkeys(part_keys))
        if not all(isinstance(pk, bytes) and pk for pk in wanted):
            raise BadInputError("part keys must be non-empty bytes")
        self.ks.check_shard(dataset, shard)
        self.ks.check_open()
        q, run = self.ks.q, self.ks.pipeline.run
        run((q["del_series"], (dataset, shard, pk)) for pk in wanted)
        run((q["del_index_series"], (dataset, shard, slot_of(pk), pk)) for pk in wanted)
        # The part key's tombstone carries the timestamp of its stored end (as retention's):
        # a later write of the series with newer samples is not hidden by it.
        gen = self.ks.generation(dataset)
        ends = run((q["get_pk_ends"], (dataset, shard, pk)) for pk in wanted)
        dead = [
            (end_timestamp(max(e for (e,) in rows), gen), dataset, shard, pk)
            for pk, f in zip(wanted, ends, strict=True)
            if (rows := list(f.result()))
        ]
        run(_batches(q["del_pk"], dead, _INDEX_BATCH))

    def truncate(self, dataset: str) -> None:
        n = self.ks.num_shards(dataset)
        self.ks.check_open()
        q, run = self.ks.q, self.ks.pipeline.run
        for shard in range(n):
            keys: set[bytes] = set()
            for f in run((q["index_keys"], (dataset, shard, slot)) for slot in range(SLOTS)):
                keys.update(pk for (pk,) in f.result())
            run((q["del_series"], (dataset, shard, pk)) for pk in keys)
            run((q["del_index_slot"], (dataset, shard, slot)) for slot in range(SLOTS))
        # Part keys: a partition tombstone over every timestamp of this generation, then the
        # next generation, whose writes it does not hide.
        gen = self.ks.generation(dataset)
        run((q["del_pks"], (end_timestamp(INT64_MAX, gen), dataset, shard)) for shard in range(n))
        self.ks.set_generation(dataset, gen + 1)

    def stats(self, dataset: str, shard: int) -> dict[str, int]:
        self.ks.check_shard(dataset, shard)
        self.ks.check_open()
        q = self.ks.q
        fs = self.ks.pipeline.run(
            (q["index_stats"], (dataset, shard, slot)) for slot in range(SLOTS)
        )
        chunks = nbytes = 0
        for f in fs:
            n, b = f.result().one()
            chunks += n
            nbytes += b or 0
        pks = sum(1 for _ in self._merged(dataset, shard))
        return {"chunks": chunks, "vector_bytes": nbytes, "part_keys": pks}

    def close(self) -> None:
        self.ks.close()


class CassandraMetaStore(MetaStore):
    """Checkpoints in the ``checkpoints`` table: one partition per (dataset, shard)."""

    def __init__(self, ks: _Keyspace):
        self.ks = ks

    def write_checkpoint(self, dataset: str, shard: int, group: int, offset: int) -> None:
        self.ks.check_shard(dataset, shard)
        check_checkpoint(group, offset)
        self.ks.rows(self.ks.q["put_checkpoint"], (dataset, shard, group, offset))

    def read_checkpoints(self, dataset: str, shard: int) -> dict[int, int]:
        self.ks.check_shard(dataset, shard)
        return dict(self.ks.rows(self.ks.q["get_checkpoints"], (dataset, shard)))

    def clear_checkpoints(self, dataset: str, shard: int) -> None:
        self.ks.check_shard(dataset, shard)
        self.ks.rows(self.ks.q["del_checkpoints"], (dataset, shard))

    def close(self) -> None:
        self.ks.close()


def open_cassandra(
    hosts: Sequence[str] | str,
    port: int = 9042,
    keyspace: str = "filodb",
    replication_factor: int = 1,
    max_in_flight: int = 128,
    ttl_s: int = 0,
    consistency: str = "QUORUM",
    connect_timeout_s: float = 10.0,
    request_timeout_s: float = 30.0,
    protocol_version: int | None = None,
) -> tuple[CassandraColumnStore, CassandraMetaStore]:
    """The column store and meta store in ``keyspace``, sharing one Cluster and Session.

    ``hosts``: contact points (a list, or one comma-separated string). The keyspace
    (SimpleStrategy with ``replication_factor``) and its tables are created if missing.
    ``max_in_flight``: requests outstanding at once per call. ``ttl_s``: when > 0, chunks and
    part keys expire that many seconds after they were written (retention by TTL).
    ``consistency``: of reads and writes (QUORUM; compare-and-set uses SERIAL).
    An unreachable cluster raises :class:`~filodb.errors.UnavailableError` after about
    ``connect_timeout_s`` per contact point.
    """
    ks = _Keyspace(hosts, port, keyspace, replication_factor, max_in_flight, ttl_s, consistency,
                   connect_timeout_s, request_timeout_s, protocol_version)  # fmt: skip
    return CassandraColumnStore(ks), CassandraMetaStore(ks)
