"""Leaf requests over real Redis and direct connections: one request per node, fencing,
resends, expired requests, the Redis fallback."""

from __future__ import annotations

import socket
import threading
import time

import msgpack
import numpy as np
import orjson
import pytest
import redis

from filodb.errors import QueryTimeoutError, UnavailableError
from filodb.memstore.shard import TimeSeriesShard
from filodb.model.batch import SampleBatch
from filodb.model.labels import Matcher, make_labels
from filodb.shards.nodes import NODES_KEY
from filodb.shards.redis_map import ShardMapStore
from filodb.shards.secret import cluster_secret
from filodb.shards.state import ShardState, ShardStatus
from filodb.tasks import direct
from filodb.tasks.fanout import ClusterSource, ShardClient
from filodb.tasks.leaf import LeafCollector, LeafServer
from filodb.tasks.rpc import LeafRequest, request_key
from filodb.tasks.scheduler import cost_key
from filodb.tasks.wire import unpack
from filodb.testing.wait import wait_for

X = [Matcher("__name__", "=", "x")]


class FakeNode:
    """The runtime shape the leaf server needs: the memstores this node serves."""

    def __init__(self, shards: dict[int, TimeSeriesShard]) -> None:
        self.shards = shards

    def memstore(self, dataset: str, shard: int) -> TimeSeriesShard | None:
        return self.shards.get(shard) if dataset == "ds" else None


def _shard(shard: int) -> TimeSeriesShard:
    ms = TimeSeriesShard("ds", shard)
    lb = [make_labels({"__name__": "x", "shard": str(shard)})]
    ms.ingest(SampleBatch(lb, np.zeros(3, np.int64), np.array([1000, 2000, 3000]),
                          np.full(3, float(shard))))  # fmt: skip
    return ms


def _states(nodes: dict[int, str]) -> dict[int, ShardState]:
    return {s: ShardState("ds", s, ShardStatus.ACTIVE, n) for s, n in nodes.items()}


@pytest.fixture
def client(redis_url: str) -> ShardClient:
    return ShardClient(ShardMapStore(redis_url), redis_url, resend_after_s=0.2)


def test_one_request_per_node_and_unowned_shards_are_partial(
    redis_url: str, client: ShardClient
) -> None:
    shards = {0: _shard(0), 1: _shard(1), 2: _shard(2)}
    a = LeafServer(FakeNode({0: shards[0], 1: shards[1]}), redis_url, "a", 2).start()
    b = LeafServer(FakeNode({2: shards[2]}), redis_url, "b", 2).start()  # 3: not Active on b
    try:
        states = _states({0: "a", 1: "a", 2: "b", 3: "b"})
        sel = {"matchers": [["__name__", "=", "x"]], "start": 0, "end": 10_000}
        res = client.call("ds", [0, 1, 2, 3], "select", sel, 10.0, states)
        assert res.missing == {3: "shard ds/3 is not active on this node"}
        assert (a.served, b.served) == (1, 1)  # one request per node, whatever its shards
        # a cheap select (the node has not seen it cost more): one answer over the union
        assert [res.answers[s][0]["shards"] for s in sorted(res.answers)] == [[0, 1], [2]]
        # an expensive one, of several shards: one answer per shard, computed in parallel
        a.costs.observe(cost_key("ds", "select", sel), 1, 1.0)
        res = client.call("ds", [0, 1, 2, 3], "select", sel, 10.0, states)
        assert sorted(res.answers) == [0, 1, 2]
        assert [res.answers[s][0]["shards"] for s in (0, 1, 2)] == [[0], [1], [2]]
        h, (offsets, ts, vals) = res.answers[1]
        assert h["labels"] == [["__name__", "x", "shard", "1"]]
        assert offsets.tolist() == [0, 3] and vals.tolist() == [1.0] * 3
        # other ops: one answer per node, over the union of the shards it serves
        names = client.call("ds", [0, 1, 2], "label_names", {"matchers": [], "start": 0,
                            "end": 10_000}, 10.0, states)  # fmt: skip
        assert [names.answers[s][0]["shards"] for s in sorted(names.answers)] == [[0, 1], [2]]

        src = ClusterSource(client, "ds", 4, 0, 10.0)
        src._states = states
        assert sorted(lb for lb in src.series(X, 0, 10_000)) == [
            make_labels({"__name__": "x", "shard": str(s)}) for s in range(3)
        ]
        assert src.warnings == ["partial response: shard ds/3 is not active on this node"]
        strict = ClusterSource(client, "ds", 4, 0, 10.0, strict=True)
        strict._states = states
        with pytest.raises(UnavailableError, match="ds/3 is not active"):
            strict.select(X, 0, 10_000)
    finally:
        a.stop()
        b.stop()


