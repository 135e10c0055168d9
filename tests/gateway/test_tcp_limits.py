"""The TCP doors under a dataset's limits, against a real Redis and real sockets: samples of
new series past a series limit are dropped and counted (there is no reply channel), known
series keep flowing; past the ingest rate a batch waits for the bucket up to ``retry_s``, then
is dropped and counted; the refusals are also counted cluster-wide."""

from __future__ import annotations

import socket

import redis

from filodb.config import Config
from filodb.gateway.door import Epochs
from filodb.gateway.limits import IngestLimiter
from filodb.gateway.router import IngestRouter
from filodb.gateway.tcp import GatewayOptions, TcpGateway
from filodb.ingest.redis_streams import RedisStreamsLog
from filodb.model.batch import SampleBatch
from filodb.redisproc import free_port
from filodb.shards.limits import LimitsStore
from filodb.shards.redis_map import ShardMapStore
from filodb.testing.wait import eventually

DS = "prometheus"


def _gateway(url: str, epochs: Epochs | None = None, **limits: float) -> TcpGateway:
    ShardMapStore(url).create_dataset(DS, 4, 1, limits=limits)
    router = IngestRouter(ShardMapStore(url), RedisStreamsLog(url))
    limiter = IngestLimiter(LimitsStore(url), Config(redis_url=url))
    return TcpGateway(router, DS, "127.0.0.1", {"graphite": free_port()},
                      GatewayOptions(retry_s=0.5), limiter=limiter, epochs=epochs).start()  # fmt: skip


def _send(g: TcpGateway, body: bytes) -> None:
    with socket.create_connection(("127.0.0.1", g.ports["graphite"])) as s:
        s.sendall(body)


def _logged_names(url: str) -> list[str]:
    got = RedisStreamsLog(url).read(DS, dict.fromkeys(range(4), 0), 10_000, 0)
    names = []
    for recs in got.values():
        for _, raw in recs:
            b = SampleBatch.from_bytes(raw)
            names += [dict(b.series[i])["__name__"] for i in b.sidx.tolist()]
    return sorted(names)


def _stats(g: TcpGateway, accepted: int) -> dict:
    st = g.stats.snapshot()["graphite"]
    assert st["lines_accepted"] + sum(st["lines_rejected"].values()) >= accepted, st
    return st


def test_series_limit_drops_new_series_and_keeps_known_ones(redis_url: str) -> None:
    g = _gateway(redis_url, max_series=3)
    try:
        _send(g, b"a 1 1\nb 1 1\nc 1 1\nd 1 1\ne 1 1\n")
        st = eventually(lambda: _stats(g, 5), 15, 0.05)
        assert st["lines_rejected"] == {"max_series": 2} and st["samples_written"] == 3
        _send(g, b"a 2 2\nf 2 2\n")
        st = eventually(lambda: _stats(g, 7), 15, 0.05)
        assert st["lines_rejected"] == {"max_series": 3} and st["samples_written"] == 4
    finally:
        g.stop()
    assert _logged_names(redis_url) == ["a", "a", "b", "c"]
    assert LimitsStore(redis_url).refused(DS) == {"max_series": 3}


def test_ingest_rate_waits_then_drops(redis_url: str) -> None:
    g = _gateway(redis_url, ingest_samples_per_s=0.1)  # 3 samples overdraw it by 2.9: 30 s
    try:
        _send(g, b"a 1 1\nb 1 1\nc 1 1\n")  # admitted on a full bucket, which it overdraws
        eventually(lambda: _stats(g, 3), 15, 0.05)
        _send(g, b"a 2 2\n")  # the bucket needs 30 s: more than retry_s, dropped at once
        st = eventually(lambda: _stats(g, 4), 15, 0.05)
        assert st["lines_rejected"] == {"ingest_samples_per_s": 1} and st["samples_written"] == 3
    finally:
        g.stop()
    assert LimitsStore(redis_url).refused(DS) == {"ingest_samples_per_s": 1}


def test_out_of_order_lines_are_dropped_and_counted_cluster_wide(redis_url: str) -> None:
    """Lines older than their series' newest the gateway routed are dropped, counted here and
    in the dataset's refusals (``filodb status``), as the HTTP doors count theirs."""
    g = _gateway(redis_url, Epochs(redis.Redis.from_url(redis_url)))
    try:
        _send(g, b"a 1 100\nb 1 100\n")
        eventually(lambda: _stats(g, 2), 15, 0.05)
        _send(g, b"a 2 50\nb 2 200\n")  # a's sample is older than its newest: dropped
        st = eventually(lambda: _stats(g, 4), 15, 0.05)
        assert st["lines_rejected"] == {"out_of_order": 1} and st["samples_written"] == 3
    finally:
        g.stop()
    assert _logged_names(redis_url) == ["a", "b", "b"]
    assert LimitsStore(redis_url).refused(DS) == {"out_of_order": 1}
