"""Log backend on Redis Streams (the embedded default).

Partition ``(dataset, shard)`` is the stream ``filodb:log:{<dataset>:<shard>}``; a counter key
in the same hash slot hands out dense offsets, and a Lua script appends with entry id
``0-<offset>`` so that the stream id *is* the offset and XREAD from ``0-<n>`` resumes after
record ``n``. Each entry has one field ``d`` holding the record bytes.

Durability is Redis's: ``filodb up`` runs redis-server with ``appendonly yes`` (write before
reply, fsync every second), so an acknowledged record survives a kill -9 of any process.
Blocking reads keep ``block_ms`` well under the client's socket timeout (see
shared/notes/celery-redis.md, gotcha 4).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import redis
from redis.exceptions import NoScriptError, ResponseError
from redis.typing import KeyT, StreamIdT

from filodb.ingest.base import Log, Partition, Sent
from filodb.ingest.log_room import LogRoom
from filodb.ingest.spill import LogSpill

XREAD_KEYS = 1000  # streams per XREAD when a read over many partitions is split

# Many partitions in one call: KEYS are (stream, counter) pairs, ARGV each pair's record count
# then its records; returns each pair's first offset and the stream's length after it (for
# the log's cap, filodb.ingest.log_room). One call is atomic: on NOSCRIPT nothing was appended.
_APPEND_MANY = """
local out = {}
local j = 1
for i = 1, #KEYS / 2 do
  local n = tonumber(ARGV[j])
  local last = redis.call('INCRBY', KEYS[2 * i], n)
  local first = last - n + 1
  for k = 0, n - 1 do
    redis.call('XADD', KEYS[2 * i - 1], '0-' .. (first + k), 'd', ARGV[j + 1 + k])
  end
  j = j + 1 + n
  out[2 * i - 1] = first
  out[2 * i] = redis.call('XLEN', KEYS[2 * i - 1])
