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
from redis.exceptions import NoScriptError
from redis.typing import KeyT, StreamIdT

from filodb.ingest.base import Log, Partition

XREAD_KEYS = 1000  # streams per XREAD when a read over many partitions is split

_APPEND = """
local n = #ARGV
local last = redis.call('INCRBY', KEYS[2], n)
local first = last - n + 1
for i = 1, n do
  redis.call('XADD', KEYS[1], '0-' .. (first + i - 1), 'd', ARGV[i])
end
return first
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
        self._append = self._r.register_script(_APPEND)

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
        """One EVALSHA per shard in one pipelined round trip. redis-py's ``Script`` in a
        pipeline asks ``SCRIPT EXISTS`` first (a second round trip per append); here a shard
        whose call found no script (Redis restarted, or SCRIPT FLUSH) is loaded and sent again.
        Each call is atomic, so a call answered NOSCRIPT appended nothing."""
        todo, out = list(shards), dict.fromkeys(shards)
        for _ in range(2):
            pipe = self._r.pipeline(transaction=False)
            for s in todo:
                pipe.evalsha(self._append.sha, 2, stream_key(dataset, s), _counter_key(dataset, s),
                             *records[s])  # fmt: skip
            got = pipe.execute(raise_on_error=False)
            for s, r in zip(todo, got, strict=True):
                out[s] = r
            todo = [s for s, r in zip(todo, got, strict=True) if isinstance(r, NoScriptError)]
            if not todo:
                break
            self._append.sha = self._r.script_load(_APPEND)
        for r in out.values():
            if isinstance(r, Exception):
                raise r
        return [out[s] for s in shards]

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
            out[shard] = [(_offset(eid), fields[b"d"]) for eid, fields in entries]
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
            out[part] = [(_offset(eid), fields[b"d"]) for eid, fields in entries]

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


def _offset(entry_id: bytes | str) -> int:
    s = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(s.split("-", 1)[1])


def _iter_reply(reply: Any) -> Any:  # RESP2: a list of pairs, RESP3: a dict
    if not reply:
        return []
    if isinstance(reply, dict):
        return [(k, v[0] if v and isinstance(v[0], list) else v) for k, v in reply.items()]
    return reply
