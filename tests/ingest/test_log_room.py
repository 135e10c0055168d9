"""The embedded log's cap (``log_max_mb``): an append waits while the log holds more, goes on
once a flush trimmed it, and is refused (503 with ``Retry-After``) after waiting in vain,
having appended nothing; on a real Redis."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from filodb.errors import LogFullError
from filodb.ingest.redis_streams import WAITING_KEY, WAITING_TTL_MS, RedisStreamsLog, stream_key
from filodb.web.errors import error_parts

RECORD = b"x" * (64 << 10)  # 16 records a MB


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def test_an_append_over_the_cap_waits_then_is_refused_having_appended_nothing(
    redis_url: str, r: redis.Redis
) -> None:
    log = RedisStreamsLog(redis_url, max_mb=1, full_wait_s=0.3)
    try:
        for _ in range(16):  # 1 MB and a little: the append that crosses the cap is taken
            log.append_many("ds", {0: [RECORD], 1: [b"small"]})
        assert log.room.held_bytes > 1 << 20
        before = {s: r.xlen(stream_key("ds", s)) for s in (0, 1)}
        t0 = time.monotonic()
        with pytest.raises(LogFullError, match="log_max_mb") as e:
            log.append_many("ds", {1: [b"more"]})  # any partition: the cap is the log's
        assert time.monotonic() - t0 >= 0.3  # it waited for room first
        assert {s: r.xlen(stream_key("ds", s)) for s in (0, 1)} == before
        assert log.room.refused == 1
        kind, message, status, headers = error_parts(e.value)
        assert (kind, status, headers.get("Retry-After")) == ("unavailable", 503, "1")
        assert "retry" in message
    finally:
        log.close()


def test_a_waiting_append_goes_on_once_the_log_is_trimmed(redis_url: str, r: redis.Redis) -> None:
    log = RedisStreamsLog(redis_url, max_mb=1, full_wait_s=30)
    try:
        offsets = [log.append_many("ds", {0: [RECORD]})[0][0] for _ in range(17)]
        done: list[dict[int, list[int]]] = []
        waiting = threading.Thread(target=lambda: done.append(log.append_many("ds", {3: [b"a"]})))
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive() and not done  # held back while the log is over its cap
        node_view = RedisStreamsLog(redis_url)  # a node's log, in another process: told
        assert node_view.writers_waiting()
        assert 0 < r.pttl(WAITING_KEY) <= WAITING_TTL_MS  # it lapses once they stop waiting
        node_view.close()
        log.trim("ds", 0, offsets[-5])  # a flush checkpointed: what it covers leaves the log
        waiting.join(10)
        assert done == [{3: [1]}] and r.xlen(stream_key("ds", 3)) == 1
        assert log.room.held_bytes <= 1 << 20 and log.room.waits >= 1
    finally:
        log.close()


def test_no_cap_never_waits(redis_url: str, r: redis.Redis) -> None:
    log = RedisStreamsLog(redis_url)  # max_mb 0: as a log without a cap
    try:
        for _ in range(40):
            log.append_many("ds", {0: [RECORD]})
        assert r.xlen(stream_key("ds", 0)) == 40 and log.room.waits == 0
        assert not log.writers_waiting()  # nor tells the nodes to flush
    finally:
        log.close()
