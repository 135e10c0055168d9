from __future__ import annotations

import time

import pytest
import redis

from filodb.ingest.redis_streams import RedisStreamsLog, stream_key
from filodb.testing.log_suite import LogSuite


class TestRedisStreamsLog(LogSuite):
    @pytest.fixture
    def log(self, redis_url: str) -> RedisStreamsLog:
        lg = RedisStreamsLog(redis_url)
        self._r = redis.Redis.from_url(redis_url)
        yield lg
        lg.close()

    def raw_records(self, log, dataset, shard):  # type: ignore[no-untyped-def]
        entries = self._r.xrange(stream_key(dataset, shard))
        return [(int(eid.split(b"-")[1]), f[b"d"]) for eid, f in entries]

    def test_survives_redis_reconnect(self, log: RedisStreamsLog) -> None:
        log.append("ds", 0, [b"a"])
        self._r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert log.append("ds", 0, [b"b"]) == [2]
        # the one-call append over many shards (its own RESP on a pooled connection) too
        log.append_many("ds", {1: [b"c"], 2: [b"d"]})
        self._r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert log.append_many("ds", {1: [b"e"], 2: [b"f"]}) == {1: [2], 2: [2]}

    def test_append_after_script_flush_in_one_round_trip(self, log: RedisStreamsLog) -> None:
        """An append over many shards is one EVALSHA (no SCRIPT EXISTS first); a server that
        lost its scripts (restart, SCRIPT FLUSH) gets the script again and every record
        once."""
        log.append_many("ds", {0: [b"a"], 1: [b"b"]})
        self._r.script_flush()
        assert log.append_many("ds", {0: [b"c"], 1: [b"d", b"e"]}) == {0: [2], 1: [2, 3]}
        assert [r for _, r in self.raw_records(log, "ds", 1)] == [b"b", b"d", b"e"]
        before = self._r.info("commandstats").get("cmdstat_script|exists", {}).get("calls", 0)
        calls = self._r.info("commandstats")["cmdstat_evalsha"]["calls"]
        log.append_many("ds", {0: [b"f"], 1: [b"g"], 2: [b"h"]})
        stats = self._r.info("commandstats")
        assert stats["cmdstat_evalsha"]["calls"] == calls + 1
        assert stats.get("cmdstat_script|exists", {}).get("calls", 0) == before

    def test_one_call_appends_to_hundreds_of_shards(self, log: RedisStreamsLog) -> None:
        """Any bytes (empty, CRLF, large) to hundreds of shards in one call: each shard's
        records in order at dense offsets, read back as written."""
        recs = {s: [b"\r\n$3\r\n" * s, bytes(range(256)) * (s % 3), b"x" * 70_000][: 1 + s % 3]
                for s in range(300)}  # fmt: skip
        log.append("ds", 7, [b"first"])
        got = log.append_many("ds", recs)
        assert got == {s: list(range(1 + (s == 7), 2 + (s == 7) + s % 3)) for s in range(300)}
        read = log.read_many({("ds", s): 0 for s in range(300)}, 10, 0)
        assert read == {("ds", s): [*([(1, b"first")] if s == 7 else []),
                                    *zip(got[s], recs[s], strict=True)] for s in range(300)}  # fmt: skip

    def test_read_many_splits_huge_key_lists(self, log: RedisStreamsLog) -> None:
        """Past XREAD_KEYS streams the read is split; every partition still answers, once."""
        from filodb.ingest import redis_streams

        n = redis_streams.XREAD_KEYS * 2 + 7
        log.append_many("big", {s: [f"r{s}".encode()] for s in range(0, n, 3)})
        positions = {("big", s): 0 for s in range(n)}
        got = log.read_many(positions, 10, 0)
        assert got == {("big", s): [(1, f"r{s}".encode())] for s in range(0, n, 3)}
        assert log.read_many({k: 1 if k[1] % 3 == 0 else 0 for k in positions}, 10, 200) == {}
        log.append("big", n - 1, [b"last"])  # in the last chunk of the split read
        got = log.read_many({k: 1 if k[1] % 3 == 0 else 0 for k in positions}, 10, 2000)
        assert got == {("big", n - 1): [(1, b"last")]}

    def test_blocking_read_stays_under_the_socket_timeout(self, redis_url: str) -> None:
        lg = RedisStreamsLog(redis_url, socket_timeout=0.5)
        try:
            t0 = time.monotonic()  # a block of 5 s would outlive the 0.5 s socket timeout
            assert lg.read_many({("ds", 0): 0, ("ds2", 1): 0}, 10, 5000) == {}
            assert lg.read("ds", {0: 0}, 10, 5000) == {}
            assert time.monotonic() - t0 < 2
        finally:
            lg.close()