end
return out
"""


PURGE_BYTES = 1 << 20  # a spill that moved this much asks Redis to MEMORY PURGE...
PURGE_EVERY_S = 1.0  # ...at most this often
SPILL_KEY = "filodb:logspill"  # hash: a stream's key -> the offset its spill reaches
WAITING_KEY = "filodb:logwait"  # set while appends wait for room (log_room)
WAITING_TTL_MS = 3000  # outlives a node's tick (heartbeat_interval) and the writers' SIGNAL_S


def stream_key(dataset: str, shard: int) -> str:
    return f"filodb:log:{{{dataset}:{shard}}}"


def _counter_key(dataset: str, shard: int) -> str:
    return f"filodb:logseq:{{{dataset}:{shard}}}"


class RedisStreamsLog(Log):
    """Redis Streams partitions with dense integer offsets."""

    def __init__(self, url: str, socket_timeout: float = 30.0, max_mb: int = 0,
                 full_wait_s: float = 10.0, spill_path: str | Path | None = None
                 ) -> None:  # fmt: skip
        """``max_mb`` > 0: appends wait while the log holds more, and are refused after
        ``full_wait_s`` (:mod:`filodb.ingest.log_room`). ``spill_path``: the directory of
        :class:`~filodb.ingest.spill.LogSpill` (None: records stay in Redis until trimmed)."""
        self._r = redis.Redis.from_url(url, socket_timeout=socket_timeout)
        self._spill = LogSpill(spill_path) if spill_path is not None else None
        self.spills = self._spill is not None
        self._spilled: dict[Partition, int] = {}  # what this process spilled (or read) last
        self._purged = 0.0  # when a spill last asked Redis to give freed pages back
        self.room = LogRoom(max_mb << 20, full_wait_s, self._lengths, self._writers_wait)
        # a blocking XREAD must answer well before the socket gives up on it
        self._max_block_ms = max(1, int(socket_timeout * 1000 / 2))
        self._append_many = self._r.register_script(_APPEND_MANY)
        # XREAD's reply as Redis sends it: redis-py's parser makes a dict per entry
        # (pairs_to_dict), ~11 % of a worker's CPU when records are small and many
        self._r.set_response_callback("XREAD", _raw_reply)
        self._r.set_response_callback("XRANGE", _raw_reply)
        self._key_frames: dict[str, dict[int, bytes]] = {}
        self._group = _GroupCommit(self._run_jobs)
        # the appends' and the reads' own connections (see _Held)
        self._held_appends = _Held(self._r.connection_pool)
        self._held_reads = _Held(self._r.connection_pool)
        # a partition's stream key as a RESP frame, and the way back (grow with the partitions
        # read: a node's, a few bytes each)
        self._streams: dict[Partition, bytes] = {}
        self._parts: dict[bytes, Partition] = {}
        # the last blocking XREAD, packed, and the positions it was packed for: an idle node
        # reads the same positions pass after pass
        self._xread: tuple[dict[Partition, int], int, int, bytes] | None = None
        self._found = True  # the last read_many found records (then split first, see there)

    def append_many(
        self, dataset: str, records: Mapping[int, Sequence[bytes]]
    ) -> dict[int, list[int]]:
        """Append; see :class:`_GroupCommit`: concurrent callers share one script call."""
        return self.append_begin(dataset, records)()

    def append_begin(
        self, dataset: str, records: Mapping[int, Sequence[bytes]]
    ) -> Callable[[], dict[int, list[int]]]:
        """Queue the append in the group commit (its place in the log fixed); the function
        returned waits for it (making the call when none is in flight)."""
        shards = [s for s, recs in records.items() if recs]
        if not shards:
            return dict
        self.room.admit()  # waits while the log holds more than its cap
        job = _Append([(dataset, s) for s in shards], [records[s] for s in shards])
        self._group.queue(job)

        def wait() -> dict[int, list[int]]:
            self._group.finish(job)
            return {s: list(range(f, f + len(records[s])))
                    for s, f in zip(shards, job.firsts, strict=True)}  # fmt: skip

        return wait

    def send_appends(self) -> Sent | None:
        """Send the appends begun so far (every caller's) in one call without waiting for
        its reply; see :class:`SentAppends`. None when none waits or a call is in flight."""
        jobs = self._group.take()
        if jobs is None:
            return None
        try:
            plan = _Plan(jobs, self._key_frames)
            command = plan.command(self._append_many.sha)
            conn, held = self._held_appends.take()
            try:
                conn.send_packed_command([command])
            except BaseException:
                conn.disconnect()
                self._held_appends.give(conn, held)
                raise
        except BaseException as e:
            self._group.done(jobs, e)
            raise
        sent = SentAppends(conn, len(jobs), lambda: self._land_sent(plan, conn, held))
        self._group.sent(sent.finish)
        return sent

    def _land_sent(self, plan: _Plan, conn: Any, held: bool) -> None:
        """Read the reply of ``plan``'s call sent on ``conn`` and complete its appends; an
        error fails every one of them (raised by their waits)."""
        err: BaseException | None = None
        try:
            try:
                reply = list(_read_reply(conn))
            finally:
                self._held_appends.give(conn, held)
            try:
                self._landed(plan, reply)
            except Exception as e:  # noqa: BLE001 - a reply not of the script's shape
                err = e
        except NoScriptError:  # nothing appended: the whole call again, loaded first
            try:
                self._append_many.sha = self._r.script_load(_APPEND_MANY)
                self._landed(plan, self._call_plan(plan))
            except BaseException as e:  # noqa: BLE001 - raised by the appends' waits
                err = e
        except BaseException as e:  # noqa: BLE001 - raised by the appends' waits
            err = e
        self._group.done(plan.jobs, err)

    def _run_jobs(self, jobs: list[_Append]) -> None:
        """One script call for the appends of ``jobs``: a partition's records in the order of
        the jobs; each job's ``firsts`` its records' first offsets."""
        plan = _Plan(jobs, self._key_frames)
        self._landed(plan, self._call_plan(plan))

    def _call_plan(self, plan: _Plan) -> list[Any]:
        """The script's reply (each partition's first offset and stream length) to one
        EVALSHA of :data:`_APPEND_MANY` over ``plan``'s partitions; the script loaded again
        and the call sent again when Redis answers NOSCRIPT (restarted, or SCRIPT FLUSH: the
        call appended nothing)."""
        for _ in range(2):
            try:
                return list(self._raw_call(plan.command(self._append_many.sha),
                                           self._held_appends))  # fmt: skip
            except NoScriptError:
                self._append_many.sha = self._r.script_load(_APPEND_MANY)
        raise NoScriptError("append script missing after loading it")

    def _landed(self, plan: _Plan, reply: list[Any]) -> None:
        """Each job's first offsets from ``reply``; the log's room told what was appended."""
        parts = plan.parts
        firsts = dict(zip(parts, reply[0::2], strict=True))
        if self.room.max_bytes:
            self.room.appended(zip(parts, map(len, plan.merged.values()), plan.nbytes,
                                   map(int, reply[1::2]), strict=True))  # fmt: skip
        for job, here in zip(plan.jobs, plan.at, strict=True):
            job.firsts = [int(firsts[p]) + k for p, k in zip(job.parts, here, strict=True)]

    def _writers_wait(self) -> None:
        """Tell the nodes that appends wait for room (:meth:`writers_waiting`)."""
        self._r.set(WAITING_KEY, b"1", px=WAITING_TTL_MS)

    def writers_waiting(self) -> bool:
        """Whether an append of any process waited for room in the last ``WAITING_TTL_MS``."""
        return bool(self._r.exists(WAITING_KEY))

    def _lengths(self, parts: Sequence[Partition]) -> list[int]:
        """The current length (entries) of each partition's stream, in one round trip."""
        pipe = self._r.pipeline(transaction=False)
        for ds, s in parts:
            pipe.xlen(stream_key(ds, s))
        return [int(n) for n in pipe.execute()]

    def _raw_call(self, command: bytes, held: _Held | None = None) -> Any:
        """Send one packed command and read its reply, on ``held``'s connection (the appends'
        or the reads') when given and free, else on a pooled one."""
        if held is not None:
            return held.call(command)
        return _pooled_call(self._r.connection_pool, command)

    def read(
        self, dataset: str, positions: Mapping[int, int], count: int, block_ms: int
    ) -> dict[int, list[tuple[int, bytes]]]:
        if not positions:
            return {}
        out: dict[int, list[tuple[int, bytes]]] = {}
        if self._spill is not None:  # any process may have spilled (a recovery reads here)
            shards = list(positions)
            fields = [stream_key(dataset, s) for s in shards]
            for s, v in zip(shards, self._r.hmget(SPILL_KEY, fields), strict=True):
                if v is not None:
                    self._spilled[(dataset, s)] = int(v)
            out = self._from_spill({(dataset, s): p for s, p in positions.items()}, count,
                                   lambda part: part[1])  # fmt: skip
            positions = {s: p for s, p in positions.items() if s not in out}
            if out:
                block_ms = 0
            if not positions:
                return out
        streams: dict[KeyT, StreamIdT] = {
            stream_key(dataset, s): f"0-{int(p)}" for s, p in positions.items()
        }
        by_key = {stream_key(dataset, s): s for s in positions}
        reply = self._r.xread(streams, count=count, block=self._block(block_ms))
        for key, entries in _iter_reply(reply):
            shard = by_key[key.decode() if isinstance(key, bytes) else key]
            out[shard] = _entries(entries)
        return out

    def _block(self, block_ms: int) -> int | None:
        return min(int(block_ms), self._max_block_ms) if block_ms > 0 else None

    def read_many(
        self, positions: Mapping[Partition, int], count: int, block_ms: int
    ) -> dict[Partition, list[tuple[int, bytes]]]:
        """One XREAD over every partition's stream (Redis blocks on all of them at once).

        Past :data:`XREAD_KEYS` streams, after a read that found records, the non-blocking
        read is split into pipelined XREADs of that many streams (one round trip) and only
        when they find nothing does one blocking XREAD wait on every stream; after a read
        that found nothing the blocking XREAD comes at once (it answers at once when records
        are there). The blocking XREAD is packed here, and packed again only when the
        positions changed: a node idle over 1024 partitions sends the same bytes each pass
        (redis-py took ~4 ms of CPU to pack 2048 arguments)."""
        if not positions:
            return {}
        out: dict[Partition, list[tuple[int, bytes]]] = {}
        if len(positions) > XREAD_KEYS and (self._found or block_ms <= 0):
            items = [(self._stream(part)[0], f"0-{int(p)}") for part, p in positions.items()]
            pipe = self._r.pipeline(transaction=False)
            for i in range(0, len(items), XREAD_KEYS):
                pipe.xread(dict(items[i : i + XREAD_KEYS]), count=count)
            for reply in pipe.execute():
                self._collect(reply, out)
            if out or block_ms <= 0:
                self._found = bool(out)
                return self._fill_gaps(positions, count, out)
        self._collect(self._raw_xread(positions, count, self._block(block_ms) or 0), out)
        self._found = bool(out)
        return self._fill_gaps(positions, count, out)

    def _fill_gaps(self, positions: Mapping[Partition, int], count: int,
                   out: dict[Partition, list[tuple[int, bytes]]]
                   ) -> dict[Partition, list[tuple[int, bytes]]]:  # fmt: skip
        """A node follows its shards past what it spilled of them (spills take applied
        records, a recovery replays through :meth:`read`), so the stream has the next record;
        where it does not (a skip past a position below a spill this process knows), the
        records come from the spill. Costs one comparison a partition read."""
        if not self._spilled:
            return out
        spilled = self._spilled
        for part, recs in out.items():
            pos = positions[part]
            if recs[0][0] > pos + 1 and pos < spilled.get(part, 0):
                out[part] = self._from_spill({part: pos}, count, lambda p: p).get(part, recs)
        return out

    def _raw_xread(self, positions: Mapping[Partition, int], count: int, block: int) -> Any:
        """``XREAD COUNT count [BLOCK block] STREAMS ...`` over ``positions``, packed once for
        the same positions (a broken connection is tried again once: the read is idempotent)."""
        last = self._xread
        if last is not None and last[1] == count and last[2] == block and last[0] == positions:
            cmd = last[3]
        else:
            cmd = self._pack_xread(positions, count, block)
            self._xread = (dict(positions), count, block, cmd)
        try:
            return self._raw_call(cmd, self._held_reads)
        except redis.ConnectionError:
            return self._raw_call(cmd, self._held_reads)

    def _stream(self, part: Partition) -> tuple[bytes, bytes]:
        """A partition's stream key and its RESP frame (remembered, with the way back)."""
        key = stream_key(*part).encode()
        frame = self._streams.get(part)
        if frame is None:
            frame = self._streams[part] = b"$%d\r\n%s\r\n" % (len(key), key)
            self._parts[key] = part
        return key, frame

    def _pack_xread(self, positions: Mapping[Partition, int], count: int, block: int) -> bytes:
        streams = self._streams
        head = [b"XREAD", b"COUNT", b"%d" % count]
        if block > 0:
            head += [b"BLOCK", b"%d" % block]
        head.append(b"STREAMS")
        out = [b"*%d\r\n" % (len(head) + 2 * len(positions))]
        out += [b"$%d\r\n%s\r\n" % (len(a), a) for a in head]
        for part in positions:
            out.append(streams.get(part) or self._stream(part)[1])
        for p in positions.values():
            i = b"0-%d" % int(p)
            out.append(b"$%d\r\n%s\r\n" % (len(i), i))
        return b"".join(out)

    def _collect(self, reply: Any, out: dict[Partition, list[tuple[int, bytes]]]) -> None:
        for key, entries in _iter_reply(reply):
            out[self._parts[key if isinstance(key, bytes) else key.encode()]] = _entries(entries)

    def _from_spill(self, positions: Mapping[Partition, int], count: int,
                    key: Callable[[Partition], Any]) -> dict[Any, list[tuple[int, bytes]]]:  # fmt: skip
        """Records of the partitions whose position is below what was spilled of them, read
        from the spill (by ``key(partition)``); a partition whose spilled records are
        gone (dropped with a trim: the column store has them) is left to the stream."""
        out: dict[Any, list[tuple[int, bytes]]] = {}
        spilled = self._spilled
        assert self._spill is not None
        for part, pos in positions.items():
            upto = spilled.get(part, 0)
            if pos < upto:
                recs = self._spill.read(part, pos, upto, count)
                if recs:
                    out[key(part)] = recs
        return out

    @property
    def spilled(self) -> Mapping[Partition, int]:
        """The offset each partition's spill reaches, as this process last learnt it."""
        return self._spilled

    def spill(self, upto: Mapping[Partition, int]) -> int:
        """Move each partition's records up to ``upto[partition]`` (applied by its node) from
        Redis to the spill: read them (XRANGE), write them as fsynced segments,
        then note how far the spill reaches and trim the streams (one MULTI). A crash in
        between leaves the records in both, and the stream is read. Returns the bytes moved."""
        if self._spill is None:
            raise NotImplementedError("this log has no spill directory")
        parts = [p for p, u in upto.items() if u > 0]
        if not parts:
            return 0
        fields = [stream_key(*p) for p in parts]
        got = self._r.hmget(SPILL_KEY, fields)
        pipe = self._r.pipeline(transaction=False)
        spans = []
        for part, field, v in zip(parts, fields, got, strict=True):
            lo, hi = int(v) if v is not None else 0, int(upto[part])
            if hi > lo:
                pipe.xrange(field, f"0-{lo + 1}", f"0-{hi}")
                spans.append((part, field, hi))
        if not spans:
            return 0
        records = {}
        for (part, _, _), entries in zip(spans, pipe.execute(), strict=True):
            if entries:  # offsets are dense: the first id says them all
                records[part] = (int(entries[0][0][2:]), [fv[1] for _, fv in entries])
        moved = self._spill.write(records)
        pipe = self._r.pipeline(transaction=True)
        for _, field, hi in spans:
            pipe.hset(SPILL_KEY, field, hi)
            pipe.xtrim(field, minid=f"0-{hi + 1}", approximate=False)
        pipe.execute()
        for part, _, hi in spans:
            self._spilled[part] = hi
        now = time.monotonic()
        if moved >= PURGE_BYTES and now - self._purged >= PURGE_EVERY_S:
            self._purged = now  # jemalloc keeps freed pages of trimmed streams: give them back
            try:
                self._r.memory_purge()
            except ResponseError:  # not jemalloc: nothing to purge
                pass
        return moved

    def end_offset(self, dataset: str, shard: int) -> int:
        v = self._r.get(_counter_key(dataset, shard))
        return int(v) if v else 0

    def end_offsets(self, dataset: str, shards: Sequence[int]) -> dict[int, int]:
        vals = self._r.mget([_counter_key(dataset, s) for s in shards]) if shards else []
        return {s: int(v) if v else 0 for s, v in zip(shards, vals, strict=True)}

    def delete_dataset(self, dataset: str, num_shards: int) -> None:
        keys = [stream_key(dataset, s) for s in range(num_shards)]
        keys += [_counter_key(dataset, s) for s in range(num_shards)]
        self._r.delete(*keys)
        self._r.hdel(SPILL_KEY, *[stream_key(dataset, s) for s in range(num_shards)])
        for s in range(num_shards):
            self._spilled.pop((dataset, s), None)
        if self._spill is not None:
            self._spill.drop_dataset(dataset)

    def trim(self, dataset: str, shard: int, upto: int) -> None:
        """Trim the stream; the spill drops the records too (when it has any)."""
        if upto > 0:  # entries with an id below 0-(upto+1) go: every offset <= upto
            key = stream_key(dataset, shard)
            self._r.xtrim(key, minid=f"0-{int(upto) + 1}", approximate=False)
            if self._spill is not None and self._r.hexists(SPILL_KEY, key):
                self._spill.drop((dataset, shard), int(upto))

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
        self._held_appends.close()
        self._held_reads.close()
        self._r.close()


