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

from collections.abc import Mapping, Sequence
from typing import Any

import redis
from redis.exceptions import NoScriptError, ResponseError
from redis.typing import KeyT, StreamIdT

from filodb.ingest.base import Log, Partition

XREAD_KEYS = 1000  # streams per XREAD when a read over many partitions is split

# Many partitions in one call: KEYS are (stream, counter) pairs, ARGV each pair's record count
# then its records; returns each pair's first offset. One call is atomic: on NOSCRIPT nothing
# was appended.
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
  out[i] = first
end
return out
"""


def stream_key(dataset: str, shard: int) -> str:
    return f"filodb:log:{{{dataset}:{shard}}}"


def _counter_key(dataset: str, shard: int) -> str:
    return f"filodb:logseq:{{{dataset}:{shard}}}"


class RedisStreamsLog(Log):
    """Redis Streams partitions with dense integer offsets."""

    def __init__(self, url: str, socket_timeout: float = 30.0) -> None:
        self._r = redis.Redis.from_url(url, socket_timeout=socket_timeout)
        # a blocking XREAD must answer well before the socket gives up on it
        self._max_block_ms = max(1, int(socket_timeout * 1000 / 2))
        self._append_many = self._r.register_script(_APPEND_MANY)
        # XREAD's reply as Redis sends it: redis-py's parser makes a dict per entry
        # (pairs_to_dict), ~11 % of a worker's CPU when records are small and many
        self._r.set_response_callback("XREAD", _raw_reply)
        self._key_frames: dict[str, dict[int, bytes]] = {}

    def append_many(
        self, dataset: str, records: Mapping[int, Sequence[bytes]]
    ) -> dict[int, list[int]]:
        shards = [s for s, recs in records.items() if recs]
        if not shards:
            return {}
        firsts = self._run_appends(dataset, shards, records)
        return {
            s: list(range(int(f), int(f) + len(records[s])))
            for s, f in zip(shards, firsts, strict=True)
        }

    def _run_appends(self, dataset: str, shards: list[int],
                     records: Mapping[int, Sequence[bytes]]) -> list[Any]:  # fmt: skip
        """The first offset given to each shard's records: one EVALSHA of
        :data:`_APPEND_MANY` over every shard, its RESP written here (the commands of a
        body spread over hundreds of shards cost redis-py ~10 us each to pack and parse); the
        script loaded again and the call sent again when Redis answers NOSCRIPT (restarted,
        or SCRIPT FLUSH: the call appended nothing)."""
        frames = self._key_frames.setdefault(dataset, {})
        parts = [b""]
        for s in shards:
            parts.append(frames.get(s) or frames.setdefault(s, _key_frame(dataset, s)))
        for s in shards:
            recs = records[s]
            n = b"%d" % len(recs)
            parts.append(b"$%d\r\n%s\r\n" % (len(n), n))
            for r in recs:
                parts.append(b"$%d\r\n" % len(r))
                parts.append(r)
                parts.append(b"\r\n")
        nargs = 3 + 2 * len(shards) + len(shards) + sum(len(records[s]) for s in shards)
        nk = b"%d" % (2 * len(shards))
        for _ in range(2):
            sha = self._append_many.sha.encode()
            parts[0] = b"*%d\r\n$7\r\nEVALSHA\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                nargs,
                len(sha),
                sha,
                len(nk),
                nk,
            )
            try:
                return list(self._raw_call(b"".join(parts)))
            except NoScriptError:
                self._append_many.sha = self._r.script_load(_APPEND_MANY)
        raise NoScriptError("append script missing after loading it")

    def _raw_call(self, command: bytes) -> Any:
        """Send one packed command and read its reply on a pooled connection (a broken
        connection is dropped; an error reply is raised)."""
        pool = self._r.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command([command])  # type: ignore[no-untyped-call]
            return conn.read_response()
        except ResponseError:
            raise
        except BaseException:
            conn.disconnect()  # type: ignore[no-untyped-call]
            raise
        finally:
            pool.release(conn)

    def read(
        self, dataset: str, positions: Mapping[int, int], count: int, block_ms: int
    ) -> dict[int, list[tuple[int, bytes]]]:
        if not positions:
            return {}
        streams: dict[KeyT, StreamIdT] = {
            stream_key(dataset, s): f"0-{int(p)}" for s, p in positions.items()
        }
        by_key = {stream_key(dataset, s): s for s in positions}
        reply = self._r.xread(streams, count=count, block=self._block(block_ms))
        out: dict[int, list[tuple[int, bytes]]] = {}
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

        Past :data:`XREAD_KEYS` streams the non-blocking read is split into pipelined XREADs of
        that many streams (one round trip); only when they find nothing does one blocking XREAD
        wait on every stream."""
        if not positions:
            return {}
        streams: dict[KeyT, StreamIdT] = {
            stream_key(ds, s): f"0-{int(p)}" for (ds, s), p in positions.items()
        }
        by_key = {stream_key(ds, s): (ds, s) for ds, s in positions}
        out: dict[Partition, list[tuple[int, bytes]]] = {}
        if len(streams) > XREAD_KEYS:
            items = list(streams.items())
            pipe = self._r.pipeline(transaction=False)
            for i in range(0, len(items), XREAD_KEYS):
                pipe.xread(dict(items[i : i + XREAD_KEYS]), count=count)
            for reply in pipe.execute():
                self._collect(reply, by_key, out)
            if out or block_ms <= 0:
                return out
        reply = self._r.xread(streams, count=count, block=self._block(block_ms))
        self._collect(reply, by_key, out)
        return out

    @staticmethod
    def _collect(reply: Any, by_key: Mapping[str, Partition],
                 out: dict[Partition, list[tuple[int, bytes]]]) -> None:  # fmt: skip
        for key, entries in _iter_reply(reply):
            part = by_key[key.decode() if isinstance(key, bytes) else key]
            out[part] = _entries(entries)

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

    def trim(self, dataset: str, shard: int, upto: int) -> None:
        if upto > 0:  # entries with an id below 0-(upto+1) go: every offset <= upto
            self._r.xtrim(stream_key(dataset, shard), minid=f"0-{int(upto) + 1}", approximate=False)

    def close(self) -> None:
        self._r.close()


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
