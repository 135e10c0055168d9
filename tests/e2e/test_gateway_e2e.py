"""The TCP doors on ``filodb up``: Influx and Graphite lines sent over sockets are queried back
with PromQL through the HTTP API."""

from __future__ import annotations

import socket
import time

import pytest
import requests

from filodb.redisproc import free_port
from filodb.testing.cluster import UpProcess
from filodb.testing.wait import eventually

pytestmark = pytest.mark.e2e

INFLUX_PORT = free_port()
GRAPHITE_PORT = free_port()
UP_ENV = {"FILODB_INFLUX_PORT": str(INFLUX_PORT), "FILODB_GRAPHITE_PORT": str(GRAPHITE_PORT)}


def _eventually(fn, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    return eventually(fn, timeout, 0.2, retry_on=(AssertionError, OSError))


def _send(port: int, body: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(body)


def _vector(url: str, q: str, t: float) -> dict:
    r = requests.get(url + "/api/v1/query", params={"query": q, "time": t}, timeout=30)
    assert r.status_code == 200, r.text
    return {
        tuple(sorted(x["metric"].items())): float(x["value"][1]) for x in r.json()["data"]["result"]
    }


def test_influx_and_graphite_over_tcp_are_queryable(up: UpProcess) -> None:
    # filodb up holds the doors' sockets and starts the gateway at their first connection:
    # a tree written to over HTTP only does not carry it
    assert not up.pids("gateway"), "the gateway started before any connection"
    t = int(time.time()) - 60
    ns = t * 1_000_000_000
    _send(INFLUX_PORT, (f"gw_cpu,host=a value=1.5 {ns}\n"
                        f"gw_cpu,host=b value=oops {ns}\n"  # malformed: dropped alone
                        f"gw_req,host=a counter=10i {ns}\n"
                        f"gw_lat,path=/x sum=12.5,count=8i,0.5=2i,1=5i,+Inf=8i {ns}\n").encode())  # fmt: skip
    _send(GRAPHITE_PORT, (f"gw.disk.used;dc=eu;host=h1 42 {t}\n"
                          f"gw.plain 7 {t}\n").encode())  # fmt: skip
    # sent at once, before the gateway ran: the lines waited in the kernel, nothing lost
    _eventually(lambda: _assert(up.pids("gateway")))

    def check() -> None:
        assert _vector(up.url, "gw_cpu", t) == {(("__name__", "gw_cpu"), ("host", "a")): 1.5}
        assert _vector(up.url, "gw_req", t) == {(("__name__", "gw_req"), ("host", "a")): 10.0}
        assert _vector(up.url, 'gw_disk_used{dc="eu"}', t) == {
            (("__name__", "gw_disk_used"), ("dc", "eu"), ("host", "h1")): 42.0
        }
        assert _vector(up.url, "gw_plain", t) == {(("__name__", "gw_plain"),): 7.0}
        assert _vector(up.url, "gw_lat_count + gw_lat_sum", t) == {(("path", "/x"),): 20.5}
        q = _vector(up.url, "histogram_quantile(0.5, gw_lat_bucket)", t)
        # rank 4 of 8 falls in (0.5, 1] holding counts 2..5: 0.5 + 0.5 * (4 - 2) / (5 - 2)
        assert (
            list(q) == [(("path", "/x"),)] and abs(q[(("path", "/x"),)] - 0.5 - 0.5 * 2 / 3) < 1e-9
        )

    _eventually(check)


def _assert(x: object) -> None:
    assert x
