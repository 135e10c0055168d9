"""The TCP doors against a real Redis: what is sent over sockets is exactly what the log holds,
bad and huge lines spare the good ones, many connections at once, log outages, the CLI."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from filodb.gateway.influx import parse_lines
from filodb.gateway.router import IngestRouter
from filodb.gateway.tcp import DOORS, GatewayOptions, TcpGateway, _count_lines
from filodb.ingest.redis_streams import RedisStreamsLog
from filodb.model.batch import SampleBatch
from filodb.redisproc import free_port, start_redis
from filodb.shards.redis_map import ShardMapStore
from filodb.testing.wait import eventually

DS = "prometheus"
SHARDS = 4
NS = 1_000_000_000


def _gateway(url: str, options: GatewayOptions | None = None, **ports: int) -> TcpGateway:
    router = IngestRouter(ShardMapStore(url), RedisStreamsLog(url))
    ports = ports or {"influx": free_port(), "graphite": free_port()}
    return TcpGateway(router, DS, "127.0.0.1", ports, options).start()


@pytest.fixture
def gw(redis_url: str):  # type: ignore[no-untyped-def]
    ShardMapStore(redis_url).create_dataset(DS, SHARDS, 1)
    g = _gateway(redis_url)
    yield g
    g.stop()


def _samples(url: str) -> Counter:
    """Every sample in the log as a multiset of (labels, ts ms, value)."""
    log = RedisStreamsLog(url)
    got = log.read(DS, {s: 0 for s in range(SHARDS)}, 1_000_000, 0)
    out: Counter = Counter()
    for recs in got.values():
        for _, raw in recs:
            b = SampleBatch.from_bytes(raw)
            for s, t, v in zip(b.sidx.tolist(), b.ts.tolist(), b.vals.tolist(), strict=True):
                out[(b.series[s], t, v)] += 1
    return out


def _send(port: int, *chunks: bytes, pause: float = 0.0) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        for c in chunks:
            s.sendall(c)
            if pause:
                time.sleep(pause)


def _eventually(fn, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    return eventually(fn, timeout, 0.05)


def _lb(name: str, **tags: str) -> tuple:
    return tuple(sorted({"__name__": name, **tags}.items()))


def _wait_samples(url: str, n: int, timeout: float = 15.0) -> Counter:
    def check() -> Counter:
        got = _samples(url)
        assert sum(got.values()) >= n, f"{sum(got.values())} of {n} samples in the log"
        return got

    got = _eventually(check, timeout)
    time.sleep(0.1)  # nothing more may come
    assert sum(_samples(url).values()) == n
    return got


def test_influx_lines_land_in_the_log_exactly(gw: TcpGateway, redis_url: str) -> None:
    body = (b"cpu,host=a,dc=eu usage_user=0.5,usage_idle=99i 1700000000123456789\n"
            b"mem value=4 1700000001000000000\n"
            b"req,host=b counter=10u 1700000002000000000\n"
            b"# a comment\n\n")  # fmt: skip
    _send(gw.ports["influx"], body)
    got = _wait_samples(redis_url, 4)
    assert got == Counter({(_lb("cpu_usage_user", host="a", dc="eu"), 1700000000123, 0.5): 1,
                           (_lb("cpu_usage_idle", host="a", dc="eu"), 1700000000123, 99.0): 1,
                           (_lb("mem"), 1700000001000, 4.0): 1,
                           (_lb("req", host="b"), 1700000002000, 10.0): 1})  # fmt: skip
    st = _eventually(lambda: _stats_settled(gw, "influx", 3))
    assert st["samples_written"] == 4 and st["lines_rejected"] == {}
    assert st["connections"] == 1


def _stats_settled(gw: TcpGateway, door: str, accepted: int) -> dict:
    st = gw.stats.snapshot()[door]
    assert st["lines_accepted"] == accepted and st["connections_open"] == 0, st
    return st


@pytest.mark.parametrize("door,good1,bad,good2,expect", [
    ("influx", b"ok,k=1 value=1 1000000000", b"ok,k=1 value=oops 2000000000", b"ok,k=1 value=3 3000000000",
     {(_lb("ok", k="1"), 1000, 1.0): 1, (_lb("ok", k="1"), 3000, 3.0): 1}),
    ("graphite", b"ok.k 1 1", b"ok.k not-a-number 2", b"ok.k 3 3",
     {(_lb("ok_k"), 1000, 1.0): 1, (_lb("ok_k"), 3000, 3.0): 1}),
])  # fmt: skip
def test_malformed_line_is_counted_and_good_ones_written(gw: TcpGateway, redis_url: str, door: str,
                                                         good1: bytes, bad: bytes, good2: bytes,
                                                         expect: dict) -> None:  # fmt: skip
    _send(gw.ports[door], good1 + b"\n" + bad + b"\n" + good2 + b"\n")
    assert _wait_samples(redis_url, 2) == Counter(expect)
    st = _eventually(lambda: _stats_settled(gw, door, 2))
    assert st["lines_rejected"] == {"malformed": 1} and st["samples_written"] == 2


def test_non_utf8_line_is_dropped_alone(gw: TcpGateway, redis_url: str) -> None:
    _send(gw.ports["graphite"], b"a 1 1\nb\xff\xfe 2 2\nc 3 3\n")
    assert _wait_samples(redis_url, 2) == Counter(
        {(_lb("a"), 1000, 1.0): 1, (_lb("c"), 3000, 3.0): 1}
    )
    st = _eventually(lambda: _stats_settled(gw, "graphite", 2))
    assert st["lines_rejected"] == {"not_utf8": 1}


def test_line_split_across_sends_is_parsed_whole(gw: TcpGateway, redis_url: str) -> None:
    # cut inside a field name, inside a two-byte UTF-8 character, and before the newline;
    # the pauses outlast the idle flush, so each part reaches the server on its own
    line = "temp,room=küche value=21.5 1700000000000000000\n".encode()
    cut = line.index("ü".encode()) + 1
    _send(gw.ports["influx"], b"temp,room=a value=1 1000000000\ntemp,room=b va", b"lue=2 2000000000",
          b"\n" + line[:cut], line[cut:-1], b"\n", pause=0.2)  # fmt: skip
    got = _wait_samples(redis_url, 3)
    assert got == Counter({(_lb("temp", room="a"), 1000, 1.0): 1, (_lb("temp", room="b"), 2000, 2.0): 1,
                           (_lb("temp", room="küche"), 1700000000000, 21.5): 1})  # fmt: skip
    assert gw.stats.snapshot()["influx"]["lines_rejected"] == {}


def test_last_line_without_newline_counts_at_close(gw: TcpGateway, redis_url: str) -> None:
    _send(gw.ports["graphite"], b"x.y 1 10\nx.y 2 20")
    assert _wait_samples(redis_url, 2) == Counter(
        {(_lb("x_y"), 10_000, 1.0): 1, (_lb("x_y"), 20_000, 2.0): 1}
    )


def test_fifty_concurrent_connections_of_1000_lines(gw: TcpGateway, redis_url: str) -> None:
    n_conn, n_lines = 50, 1000
    errors: list[BaseException] = []

    def client(c: int) -> None:
        try:
            body = b"".join(
                f"load,conn=c{c} value={i} {(i + 1) * NS}\n".encode() for i in range(n_lines)
            )
            # odd chunk sizes so that lines are cut at read boundaries
            with socket.create_connection(("127.0.0.1", gw.ports["influx"])) as s:
                for k in range(0, len(body), 7919):
                    s.sendall(body[k : k + 7919])
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(n_conn)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    got = _wait_samples(redis_url, n_conn * n_lines, timeout=60)
    elapsed = time.monotonic() - t0
    assert got == Counter({(_lb("load", conn=f"c{c}"), (i + 1) * 1000, float(i)): 1
                           for c in range(n_conn) for i in range(n_lines)})  # fmt: skip
    st = _eventually(lambda: _stats_settled(gw, "influx", n_conn * n_lines))
    assert st["connections"] == n_conn and st["lines_rejected"] == {}
    print(f"\n{n_conn * n_lines} lines over {n_conn} connections in the log after {elapsed:.2f} s")


def test_huge_line_is_dropped_and_the_connection_resynchronises(
    gw: TcpGateway, redis_url: str
) -> None:
    huge = b"big.line " + b"9" * (3 << 19)  # 1.5 MiB without a newline
    chunks = [b"g.before 1 1\ng.cut", b" 2 2\n" + huge[:100_000]]
    chunks += [huge[k : k + 200_000] for k in range(100_000, len(huge), 200_000)]
    chunks += [b" 3\ng.after 4 4\n", b"g.last 5 5\n"]
    _send(gw.ports["graphite"], *chunks)
    got = _wait_samples(redis_url, 4)
    assert got == Counter({(_lb("g_before"), 1000, 1.0): 1, (_lb("g_cut"), 2000, 2.0): 1,
                           (_lb("g_after"), 4000, 4.0): 1, (_lb("g_last"), 5000, 5.0): 1})  # fmt: skip
    st = _eventually(lambda: _stats_settled(gw, "graphite", 4))
    assert st["lines_rejected"] == {"too_long": 1}


def test_huge_line_cut_by_close_loses_nothing_before_it(gw: TcpGateway, redis_url: str) -> None:
    _send(gw.ports["influx"], b"h value=1 1000000000\n", b"h value=" + b"1" * (1 << 21))
    assert _wait_samples(redis_url, 1) == Counter({(_lb("h"), 1000, 1.0): 1})
    st = _eventually(lambda: _stats_settled(gw, "influx", 1))
    assert st["lines_rejected"] == {"too_long": 1}


def test_graphite_plain_and_tagged(gw: TcpGateway, redis_url: str) -> None:
    _send(gw.ports["graphite"], b"servers.web-1.cpu 12.5 1700000000\n"
          b"disk.used;dc=eu;host=h1;name=ignored 0.75 1700000000.25\n"
          b"disk.used;host=h1;dc=us 1e3 1700000001\n")  # fmt: skip
    got = _wait_samples(redis_url, 3)
    assert got == Counter({(_lb("servers_web_1_cpu"), 1_700_000_000_000, 12.5): 1,
                           (_lb("disk_used", dc="eu", host="h1"), 1_700_000_000_250, 0.75): 1,
                           (_lb("disk_used", dc="us", host="h1"), 1_700_000_001_000, 1000.0): 1})  # fmt: skip


def test_influx_histogram_line(gw: TcpGateway, redis_url: str) -> None:
    line = b"http_latency,path=/x sum=12.5,count=8i,0.5=2i,1=5i,+Inf=8i 1700000000000000000\n"
    r = parse_lines(line)
    assert r.batch.types == {"http_latency": "histogram"} and not r.errors
    _send(
        gw.ports["influx"], line, b"lat2 sum=1,count=2,+Inf=2,x=3 1000000000\n"
    )  # not a histogram
    t = 1_700_000_000_000
    got = _wait_samples(redis_url, 9)
    assert got == Counter({(_lb("http_latency_sum", path="/x"), t, 12.5): 1,
                           (_lb("http_latency_count", path="/x"), t, 8.0): 1,
                           (_lb("http_latency_bucket", path="/x", le="0.5"), t, 2.0): 1,
                           (_lb("http_latency_bucket", path="/x", le="1"), t, 5.0): 1,
                           (_lb("http_latency_bucket", path="/x", le="+Inf"), t, 8.0): 1,
                           (_lb("lat2_sum"), 1000, 1.0): 1, (_lb("lat2_count"), 1000, 2.0): 1,
                           (_lb("lat2__Inf"), 1000, 2.0): 1, (_lb("lat2_x"), 1000, 3.0): 1})  # fmt: skip
    bad = parse_lines(b"h,le=1 sum=1,count=1,+Inf=1 1\n")
    assert len(bad.batch) == 0 and "le" in bad.errors[0][1]


def test_lines_are_batched_by_time_and_flushed_on_stop(redis_url: str) -> None:
    ShardMapStore(redis_url).create_dataset(DS, SHARDS, 1)
    opts = GatewayOptions(max_delay_s=30, max_batch_lines=1000, max_batch_bytes=64 << 10)
    g = _gateway(redis_url, opts, graphite=free_port(), influx=0)
    assert set(g.ports) == {"graphite"}  # influx door off
    s = socket.create_connection(("127.0.0.1", g.ports["graphite"]))
    s.sendall(b"slow 1 1\n")
    time.sleep(0.5)
    assert _samples(redis_url) == Counter()  # held until 30 s pass, the batch fills or close
    s.sendall(b"".join(b"fill %d %d\n" % (i, i + 1) for i in range(998)))
    time.sleep(0.3)
    assert _samples(redis_url) == Counter()  # 999 lines: not yet
    s.sendall(b"fill 998 999\n")  # the 1000th line
    _wait_samples(redis_url, 1000)
    s.sendall(b"".join(b"long.%s %d 1\n" % (b"x" * 30_000, i) for i in range(3)))  # > 64 KiB
    _wait_samples(redis_url, 1003)
    s.sendall(b"tail 7 7\n")
    time.sleep(0.3)
    g.stop()  # the open connection flushes what it holds
    assert _samples(redis_url)[(_lb("tail"), 7000, 7.0)] == 1
    s.close()


def test_idle_flush_without_closing(gw: TcpGateway, redis_url: str) -> None:
    with socket.create_connection(("127.0.0.1", gw.ports["influx"])) as s:
        s.sendall(b"idle value=1 1000000000\n")
        assert _wait_samples(redis_url, 1, timeout=5) == Counter({(_lb("idle"), 1000, 1.0): 1})


def test_log_outage_is_retried_then_dropped_and_the_server_survives(tmp_path: Path) -> None:
    port = free_port()
    rp = start_redis(tmp_path / "r", port)
    url = rp.url
    ShardMapStore(url).create_dataset(DS, SHARDS, 1)
    g = _gateway(url, GatewayOptions(retry_s=20), graphite=free_port())
    try:
        _send(g.ports["graphite"], b"warm 1 1\n")
        _wait_samples(url, 1)
        rp.stop()
        _send(g.ports["graphite"], b"during.outage 2 2\n")
        _eventually(lambda: _assert(g.stats.snapshot()["graphite"]["batches_retried"] >= 2))
        rp = start_redis(tmp_path / "r", port)  # same data dir: the dataset is still there
        got = _wait_samples(url, 2, timeout=30)
        assert got[(_lb("during_outage"), 2000, 2.0)] == 1
        # now an outage longer than the retry budget: the batch is dropped and counted
        g.options.retry_s = 0.5
        rp.stop()
        _send(g.ports["graphite"], b"lost 3 3\nlost 4 4\n")
        _eventually(
            lambda: _assert(
                g.stats.snapshot()["graphite"]["lines_rejected"].get("write_failed") == 2
            )
        )
        rp = start_redis(tmp_path / "r", port)
        _send(g.ports["graphite"], b"after 5 5\n")  # the door still serves
        got = _wait_samples(url, 3, timeout=30)
        assert got[(_lb("after"), 5000, 5.0)] == 1 and not any(k[0] == _lb("lost") for k in got)
    finally:
        g.stop()
        rp.stop()


def _assert(cond: bool) -> None:
    assert cond


def test_unknown_dataset_drops_batches_without_retrying(redis_url: str) -> None:
    g = _gateway(redis_url, graphite=free_port())  # dataset never created
    try:
        _send(g.ports["graphite"], b"a 1 1\nb 2 2\n")
        st = _eventually(lambda: _stats_drop(g))
        assert st["batches_retried"] == 0 and st["samples_written"] == 0
    finally:
        g.stop()


def _stats_drop(g: TcpGateway) -> dict:
    st = g.stats.snapshot()["graphite"]
    assert st["lines_rejected"] == {"write_failed": 2}, st
    return st


def _run_cli(redis_url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "filodb", "gateway", "--redis-url", redis_url, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_cli_serves_until_sigterm_and_refuses_ports_in_use(redis_url: str) -> None:
    ShardMapStore(redis_url).create_dataset(DS, SHARDS, 1)
    ip, gp = free_port(), free_port()
    p = _run_cli(redis_url, "--influx-port", str(ip), "--graphite-port", str(gp))
    try:

        def connect() -> None:
            try:
                socket.create_connection(("127.0.0.1", gp), timeout=1).close()
            except OSError as e:
                raise AssertionError(str(e)) from e

        _eventually(connect, 30)
        _send(ip, b"cli value=1 1000000000\n")
        _send(gp, b"cli.g 2 2\n")
        _wait_samples(redis_url, 2)
        busy = _run_cli(redis_url, "--influx-port", str(ip), "--graphite-port", "0")
        _, err = busy.communicate(timeout=30)
        assert busy.returncode == 2 and f"127.0.0.1:{ip}" in err and "in use" in err
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "stopped" in out
    r = redis.Redis.from_url(redis_url)
    assert r.ping()


def _scrape(port: int) -> dict[str, float]:
    """``{'name{labels}': value}`` of a Prometheus exposition (parsed by prometheus_client)."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[s.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}"] = (
                s.value
            )
    return out