def _pooled_call(pool: redis.ConnectionPool, command: bytes) -> Any:
    """One packed command on a connection from ``pool`` (a broken one is dropped; an error
    reply is raised)."""
    conn = pool.get_connection()
    try:
        return _exchange(conn, command)
    finally:
        pool.release(conn)


def _exchange(conn: Any, command: bytes) -> Any:
    """Send ``command`` on ``conn`` and read its reply; an error reply is raised, any other
    failure drops the connection (the next call connects again) and is raised."""
    try:
        conn.send_packed_command([command])
    except BaseException:
        conn.disconnect()
        raise
    return _read_reply(conn)


def _read_reply(conn: Any) -> Any:
    """The reply ``conn`` has coming; see :func:`_exchange`."""
    try:
        return conn.read_response()
    except ResponseError:
        raise
    except BaseException:
        conn.disconnect()
        raise


class _Held:
    """A connection kept for one kind of call (the log's appends, its reads), outside the pool.

    Taking a connection from redis-py's pool and giving it back costs ~28 us of CPU a call
    (its lock, pid check, readiness poll and observability counters: 68 against 40 us a PING
    measured on this machine), paid by every body's append in the web and every read of a
    worker. The group commit makes one append call at a time, and a node has one reader, so
    a connection of their own serves them; a second caller meanwhile (the lock taken) uses
    the pool. As the pool does, a connection with something to read before a command is
    sent (Redis closed it: restarted, or timed it out) is reconnected first, a call that
    fails drops it (the next one connects again), and a forked child makes its own."""

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = os.getpid()

    def call(self, command: bytes) -> Any:
        conn, held = self.take()
        try:
            return _exchange(conn, command)  # connects again when disconnected
        finally:
            self.give(conn, held)

    def take(self) -> tuple[Any, bool]:
        """A connected connection for one call: the held one (True) when free, else one of
        the pool's (False); :meth:`give` it back after the call's reply."""
        if not self._lock.acquire(blocking=False):
            return self._pool.get_connection(), False
        try:
            conn = self._conn
            if conn is None or self._pid != os.getpid():
                conn = self._conn = self._pool.make_connection()
                self._pid = os.getpid()
            try:
                stale = conn.can_read()  # connects when not connected
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                stale = True  # closed by the server
            if stale:
                conn.disconnect()
                conn.connect()
        except BaseException:
            self._lock.release()
            raise
        return conn, True

    def give(self, conn: Any, held: bool) -> None:
        if held:
            self._lock.release()
        else:
            self._pool.release(conn)

    def close(self) -> None:
        """Disconnect without waiting for a call in flight (a blocking read ends with a
        connection error, as the pool's ``disconnect`` does to connections in use)."""
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            conn.disconnect()