def test_a_request_lost_with_its_worker_is_sent_again(redis_url: str, client: ShardClient) -> None:
    r = redis.Redis.from_url(redis_url)
    out: dict[str, object] = {}

    def call() -> None:
        out["res"] = client.call("ds", [0, 1], "label_names", {"matchers": [], "start": 0,
                                 "end": 10_000}, 10.0, _states({0: "c", 1: "c"}))  # fmt: skip

    t = threading.Thread(target=call)
    t.start()
    # a worker pops the request and dies before its receipt
    wait_for(lambda: r.llen(request_key("c")), 5, "the first request")
    assert 9 <= r.ttl(request_key("c")) <= 11  # the list of a dead node expires with its requests
    lost = r.lpop(request_key("c"))
    assert LeafRequest.unpack(lost).shards == (0, 1)
    server = LeafServer(FakeNode({0: _shard(0), 1: _shard(1)}), redis_url, "c", 1).start()
    try:
        t.join(10)
        res = out["res"]
        assert sorted(res.answers) == [0] and res.missing == {}  # type: ignore[attr-defined]
        assert res.answers[0][0]["values"] == ["__name__", "shard"]  # type: ignore[attr-defined]
        assert server.served == 1
    finally:
        server.stop()


def test_expired_and_malformed_requests_are_dropped(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    now = [1000.0]
    server = LeafServer(FakeNode({0: _shard(0)}), redis_url, "d", 1, clock=lambda: now[0])
    try:
        req = LeafRequest("filodb:reply:t", "ds", (0,), "label_names",
                          {"matchers": [], "start": 0, "end": 10_000}, deadline_unix=1000.0)  # fmt: skip
        server.handle(req.pack())
        server.handle(b"\x93not a request")
        assert server.dropped == 2 and r.llen("filodb:reply:t") == 0
        now[0] = 999.0
        server.start().handle(req.pack())
        wait_for(lambda: r.llen("filodb:reply:t"), 10, "the answer")
        assert server.served == 1 and r.llen("filodb:reply:t") == 1  # quick: the answer alone
        assert 0 < r.ttl("filodb:reply:t") <= 60
        assert unpack(r.lpop("filodb:reply:t"))[0]["values"] == ["__name__", "shard"]
    finally:
        server.stop()


class SlowNode(FakeNode):
    def __init__(self, shards: dict[int, TimeSeriesShard]) -> None:
        super().__init__(shards)
        self.gate = threading.Event()

    def memstore(self, dataset: str, shard: int) -> TimeSeriesShard | None:
        assert self.gate.wait(30)
        return super().memstore(dataset, shard)


def test_a_slow_request_gets_a_receipt_before_its_answers(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    node = SlowNode({0: _shard(0), 1: _shard(1)})
    server = LeafServer(node, redis_url, "e", 2).start()
    try:
        req = LeafRequest("filodb:reply:s", "ds", (0, 1), "label_names",
                          {"matchers": [], "start": 0, "end": 1}, time.time() + 30)  # fmt: skip
        r.rpush(request_key("e"), req.pack())
        got = wait_for(lambda: r.lpop("filodb:reply:s"), 10, "the receipt")
        assert unpack(got)[0] == {"received": True, "shards": [0, 1]}
        assert r.llen("filodb:reply:s") == 0
        node.gate.set()
        got = wait_for(lambda: r.lpop("filodb:reply:s"), 10, "the answer")
        assert unpack(got)[0]["shards"] == [0, 1]
        assert server.receipts == 1
    finally:
        node.gate.set()
        server.stop()


def test_a_request_that_expires_while_queued_is_dropped_when_its_turn_comes(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    now = [999.0]
    server = LeafServer(FakeNode({0: _shard(0), 1: _shard(1)}), redis_url, "f", 1,
                        clock=lambda: now[0])  # fmt: skip
    try:
        req = LeafRequest("filodb:reply:q", "ds", (0, 1), "select",
                          {"matchers": [["__name__", "=", "x"]], "start": 0, "end": 10_000},
                          deadline_unix=1000.0)  # fmt: skip
        server.handle(req.pack())  # queued (two pieces): no runner yet
        now[0] = 1000.0
        server.start()
        wait_for(lambda: server.dropped, 10, "the drop")
        assert server.served == 0 and r.llen("filodb:reply:q") == 0
    finally:
        server.stop()


class BrokenNode(FakeNode):
    def memstore(self, dataset: str, shard: int) -> TimeSeriesShard | None:
        if shard == 1:
            raise RuntimeError("disk on fire")
        return super().memstore(dataset, shard)


def test_a_piece_that_fails_unexpectedly_answers_an_error_and_the_others_answer(
    redis_url: str, client: ShardClient
) -> None:
    server = LeafServer(BrokenNode({0: _shard(0), 1: _shard(1)}), redis_url, "g", 2).start()
    try:
        sel = {"matchers": [["__name__", "=", "x"]], "start": 0, "end": 10_000}
        server.costs.observe(cost_key("ds", "select", sel), 1, 1.0)  # expensive: per shard
        res = client.call("ds", [0, 1], "select", sel, 10.0, _states({0: "g", 1: "g"}))
        assert sorted(res.answers) == [0]
        assert res.missing == {1: "RuntimeError: disk on fire"}
    finally:
        server.stop()


def test_a_cheap_request_of_a_known_shape_runs_on_the_popping_thread(
    redis_url: str, client: ShardClient
) -> None:
    """A request of a shape whose pieces ran cheap, finding the queue empty, is answered by the
    thread that popped it (no hand-off to a runner); a shape never run, however cheap its prior
    estimate, and a shape learned dear go through the queue."""
    runs: list[str] = []

    class Recording(FakeNode):
        def memstore(self, dataset: str, shard: int) -> TimeSeriesShard | None:
            runs.append(threading.current_thread().name)
            return super().memstore(dataset, shard)

    server = LeafServer(Recording({0: _shard(0), 1: _shard(1)}), redis_url, "h", 2).start()

    def call(matchers: list[list[str]]) -> list[str]:
        runs.clear()
        p = {"matchers": matchers, "start": 0, "end": 10_000}
        res = client.call("ds", [0, 1], "label_names", p, 10.0, _states({0: "h", 1: "h"}))
        assert sorted(res.answers) == [0] and res.answers[0][0]["shards"] == [0, 1]
        return runs[:]

    try:
        assert call([]) in (["leaf-0"] * 2, ["leaf-1"] * 2) and server.inlined == 0  # unknown
        cheap, dear = [["__name__", "=", "x"]], [["__name__", "=~", "x"]]
        for matchers, seconds in ((cheap, 1e-6), (dear, 1.0)):
            key = cost_key("ds", "label_names", {"matchers": matchers})
            server.costs.observe(key, 1, seconds)
        assert call(cheap) == ["leaf-pop"] * 2 and server.inlined == 1
        assert "leaf-pop" not in call(dear) and server.inlined == 1
        wait_for(lambda: server.lanes()["cheap"][:2] == (0, 0), 10, "every slot handed back")
    finally:
        server.stop()


def test_a_request_cut_per_shard_learns_each_shards_cost_and_its_whole_cost(
    redis_url: str, client: ShardClient
) -> None:
    """Pieces of one shard are estimated per shard (a metric's series may sit on some shards
    only), from CPU time; the request's shape learns the sum, which decides the next cut."""
    server = LeafServer(FakeNode({0: _shard(0), 1: _shard(1)}), redis_url, "i", 2).start()
    try:
        sel = {"matchers": [["__name__", "=", "x"]], "start": 0, "end": 10_000}
        key = cost_key("ds", "select", sel)
        server.costs.observe(key, 1, 1.0)  # thought dear: cut per shard
        res = client.call("ds", [0, 1], "select", sel, 10.0, _states({0: "i", 1: "i"}))
        assert sorted(res.answers) == [0, 1]  # one answer per piece
        wait_for(lambda: server.costs.known((*key, 1)) and server.costs.known((*key, 0)), 10,
                 "both shards' costs")  # fmt: skip
        assert server.costs.estimate(key, 1) < 1.0 * (1 - 0.3 * 0.9)  # learned: far cheaper
    finally:
        server.stop()


# --- direct connections (filodb.tasks.direct) ---------------------------------------------


def _advertise(redis_url: str, node: str, addr: str) -> None:
    r = redis.Redis.from_url(redis_url)
    r.hset(NODES_KEY, node, orjson.dumps({"name": node, "leaf_addr": addr}))


LN = {"matchers": [], "start": 0, "end": 10_000}


def test_a_node_that_advertises_an_address_is_asked_directly_the_others_through_redis(
    redis_url: str, client: ShardClient
) -> None:
    a = LeafServer(FakeNode({0: _shard(0), 1: _shard(1)}), redis_url, "da", 2,
                   listen="127.0.0.1:0").start()  # fmt: skip
    b = LeafServer(FakeNode({2: _shard(2)}), redis_url, "db", 2).start()  # no address
    r = redis.Redis.from_url(redis_url)
    try:
        _advertise(redis_url, "da", a.address)
        states = _states({0: "da", 1: "da", 2: "db"})
        for _ in range(3):  # one connection, kept
            res = client.call("ds", [0, 1, 2], "label_names", LN, 10.0, states)
            assert [res.answers[s][0]["shards"] for s in sorted(res.answers)] == [[0, 1], [2]]
            assert res.answers[0][0]["values"] == ["__name__", "shard"] and res.missing == {}
        assert (a.direct, a.served, b.direct, b.served) == (3, 3, 0, 3)
        assert r.llen(request_key("da")) == 0
        scraped = {s.name: s.value for m in LeafCollector(a).collect() for s in m.samples}
        assert scraped["filodb_worker_leaf_direct_requests_total"] == 3
        # a select's arrays come through the frames intact
        sel = {"matchers": [["__name__", "=", "x"]], "start": 0, "end": 10_000}
        h, (offsets, ts, vals) = client.call("ds", [1], "select", sel, 10.0, states).answers[1]
        assert h["labels"] == [["__name__", "x", "shard", "1"]]
        assert (offsets.tolist(), ts.tolist(), vals.tolist()) == ([0, 3], [1000, 2000, 3000],
                                                                   [1.0] * 3)  # fmt: skip
        assert a.direct == 4
    finally:
        a.stop()
        b.stop()


def test_a_loopback_address_of_a_node_on_another_machine_is_not_tried(
    redis_url: str, client: ShardClient
) -> None:
    server = LeafServer(FakeNode({0: _shard(0)}), redis_url, "far", 1,
                        listen="127.0.0.1:0").start()  # fmt: skip
    r = redis.Redis.from_url(redis_url)
    try:
        entry = {"name": "far", "host": "another-machine", "leaf_addr": server.address}
        r.hset(NODES_KEY, "far", orjson.dumps(entry))
        res = client.call("ds", [0], "label_names", LN, 10.0, _states({0: "far"}))
        assert res.answers[0][0]["values"] == ["__name__", "shard"]
        assert (server.direct, server.served) == (0, 1)  # through Redis
    finally:
        server.stop()


def test_an_address_reused_by_another_node_is_not_taken_for_it(
    redis_url: str, client: ShardClient
) -> None:
    other = LeafServer(FakeNode({}), redis_url, "other", 1, listen="127.0.0.1:0").start()
    mine = LeafServer(FakeNode({0: _shard(0)}), redis_url, "mine", 1).start()
    try:
        _advertise(redis_url, "mine", other.address)  # stale: the port is another node's now
        res = client.call("ds", [0], "label_names", LN, 10.0, _states({0: "mine"}))
        assert res.missing == {} and res.answers[0][0]["values"] == ["__name__", "shard"]
        assert (other.direct, mine.served) == (0, 1)
    finally:
        other.stop()
        mine.stop()


def test_the_direct_port_serves_only_callers_with_the_cluster_secret(redis_url: str) -> None:
    server = LeafServer(FakeNode({0: _shard(0)}), redis_url, "sec", 1, listen="127.0.0.1:0",
                        secret="configured").start()  # fmt: skip
    try:
        _advertise(redis_url, "sec", server.address)
        states = _states({0: "sec"})
        # the secret in Redis is not the configured one: refused, the request goes by Redis
        wrong = ShardClient(ShardMapStore(redis_url), redis_url, resend_after_s=60.0)
        res = wrong.call("ds", [0], "label_names", LN, 10.0, states)
        assert res.answers[0][0]["values"] == ["__name__", "shard"]
        assert (server.direct, server.served, server.refused()) == (0, 1, 1)
        right = ShardClient(ShardMapStore(redis_url), redis_url, secret="configured")
        for _ in range(2):
            res = right.call("ds", [0], "label_names", LN, 10.0, states)
            assert res.answers[0][0]["values"] == ["__name__", "shard"]
        assert (server.direct, server.served, server.refused()) == (2, 3, 1)
        scraped = {s.name: s.value for m in LeafCollector(server).collect() for s in m.samples}
        assert scraped["filodb_worker_leaf_direct_refused_total"] == 1
    finally:
        server.stop()


class DyingListener:
    """A node's listener that takes one request and dies before answering it."""

    def __init__(self, node: str, key: bytes) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.got: list[LeafRequest] = []

        def serve() -> None:
            conn, _ = self.sock.accept()
            assert direct.greet_caller(conn, node, key, 5.0)
            n = int.from_bytes(conn.recv(4), "little")
            self.got.append(LeafRequest.unpack(conn.recv(n, socket.MSG_WAITALL)))
            conn.close()

        threading.Thread(target=serve, daemon=True).start()


def test_a_request_lost_with_its_connection_is_sent_again_through_redis_at_once(
    redis_url: str, client: ShardClient
) -> None:
    dying = DyingListener("dz", cluster_secret(redis.Redis.from_url(redis_url)))
    _advertise(redis_url, "dz", dying.address)
    server = LeafServer(FakeNode({0: _shard(0), 1: _shard(1)}), redis_url, "dz", 1).start()
    client.resend_after_s = 60.0  # no timer resend: only the broken connection's
    try:
        t0 = time.monotonic()
        res = client.call("ds", [0, 1], "label_names", LN, 30.0, _states({0: "dz", 1: "dz"}))
        assert res.missing == {} and res.answers[0][0]["shards"] == [0, 1]
        assert time.monotonic() - t0 < 10
        assert [q.shards for q in dying.got] == [(0, 1)] and server.served == 1
    finally:
        server.stop()
        dying.sock.close()


def test_a_timed_out_request_leaves_nothing_behind_on_the_connection(
    redis_url: str, client: ShardClient
) -> None:
    node = SlowNode({0: _shard(0), 1: _shard(1)})
    server = LeafServer(node, redis_url, "ds1", 2, listen="127.0.0.1:0").start()
    try:
        _advertise(redis_url, "ds1", server.address)
        states = _states({0: "ds1", 1: "ds1"})
        with pytest.raises(QueryTimeoutError):  # its receipt came, its answer did not
            client.call("ds", [0, 1], "label_names", LN, 0.3, states)
        wait_for(lambda: server.receipts == 1, 10, "the receipt")
        node.gate.set()
        p = {"matchers": [], "start": 0, "end": 10_000, "name": "shard"}
        res = client.call("ds", [0, 1], "label_values", p, 10.0, states)
        assert res.answers[0][0]["values"] == ["0", "1"]  # its own answer, not the late one
        assert server.direct == 2
    finally:
        node.gate.set()
        server.stop()


def test_a_malformed_request_frame_is_dropped_and_the_connection_still_serves(
    redis_url: str,
) -> None:
    server = LeafServer(FakeNode({0: _shard(0)}), redis_url, "dm", 1,
                        listen="127.0.0.1:0").start()  # fmt: skip
    try:
        sock = socket.create_connection(direct.parse_addr(server.address), timeout=10)
        n = int.from_bytes(sock.recv(4), "little")
        hello = msgpack.unpackb(sock.recv(n, socket.MSG_WAITALL))
        assert hello["node"] == "dm"
        key = cluster_secret(redis.Redis.from_url(redis_url))
        mac = direct.proof(key, b"caller", "dm", hello["nonce"])
        sock.sendall(direct.frame(msgpack.packb({"auth": mac, "nonce": bytes(16)})))
        n = int.from_bytes(sock.recv(4), "little")
        ack = msgpack.unpackb(sock.recv(n, socket.MSG_WAITALL))
        assert ack == {"auth": direct.proof(key, b"node", "dm", bytes(16))}
        sock.sendall(direct.frame(b"\x93not a request"))
        req = LeafRequest("r1", "ds", (0,), "label_names", LN, time.time() + 30)
        sock.sendall(direct.frame(req.pack()))
        n = int.from_bytes(sock.recv(4), "little")
        rid, msg = direct.parse_reply(sock.recv(n, socket.MSG_WAITALL))
        assert rid == "r1" and unpack(msg)[0]["values"] == ["__name__", "shard"]
        assert (server.dropped, server.served) == (1, 1)
        sock.sendall((direct.MAX_REQUEST + 1).to_bytes(4, "little"))  # too big: closed
        assert sock.recv(1) == b""
    finally:
        server.stop()


def test_a_cheap_lane_request_runs_on_its_connections_thread(
    redis_url: str, client: ShardClient
) -> None:
    """On a direct connection a known shape below HEAVY_S runs on the receiving thread (it
    serves that one caller); through Redis only one below INLINE_S does (the popping thread
    serves everyone); a heavy one goes to a runner either way."""
    runs: list[str] = []

    class Recording(FakeNode):
        def memstore(self, dataset: str, shard: int) -> TimeSeriesShard | None:
            runs.append(threading.current_thread().name)
            return super().memstore(dataset, shard)

    mid, dear = [["__name__", "=", "x"]], [["__name__", "=~", "x"]]

    def server(node: str, listen: str) -> LeafServer:
        s = LeafServer(Recording({0: _shard(0)}), redis_url, node, 2, listen=listen).start()
        for matchers, seconds in ((mid, 0.001), (dear, 0.01)):
            s.costs.observe(cost_key("ds", "label_names", {"matchers": matchers}), 1, seconds)
        return s

    def call(node: str, matchers: list[list[str]]) -> list[str]:
        runs.clear()
        p = {"matchers": matchers, "start": 0, "end": 10_000}
        assert client.call("ds", [0], "label_names", p, 10.0, _states({0: node})).answers
        return runs[:]

    by_redis, by_conn = server("dr", ""), server("dc", "127.0.0.1:0")
    try:
        _advertise(redis_url, "dc", by_conn.address)
        assert call("dc", mid) == ["leaf-conn"] and (by_conn.direct, by_conn.inlined) == (1, 1)
        assert call("dc", dear)[0] in ("leaf-0", "leaf-1") and by_conn.inlined == 1
        assert call("dr", mid)[0] in ("leaf-0", "leaf-1") and by_redis.inlined == 0
    finally:
        by_redis.stop()
        by_conn.stop()


def test_an_answer_larger_than_a_read_comes_whole_down_the_connection(redis_url: str) -> None:
    # no resend while the big answer is made: under load the suite's 0.2 s sent it twice
    client = ShardClient(ShardMapStore(redis_url), redis_url, resend_after_s=60.0)
    ms = TimeSeriesShard("ds", 0)
    n = 20_000
    lb = [make_labels({"__name__": "x", "i": f"{i:06d}", "pad": "p" * 40}) for i in range(n)]
    ms.ingest(SampleBatch(lb, np.arange(n), np.full(n, 1000), np.arange(n, dtype=float)))
    server = LeafServer(FakeNode({0: ms}), redis_url, "big", 1, listen="127.0.0.1:0").start()
    try:
        _advertise(redis_url, "big", server.address)
        sel = {"matchers": [["__name__", "=", "x"]], "start": 0, "end": 10_000}
        for _ in range(2):  # and the connection reads the next answer right after it
            h, (offsets, ts, vals) = client.call("ds", [0], "select", sel, 30.0,
                                                 _states({0: "big"})).answers[0]  # fmt: skip
            assert len(h["labels"]) == n and offsets[-1] == n
            assert sorted(vals.tolist()) == list(range(n))
        assert server.direct == 2
    finally:
        server.stop()


def test_a_node_whose_port_is_taken_serves_through_redis(
    redis_url: str, client: ShardClient
) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    server = LeafServer(FakeNode({0: _shard(0)}), redis_url, "pt", 1,
                        listen=f"127.0.0.1:{port}").start()  # fmt: skip
    try:
        assert server.address == ""  # nothing to advertise
        res = client.call("ds", [0], "label_names", LN, 10.0, _states({0: "pt"}))
        assert res.answers[0][0]["values"] == ["__name__", "shard"] and server.served == 1
    finally:
        server.stop()
        taken.close()
