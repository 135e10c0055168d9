from __future__ import annotations

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