class _Append:
    """One caller's append: its partitions and their records; ``firsts`` once written."""

    __slots__ = ("parts", "records", "firsts", "done", "error")

    def __init__(self, parts: list[Partition], records: list[Sequence[bytes]]) -> None:
        self.parts = parts
        self.records = records
        self.firsts: list[int] = []
        self.done = False
        self.error: BaseException | None = None


class _GroupCommit:
    """Appends of concurrent callers in one round trip (group commit).

    A caller whose append finds no call in flight makes the call itself, for its records and
    those of every caller queued meanwhile; a caller that finds one in flight queues its
    records and waits. When a call returns, its callers are done (each returns its own
    offsets) and a waiting caller, if any, makes the next call for the queue. So under one
    sender nothing changes, and under many (the web tier's request threads, the gateway's
    connections, at the same time) the log gets one script call per round trip instead of
    one per body, and a body's thread sleeps on a lock instead of on its own round trip.
    A caller returns only after the call holding its records returned (durable); when that
    call fails, every caller in it raises its error and none is acknowledged. A script runs
    whole, with no other command between its XADDs, but Redis does not roll back: an error
    inside it (out of memory) keeps the XADDs before it, which a retried write then repeats
    (the same samples again: the memstore keeps one of each timestamp).

    ``run`` is :meth:`queue` then :meth:`finish`; a caller that keeps its writes in order under
    a lock of its own queues under it and finishes after releasing it, so its next write is
    prepared while this one's call is in flight (a queued job goes in the next call whoever
    makes it)."""

    def __init__(self, run: Callable[[list[_Append]], None]) -> None:
        self._run = run
        self._cv = threading.Condition(threading.Lock())
        self._queue: list[_Append] = []
        self._busy = False
        # a call sent by take()'s caller, its reply unread: (that thread, what reads it)
        self._sent: tuple[int, Callable[[], None]] | None = None

    def run(self, job: _Append) -> None:
        self.queue(job)
        self.finish(job)

    def queue(self, job: _Append) -> None:
        """Queue ``job``: it goes in a call after every job queued before it."""
        with self._cv:
            self._queue.append(job)

    def finish(self, job: _Append) -> None:
        """Wait for a queued ``job``'s call, making it (for the whole queue) when none is in
        flight; raises the call's error."""
        me = threading.get_ident()
        while True:
            with self._cv:
                mine = None
                while self._busy and not job.done:
                    if self._sent is not None and self._sent[0] == me:
                        mine = self._sent[1]  # this thread's own call: none else reads it
                        break
                    self._cv.wait()
                if mine is None:
                    if job.done:  # in a call another caller made
                        if job.error is not None:
                            raise job.error
                        return
                    self._busy = True
                    jobs, self._queue = self._queue, []
                    break
            mine()  # its reply read here (its jobs done, the group free): then this job's turn
        err = None
        try:
            self._run(jobs)
        except BaseException as e:  # every caller of the call raises it
            err = e
        self.done(jobs, err)
        if err is not None:
            raise err

    def take(self) -> list[_Append] | None:
        """The queue, for a call its taker makes (and ends with :meth:`done`); None when
        empty or a call is in flight."""
        with self._cv:
            if self._busy or not self._queue:
                return None
            self._busy = True
            jobs, self._queue = self._queue, []
            return jobs

    def sent(self, finish: Callable[[], None]) -> None:
        """The taken jobs' call is sent and ``finish`` reads its reply (then :meth:`done`).
        The sending thread, should it wait for another job meanwhile (a write the loop makes
        at once), runs ``finish`` itself instead of waiting for itself."""
        with self._cv:
            self._sent = (threading.get_ident(), finish)

    def done(self, jobs: list[_Append], err: BaseException | None) -> None:
        """``jobs``' call returned (``err``: failed): their callers go on; the next call."""
        with self._cv:
            for j in jobs:
                j.done, j.error = True, err
            self._busy = False
            self._sent = None
            self._cv.notify_all()


