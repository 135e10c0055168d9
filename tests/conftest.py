"""Shared fixtures: a real redis-server (Debian's package) per test session."""

from __future__ import annotations

import shutil

import pytest
import redis

from filodb.redisproc import RedisProcess, start_redis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> RedisProcess:
    """A real Redis on a free loopback port; fails (never skips) when redis-server is missing."""
    assert shutil.which("redis-server"), "redis-server is required: apt-get install redis-server"
    rp = start_redis(tmp_path_factory.mktemp("redis"))
    yield rp
    rp.stop()


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> str:
    """The session Redis, flushed before each test."""
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    r.close()
    return redis_server.url