def test_cli_serves_its_counters_as_prometheus_metrics(redis_url: str) -> None:
    ShardMapStore(redis_url).create_dataset(DS, SHARDS, 1)
    ip, gp, mp = free_port(), free_port(), free_port()
    p = _run_cli(redis_url, "--influx-port", str(ip), "--graphite-port", str(gp),
                 "--gateway-metrics-port", str(mp))  # fmt: skip
    try:

        def up() -> dict[str, float]:
            try:
                return _scrape(mp)
            except OSError as e:
                raise AssertionError(str(e)) from e

        _eventually(up, 30)
        _send(ip, b"m value=1 1000000000\nm,bad tag value=2\nm value=3 3000000000\n")
        _send(gp, b"g.one 1 1\nno-value-here\n" + b"x" * (2 << 20) + b"\ng.two 2 2\n")
        _wait_samples(redis_url, 4)

        def counted() -> dict[str, float]:
            m = _scrape(mp)
            infl, gra = "dataset=prometheus,door=influx", "dataset=prometheus,door=graphite"
            assert m[f"filodb_gateway_lines_accepted_total{{{infl}}}"] == 2
            assert m[f"filodb_gateway_samples_written_total{{{gra}}}"] == 2
            assert m[f"filodb_gateway_lines_rejected_total{{{infl},reason=malformed}}"] == 1
            assert m[f"filodb_gateway_lines_rejected_total{{{gra},reason=malformed}}"] == 1
            assert m[f"filodb_gateway_lines_rejected_total{{{gra},reason=too_long}}"] == 1
            assert m[f"filodb_gateway_connections_total{{{infl}}}"] == 1
            assert m[f"filodb_gateway_connections_open{{{gra}}}"] == 0
            return m

        _eventually(counted)
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert f"metrics on http://127.0.0.1:{mp}/metrics" in out