class _Plan:
    """The appends of ``jobs`` as one call: a partition's records in the jobs' order (``at``:
    per job and partition, where its records start in ``merged``), packed as RESP but for
    the script's digest (the commands of a body spread over hundreds of shards cost
    redis-py ~10 us each to pack and parse)."""

    def __init__(self, jobs: list[_Append], key_frames: dict[str, dict[int, bytes]]) -> None:
        self.jobs = jobs
        merged: dict[Partition, list[bytes]] = {}
        self.at: list[list[int]] = []
        for job in jobs:
            here = []
            for part, recs in zip(job.parts, job.records, strict=True):
                got = merged.setdefault(part, [])
                here.append(len(got))
                got.extend(recs)
            self.at.append(here)
        self.merged = merged
        self.parts = parts = list(merged)
        out = []
        for ds, s in parts:
            frames = key_frames.get(ds) or key_frames.setdefault(ds, {})
            out.append(frames.get(s) or frames.setdefault(s, _key_frame(ds, s)))
        n_recs = 0
        self.nbytes: list[int] = []
        for p in parts:
            recs = merged[p]
            n_recs += len(recs)
            n = b"%d" % len(recs)
            out.append(b"$%d\r\n%s\r\n" % (len(n), n))
            size = 0
            for r in recs:
                size += len(r)
                out.append(b"$%d\r\n" % len(r))
                out.append(r)
                out.append(b"\r\n")
            self.nbytes.append(size)
        self._body = out
        self._nargs = 3 + 3 * len(parts) + n_recs
        self._nk = b"%d" % (2 * len(parts))

    def command(self, sha: str) -> bytes:
        """The EVALSHA of the script whose digest is ``sha``."""
        digest = sha.encode()
        head = b"*%d\r\n$7\r\nEVALSHA\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
            self._nargs, len(digest), digest, len(self._nk), self._nk)  # fmt: skip
        return b"".join([head, *self._body])


