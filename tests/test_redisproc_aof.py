"""Redis's append-only file gives back what the log trimmed (``RedisProcess.compact_aof``)."""

from __future__ import annotations

import os

import redis

from filodb.redisproc import AOF_MIN_BYTES, aof_wasteful, start_redis
from filodb.testing.wait import eventually


def test_aof_wasteful_rule() -> None:
    assert aof_wasteful(AOF_MIN_BYTES + 1, 0, False)
    assert not aof_wasteful(AOF_MIN_BYTES + 1, 0, True)  # a rewrite already runs
    assert not aof_wasteful(AOF_MIN_BYTES, 0, False)  # small files stay as they are
    assert not aof_wasteful(3 * AOF_MIN_BYTES, 2 * AOF_MIN_BYTES, False)  # mostly live data
    assert aof_wasteful(5 * AOF_MIN_BYTES, 2 * AOF_MIN_BYTES, False)


def _aof_bytes(rp) -> int:  # type: ignore[no-untyped-def]
    d = rp.data_dir / "appendonlydir"
    return sum(f.stat().st_size for f in d.iterdir())


def test_trimmed_stream_leaves_the_append_only_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rp = start_redis(tmp_path / "redis")
    try:
        r = redis.Redis.from_url(rp.url)
        r.config_set("auto-aof-rewrite-percentage", 0)  # only compact_aof rewrites here
        record = os.urandom(64 << 10)
        for i in range(1, 321):  # 20 MB of log records
            r.xadd("filodb:log:{ds:0}", {"d": record}, id=f"0-{i}")
        assert not rp.compact_aof(now=0.0)  # all of it live: nothing to give back
        eventually(lambda: _aof_bytes(rp) > 20 << 20, 10)  # appendfsync everysec
        r.xtrim("filodb:log:{ds:0}", minid="0-320")  # flushed: the log is trimmed
        assert not rp.compact_aof(now=1.0)  # checked at most every AOF_CHECK_EVERY_S
        assert rp.compact_aof(now=100.0)

        def rewritten() -> None:
            assert not r.info("persistence")["aof_rewrite_in_progress"]
            assert _aof_bytes(rp) < 1 << 20, _aof_bytes(rp)

        eventually(rewritten, 30)
        assert r.xlen("filodb:log:{ds:0}") == 1  # what was not trimmed stays
        r.close()
    finally:
        rp.stop()
