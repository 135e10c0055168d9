"""Shared fixtures: a real redis-server (Debian's package) per test session."""

from __future__ import annotations

import shutil

import pytest
import redis
from hypothesis import settings

from filodb.redisproc import RedisProcess, start_redis

# No per-example deadline anywhere: on a shared 2-core machine a numba kernel's first call
# compiles (or loads its cache) inside the first example, which says nothing about the code.
settings.register_profile("filodb", deadline=None)
settings.load_profile("filodb")


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


@pytest.fixture(scope="session")
def dev_services(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Real Kafka and Cassandra servers for this session, started on first use, stopped at the
    end. Their state lives in a directory of this session's own, so another session (or a
    ``scripts/services up`` of the user) is neither reused nor stopped."""
    import os

    from filodb.devservices import base as services

    old = os.environ.get("FILODB_SERVICES_DIR")
    os.environ["FILODB_SERVICES_DIR"] = str(tmp_path_factory.mktemp("services"))
    started: list[str] = []

    def ensure(name: str) -> dict[str, str]:
        assert shutil.which("java"), (
            "Java 17 is required for Kafka/Cassandra: apt-get install openjdk-17-jre-headless"
        )
        assert shutil.which("mvn"), "Maven fetches the Kafka/Cassandra jars: apt-get install maven"
        try:
            env = services.ensure(name)
        except Exception as e:  # noqa: BLE001 - ServiceError, MavenError
            pytest.fail(f"{name} dev service could not start: {e}")
        if name not in started:
            started.append(name)
        return env

    yield ensure
    for name in started:
        services.stop(name)
    if old is None:
        os.environ.pop("FILODB_SERVICES_DIR", None)
    else:
        os.environ["FILODB_SERVICES_DIR"] = old


@pytest.fixture(scope="session")
def kafka_env(dev_services) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return dev_services("kafka")


@pytest.fixture(scope="session")
def cassandra_env(dev_services) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return dev_services("cassandra")