class SentAppends:
    """Appends sent in one call whose reply is still to read (:meth:`RedisStreamsLog.
    send_appends`): a caller with other work (the web server's ingestion loop) waits for
    :meth:`fileno` to be readable, then calls :meth:`finish`, which reads the reply and
    completes the appends (their waits then return at once, or raise its error). Until
    then the log's other appends queue for the next call, as behind any call in flight."""

    def __init__(self, conn: Any, jobs: int, land: Callable[[], None]) -> None:
        self._conn = conn
        self._land = land  # the log's: reads the reply, completes the appends
        self.jobs = jobs
        self.done = False  # finished (by its sender's thread: here, or in a wait of its own)

    def fileno(self) -> int:
        return int(self._conn._sock.fileno())  # noqa: SLF001 - redis-py keeps its socket there

    def finish(self) -> None:
        """Read the reply (blocking until it is whole) and complete the appends; an error
        fails every one of them (raised by their waits, not here). Once: later calls return;
        the sending thread only."""
        if self.done:
            return
        self.done = True
        self._land()


def _key_frame(dataset: str, shard: int) -> bytes:
    """RESP frames of a shard's stream and counter keys (cached per dataset by the log)."""
    a, b = stream_key(dataset, shard).encode(), _counter_key(dataset, shard).encode()
    return b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(a), a, len(b), b)


def _raw_reply(response: Any, **options: Any) -> Any:
    return response


def _entries(entries: Any) -> list[tuple[int, bytes]]:
    """A stream's entries ``[id, [b"d", record]]`` as (offset, record): every id is
    ``0-<offset>`` (see the module docstring) and every entry has the one field."""
    return [(int(eid[2:]), fields[1]) for eid, fields in entries]


def _iter_reply(reply: Any) -> Any:  # raw XREAD: RESP2 a list of pairs, RESP3 a dict
    if not reply:
        return []
    if isinstance(reply, dict):
        return list(reply.items())
    return reply