def test_tcp_doors_keep_the_metric_types_their_lines_imply(redis_url: str) -> None:
    """Graphite paths are gauges (as graphite_exporter types them), an Influx histogram line a
    histogram, a plain Influx field nothing; an entry with help (from remote write) stays."""
    from filodb.shards.metadata import MetadataStore

    ShardMapStore(redis_url).create_dataset(DS, SHARDS, 1)
    meta = MetadataStore(redis_url)
    meta.put(DS, [{"metric": "kept", "type": "counter", "help": "From remote write."}])
    router = IngestRouter(ShardMapStore(redis_url), RedisStreamsLog(redis_url))
    ports = {"influx": free_port(), "graphite": free_port()}
    gw = TcpGateway(router, DS, "127.0.0.1", ports, metadata=meta).start()
    try:
        _send(gw.ports["graphite"], b"servers.web-1.cpu 12.5 1700000000\nkept 1 1700000000\n"
              b"disk.used;dc=eu 0.75 1700000000\n")  # fmt: skip
        _send(gw.ports["influx"], b"lat,path=/x sum=1,count=2,+Inf=2 1000000000\n"
              b"plain value=3 1000000000\n")  # fmt: skip
        _wait_samples(redis_url, 3 + 4)
        got = _eventually(lambda: _types(meta, 4))
    finally:
        gw.stop()
    assert got == {"servers_web_1_cpu": "gauge", "disk_used": "gauge", "lat": "histogram",
                   "kept": "counter"}  # fmt: skip
    assert meta.get(DS, "kept")["kept"]["help"] == "From remote write."


def _types(meta, n: int) -> dict[str, str]:  # type: ignore[no-untyped-def]
    got = {k: v["type"] for k, v in meta.get(DS).items()}
    assert len(got) == n, got
    return got


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=" \t\r\x0b\x0c#ab=1\n", max_size=8), max_size=30))
def test_data_lines_are_counted_as_the_per_line_rule_says(lines: list[str]) -> None:
    body = "\n".join(lines).encode()
    want = sum(1 for ln in body.split(b"\n") if ln.strip() and not ln.strip().startswith(b"#"))
    assert _count_lines(body) == want


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=" \t\r\x0b\x0c#ab=1;.\n", max_size=10), max_size=30))
def test_parsers_count_the_data_lines_by_the_same_rule(lines: list[str]) -> None:
    body = "\n".join(lines).encode()
    for parse in DOORS.values():  # what the doors count as accepted, without a pass of their own
        r = parse(body, 0)
        assert r.lines - r.blank == _count_lines(body)
