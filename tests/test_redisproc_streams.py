"""Trimmed log streams give their memory back (``redisproc.STREAM_NODE_MAX_BYTES``)."""

from __future__ import annotations

import os

import redis

from filodb.redisproc import start_redis
from filodb.testing.wait import eventually


def test_trimming_one_shard_leaves_no_holes_beside_another(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two shards' records arrive interleaved; one shard is flushed and trimmed, the other
    keeps its log. With Redis's default 4 kB stream nodes every record was a node in a shared
    jemalloc slab and the trim left each slab half empty (12 of 25 MB active held nothing)."""
    rp = start_redis(tmp_path / "redis", appendonly=False)
    r = redis.Redis.from_url(rp.url)
    try:
        record = os.urandom(3000)
        for i in range(1, 4001):  # 24 MB of log records, the two streams taking turns
            p = r.pipeline(transaction=False)
            p.xadd("filodb:log:{ds:0}", {"d": record}, id=f"0-{i}")
            p.xadd("filodb:log:{ds:1}", {"d": record}, id=f"0-{i}")
            p.execute()
        r.xtrim("filodb:log:{ds:0}", minid="0-4001")

        def no_holes() -> None:  # INFO's allocator figures are refreshed by Redis's cron
            m = r.info("memory")
            assert m["allocator_allocated"] < 1.2 * m["used_memory"], m
            assert m["allocator_frag_bytes"] < m["allocator_allocated"] // 4, m

        eventually(no_holes, 10)
        assert r.xlen("filodb:log:{ds:1}") == 4000
    finally:
        r.close()
        rp.stop()


def test_freed_pages_go_back_within_a_second(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """redis-server's jemalloc runs with ``redisproc.REDIS_MALLOC_CONF`` (its default keeps
    freed pages 10 s), unless the caller's environment sets ``MALLOC_CONF`` itself."""
    monkeypatch.delenv("MALLOC_CONF", raising=False)
    rp = start_redis(tmp_path / "redis", appendonly=False)
    r = redis.Redis.from_url(rp.url)
    try:
        stats = r.execute_command("MEMORY", "MALLOC-STATS").decode()
        assert "opt.dirty_decay_ms: 1000 " in stats, stats[:2000]
    finally:
        r.close()
        rp.stop()
