"""PromQL range-query latency through the HTTP API, side by side with Prometheus 2.42 and
VictoriaMetrics (Debian packages) loaded with the same samples by remote write.

Prints one JSON object per line: ``{"metric", "value", "unit", ...context}``:
``query_p50_ms`` per system and query of the 15-query dashboard set (median of ``--repeat``
runs over the whole span at a 60 s step; FiloDB with its results cache off unless
``--cache on``), ``query_p50_ratio`` (FiloDB's / the peer's: below 1 is faster),
``dashboard_median_ms`` and ``dashboard_median_ratio`` (the median of the 15),
``answers_agree`` (1 when FiloDB's answer equals Prometheus's within 1e-6 relative),
``dashboard_qps`` for each ``--clients`` count (that many client processes running the set
``--passes`` times at once, one system at a time) with ``dashboard_qps_ratio``, and
``dashboard_max_slowdown`` (the worst query's p50 under that many clients over its p50 with
the first count, 1 by default; ``dashboard_slowdown`` each query's), ``dashboard_refresh_ms`` (a "last 1 h" dashboard at a 15 s
step whose end moved by 15 s: the set once, median of ``--repeat`` refreshes; FiloDB with the
cache on and off), and the ingest rate of each system for the load. VictoriaMetrics runs with
``-search.disableCache`` (its own rollup cache off), Prometheus has none.

    python bench/promql.py                       # 10 000 series x 6 h at 30 s
    python bench/promql.py --series 10000,100000
    python bench/promql.py --quick               # 2 000 series x 1 h, under two minutes
    python bench/promql.py --floor               # only the per-query floor (about a minute)
    python bench/promql.py --series 100000 --hours 1 --queries join_group_left --no-floor

``query_p50_ms{query="large_answer"}``: every series at every step of the last 2 h
(``{__name__=~"bench_.+"}``, 121 steps), outside the dashboard set (not in its median, its
client runs nor its refreshes), with its ratio and ``answers_agree`` against the peers.
``--queries a,b`` runs only the queries named (of the set and ``large_answer``).

``query_floor_ms``: the p50 of ``--floor-n`` trivial instant queries
(``absent(nonexistent_metric)``) over HTTP on an empty database, per system (FiloDB with each
``--workers`` count, 1 and 3 by default: ``query_floor_ms{workers="3"}``, 4 shards), with ``query_floor_ratio`` (FiloDB / peer) and the p90 in the
context. It is measured before the load, with every system up.

Workload (exporter-like, per 100 series): 50 counters ``bench_requests_total{job,instance,code}``
with integer increments, 30 gauges ``bench_temp{job,instance}`` with one decimal, 20 classic
histogram buckets ``bench_latency_seconds_bucket{job,instance,le}`` (2 histograms of 10
buckets), and one ``bench_machine_cpu_cores{instance}`` info-like gauge per instance.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from filodb.model.batch import SampleBatch  # noqa: E402
from filodb.model.labels import make_labels  # noqa: E402
from filodb.prom.remote_write import encode_write_request  # noqa: E402
from filodb.redisproc import free_port, stop_process  # noqa: E402
from filodb.testing.cluster import UpProcess  # noqa: E402

QUERIES = {  # the dashboard set
    "sum_rate_by_job": "sum by (job) (rate(bench_requests_total[5m]))",
    "histogram_quantile": "histogram_quantile(0.99, sum by (le) (rate(bench_latency_seconds_bucket[5m])))",
    "topk_avg_over_time": "topk(10, avg_over_time(bench_temp[10m]))",
    "join_group_left": "rate(bench_requests_total[5m]) / on(instance) group_left() bench_machine_cpu_cores",
    "sum_rate_by_code": "sum by (code) (rate(bench_requests_total[5m]))",
    "error_ratio": 'sum(rate(bench_requests_total{code="204"}[5m])) / sum(rate(bench_requests_total[5m]))',
    "histogram_quantile_by_job": "histogram_quantile(0.9, sum by (job, le) (rate(bench_latency_seconds_bucket[5m])))",
    "avg_by_job": "avg by (job) (bench_temp)",
    "max_max_over_time": "max(max_over_time(bench_temp[5m]))",
    "deriv_by_job": "avg by (job) (deriv(bench_temp[10m]))",
    "increase_1h": "sum(increase(bench_requests_total[1h]))",
    "count_above": "count by (job) (bench_temp > 22)",
    "rate_one_job": 'sum by (instance) (rate(bench_requests_total{job="job1"}[5m]))',
    "quantile_gauge": "quantile(0.5, bench_temp)",
    "sum_gauge": "sum(bench_machine_cpu_cores)",
}  # fmt: skip
# answers of every series at every step, outside the dashboard set (not in its median nor in
# the client runs): 10 k series x 121 steps (the last 2 h at 60 s) at --series 10000, where the
# time goes into writing the JSON and carrying the label sets
LARGE = {"large_answer": '{__name__=~"bench_.+"}'}
LARGE_SPAN_S = 7200
LE = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"]
PER_REQUEST_SAMPLES = 200_000


def emit(metric: str, value: float, unit: str, **ctx: object) -> None:
    print(
        orjson.dumps({"metric": metric, "value": round(value, 6), "unit": unit, **ctx}).decode(),
        flush=True,
    )


def workload(n_series: int, n_samples: int, seed: int = 1) -> tuple[list, np.ndarray]:
    """Series label sets and their values [n_series, n_samples] (see the module docstring)."""
    rng = np.random.default_rng(seed)
    blocks = max(1, n_series // 100)
    series, vals = [], []
    steps = np.arange(n_samples)
    for b in range(blocks):
        job = f"job{b % 10}"
        for k in range(50):
            inst = f"i{b}-{k % 10}"
            series.append(
                {
                    "__name__": "bench_requests_total",
                    "job": job,
                    "instance": inst,
                    "code": str(200 + k // 10),
                }
            )
        vals.append(np.cumsum(rng.integers(0, 20, (50, n_samples)), axis=1).astype(float))
        for k in range(30):
            series.append(
                {
                    "__name__": "bench_temp",
                    "job": job,
                    "instance": f"i{b}-{k % 10}",
                    "sensor": str(k // 10),
                }
            )
        phase = rng.uniform(0, 6.3, (30, 1))
        vals.append(np.round(20 + 5 * np.sin(steps[None, :] / 40 + phase), 1))
        for h in range(2):
            inst = f"i{b}-{h}"
            obs = np.cumsum(rng.integers(0, 50, (1, n_samples)), axis=1).astype(float)
            frac = np.array([0.02, 0.05, 0.15, 0.3, 0.5, 0.7, 0.85, 0.95, 0.99, 1.0])[:, None]
            for le in LE:
                series.append(
                    {
                        "__name__": "bench_latency_seconds_bucket",
                        "job": job,
                        "instance": inst,
                        "le": le,
                    }
                )
            vals.append(np.floor(obs * frac))
        for k in range(10):
            series.append({"__name__": "bench_machine_cpu_cores", "instance": f"i{b}-{k}"})
        vals.append(np.full((10, n_samples), float(2 + (b + 3) % 7)))
    return [make_labels(s) for s in series], np.concatenate(vals)


def bodies(series: list, vals: np.ndarray, t0: int, interval_ms: int) -> list[bytes]:
    """Time-major remote-write requests (every series, a few samples each), as a scraper sends."""
    n_series, n = vals.shape
    k = max(1, min(n, max(10, PER_REQUEST_SAMPLES // n_series)))  # >= 5 min of scrapes a request
    out = []
    for a in range(0, n, k):
        b = min(n, a + k)
        ts = t0 + interval_ms * np.arange(a, b)
        batch = SampleBatch(series, np.repeat(np.arange(n_series), b - a), np.tile(ts, n_series),
                            vals[:, a:b].ravel())  # fmt: skip
        out.append(encode_write_request(batch))
    return out


def push(url: str, payloads: list[bytes]) -> float:
    s = requests.Session()
    start = time.perf_counter()
    for body in payloads:
        r = s.post(url, data=body, headers={"Content-Encoding": "snappy",
                                            "Content-Type": "application/x-protobuf",
                                            "X-Prometheus-Remote-Write-Version": "0.1.0"}, timeout=300)  # fmt: skip
        if r.status_code not in (200, 204):
            raise RuntimeError(f"{url}: {r.status_code} {r.text[:300]}")
    return time.perf_counter() - start


POLL_S = 0.05  # between queries of a wait (VictoriaMetrics's flush loop waits as long)


def wait_count(base: str, query: str, want: int, at_s: float, timeout_s: float = 600) -> None:
    """Query ``query`` at ``at_s`` every :data:`POLL_S` until it answers ``want``."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            r = requests.get(
                base + "/api/v1/query", params={"query": query, "time": at_s}, timeout=60
            )
            last = r.text[:200]
            res = r.json()["data"]["result"]
            if res and float(res[0]["value"][1]) == want:
                return
        except (requests.RequestException, ValueError, KeyError):
            pass
        time.sleep(POLL_S)
    raise TimeoutError(f"{base}: {query} never reached {want}: {last}")


class Peer:
    """A Debian-packaged peer (prometheus | victoria-metrics) on a free port."""

    def __init__(self, kind: str, workdir: Path, admin: bool = False,
                 extra: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.kind = kind
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        data = workdir / kind
        data.mkdir(parents=True)
        if kind == "prometheus":
            cfg = data / "prometheus.yml"
            cfg.write_text("global:\n  scrape_interval: 1h\n")
            args = ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={data}/tsdb",
                    f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-remote-write-receiver",
                    "--storage.tsdb.retention.time=100y", "--log.level=warn",
                    *(["--web.enable-admin-api"] if admin else [])]  # fmt: skip
            self.write_url = self.base + "/api/v1/write"
        else:
            args = ["victoria-metrics", f"-storageDataPath={data}/vm", f"-httpListenAddr=127.0.0.1:{self.port}",
                    "-retentionPeriod=100y", "-search.disableCache", "-loggerLevel=WARN",
                    # queue a query as long as FiloDB's and Prometheus's 2 min timeouts: its
                    # default 10 s answered 503 to 16 clients at 100 k series
                    "-search.maxQueueDuration=120s"]  # fmt: skip
            self.write_url = self.base + "/api/v1/write"
        self.log = open(data / "log.txt", "wb")  # noqa: SIM115
        args += extra
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if (
                    requests.get(
                        self.base + "/api/v1/query", params={"query": "1"}, timeout=2
                    ).status_code
                    == 200
                ):
                    return
            except requests.RequestException:
                time.sleep(0.2)
        raise TimeoutError(f"{kind} did not start: {(data / 'log.txt').read_text()[-2000:]}")

    def stop(self) -> None:
        stop_process(self.proc, 30)
        self.log.close()


def time_query(base: str, q: str, start_s: float, end_s: float, repeat: int,
               extra: dict | None = None) -> tuple[float, dict]:  # fmt: skip
    s = requests.Session()
    params = {"query": q, "start": start_s, "end": end_s, "step": "60s", **(extra or {})}
    times, body = [], {}
    for _ in range(repeat):
        t = time.perf_counter()
        r = s.get(base + "/api/v1/query_range", params=params, timeout=600)
        times.append(time.perf_counter() - t)
        body = r.json()
        if r.status_code != 200 or body.get("status") != "success":
            raise RuntimeError(f"{base}: {q}: {r.status_code} {r.text[:300]}")
    return 1000 * statistics.median(times), body


def _norm(body: dict, from_s: float) -> dict:
    out = {}
    for r in body["data"]["result"]:
        key = tuple(sorted(r["metric"].items()))
        ts = np.array([p[0] for p in r["values"]], float)
        vs = np.array([float(p[1]) for p in r["values"]])
        keep = ts >= from_s
        if keep.any():
            out[key] = (ts[keep], vs[keep])
    return out


def agree(a: dict, b: dict, topk: bool, from_s: float) -> bool:
    """Equal answers from ``from_s`` on: before it, windows reach before the first sample, where
    Prometheus 2.42 and 3.x (this project's semantics) extrapolate rates differently."""
    na, nb = _norm(a, from_s), _norm(b, from_s)
    if topk:  # ties may pick other series: compare the sorted values per step instead
        return _topk_values(na) == _topk_values(nb)
    if na.keys() != nb.keys():
        return False
    for k, (ta, va) in na.items():
        tb, vb = nb[k]
        if not np.array_equal(ta, tb) or not np.allclose(
            va, vb, rtol=1e-6, atol=1e-9, equal_nan=True
        ):
            return False
    return True


def _topk_values(n: dict) -> dict:
    by_t: dict[float, list[float]] = {}
    for ts, vs in n.values():
        for t, v in zip(ts.tolist(), vs.tolist(), strict=True):
            by_t.setdefault(t, []).append(round(v, 6))
    return {t: sorted(v) for t, v in by_t.items()}


FLOOR_QUERY = "absent(nonexistent_metric)"


def floor_ms(base: str, n: int) -> tuple[float, float]:
    """p50 and p90 in ms of ``n`` instant queries of :data:`FLOOR_QUERY` (after 20 warm-ups)."""
    s = requests.Session()
    times = []
    for i in range(n + 20):
        t = time.perf_counter()
        r = s.get(base + "/api/v1/query", params={"query": FLOOR_QUERY}, timeout=60)
        if i >= 20:
            times.append(time.perf_counter() - t)
        if r.status_code != 200 or r.json().get("status") != "success":
            raise RuntimeError(f"{base}: {FLOOR_QUERY}: {r.status_code} {r.text[:300]}")
    times.sort()
    return 1000 * statistics.median(times), 1000 * times[int(0.9 * (len(times) - 1))]


def run_floor(
    n: int, workers: list[int], peers: list[str], up_args: list[str] | None = None
) -> None:
    """``query_floor_ms`` of FiloDB with each count of workers and of each peer, and the ratios;
    ``up_args``: more ``filodb up`` arguments (reported as ``up_args``)."""
    got: dict[str, float] = {}
    more = {"up_args": " ".join(up_args)} if up_args else {}
    with tempfile.TemporaryDirectory() as d:
        for w in workers:
            extra = (["--workers", str(w)] if w > 1 else []) + list(up_args or [])
            up = UpProcess(Path(d) / f"filodb-{w}", shards=4, extra=extra).start()
            try:
                wait_count(up.url, "vector(1)", 1, time.time())
                p50, p90 = floor_ms(up.url, n)
            finally:
                up.stop()
            got[f"filodb-{w}"] = p50
            emit("query_floor_ms", p50, "ms", system="filodb", workers=w, shards=4, p90_ms=round(p90, 3),
                 query=FLOOR_QUERY, n=n, **more)  # fmt: skip
        for peer in peers:
            pr = Peer(peer, Path(d))
            try:
                p50, p90 = floor_ms(pr.base, n)
            finally:
                pr.stop()
            got[peer] = p50
            emit("query_floor_ms", p50, "ms", system=peer, p90_ms=round(p90, 3), query=FLOOR_QUERY,
                 n=n)  # fmt: skip
    for w in workers:
        for peer in peers:
            emit("query_floor_ratio", got[f"filodb-{w}"] / got[peer], "filodb/peer", peer=peer,
                 workers=w, query=FLOOR_QUERY, **more)  # fmt: skip


def _client(base: str, k: int, names: list[str], rounds: int, start_s: float, end_s: float,
            extra: dict, gate: Any, out: Any) -> None:  # fmt: skip
    """One dashboard client (its own process): ``rounds`` queries of the set from the ``k``-th
    on; puts ``(latencies: {name: [s]}, errors)`` on ``out``."""
    s = requests.Session()
    lat: dict[str, list[float]] = {n: [] for n in names}
    errors: list[str] = []
    gate.wait()
    for i in range(rounds):
        name = names[(k + i) % len(names)]
        params = {"query": QUERIES[name], "start": start_s, "end": end_s, "step": "60s", **extra}
        t = time.perf_counter()
        r = s.get(base + "/api/v1/query_range", params=params, timeout=600)
        lat[name].append(time.perf_counter() - t)
        if r.status_code != 200:
            errors.append(f"{name}: {r.status_code} {r.text[:200]}")
    out.put((lat, errors))


def run_clients(base: str, clients: int, start_s: float, end_s: float, passes: int,
                extra: dict) -> tuple[float, dict[str, float]]:  # fmt: skip
    """``clients`` processes (so the clients' own GIL is not what is measured), each running
    the dashboard set ``passes`` times (each from its own query, so they do not move in lock
    step): queries per second, and each query's p50 (ms)."""
    names = list(QUERIES)
    ctx = multiprocessing.get_context("fork")  # no threads run in this process then
    gate, out = ctx.Barrier(clients + 1), ctx.Queue()
    procs = [ctx.Process(target=_client, args=(base, k, names, passes * len(names), start_s,
                                               end_s, extra, gate, out)) for k in range(clients)]  # fmt: skip
    for p in procs:
        p.start()
    gate.wait()
    t0 = time.perf_counter()
    got = [out.get(timeout=3600) for _ in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    lat: dict[str, list[float]] = {n: [] for n in names}
    for part, errors in got:
        if errors:
            raise RuntimeError(f"{base}: {errors[0]}")
        for n, v in part.items():
            lat[n] += v
    done = sum(len(v) for v in lat.values())
    return done / wall, {n: 1000 * statistics.median(v) for n, v in lat.items()}


def refresh_ms(base: str, extra: dict, refreshes: int) -> float:
    """A "last 1 h" dashboard at a 15 s step refreshed every 15 s: the median time (ms) to run
    the whole set once the end has moved by 15 s (the first load, not timed, warms up)."""
    s = requests.Session()
    end0 = time.time() // 15 * 15
    took = []
    for k in range(refreshes + 1):
        end = end0 + 15 * k
        t = time.perf_counter()
        for q in QUERIES.values():
            params = {"query": q, "start": end - 3600, "end": end, "step": "15s", **extra}
            r = s.get(base + "/api/v1/query_range", params=params, timeout=600)
            if r.status_code != 200:
                raise RuntimeError(f"{base}: {q}: {r.status_code} {r.text[:200]}")
        if k:
            took.append(time.perf_counter() - t)
    return 1000 * statistics.median(took)


def run_scale(n_series: int, hours: float, interval_s: int, repeat: int, peers: list[str],
              clients: list[int], passes: int, cache: bool) -> None:  # fmt: skip
    n = int(hours * 3600 / interval_s)
    now = int(time.time() * 1000)
    # off the minute, as scrapes are: no sample sits on a window edge, where Prometheus 2.42's
    # closed windows and the left-open windows of 3.x (which this project follows) differ
    t0 = (now - int(hours * 3600_000) - 600_000) // 60_000 * 60_000 + 7_123
    series, vals = workload(n_series, n)
    n_series = len(series)
    payloads = bodies(series, vals, t0, interval_s * 1000)
    total = n_series * n
    ctx = {"series": n_series, "hours": hours, "interval_s": interval_s, "samples": total}
    start_s = (t0 // 60_000 + 1) * 60  # query steps on the minute, samples 7.123 s past it
    end_s = (t0 + (n - 1) * interval_s * 1000) // 60_000 * 60
    n_temp = sum(1 for s in series if s[0][1] == "bench_temp")
    count_q = "count(count_over_time(bench_temp[1m]))"
    answers: dict[str, dict] = {}
    lat: dict[tuple[str, str], float] = {}
    qps: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory() as d:
        systems = ["filodb", *peers]
        for system in systems:
            extra: dict = {}
            if system == "filodb":
                up = UpProcess(Path(d) / "filodb", shards=4).start()
                base, stop = up.url, up.stop
                write_url = base + "/api/v1/write"
                extra = {} if cache else {"cache": "false"}
            else:
                peer = Peer(system, Path(d))
                base, stop, write_url = peer.base, peer.stop, peer.write_url
            sctx = {"system": system, **ctx, **({"cache": cache} if system == "filodb" else {})}
            try:
                took = push(write_url, payloads)
                emit("remote_write_ack_samples_per_s", total / took, "samples/s", **sctx)
                wait_count(base, count_q, n_temp, end_s)
                for name, q in QUERIES.items():
                    ms, body = time_query(base, q, start_s, end_s, repeat, extra)
                    lat[(system, name)] = ms
                    emit("query_p50_ms", ms, "ms", query=name, **sctx)
                    if system == "filodb":
                        answers[name] = body
                    elif system == "prometheus":
                        warm = (
                            t0 / 1000 + 600 + (3600 if "[1h]" in q else 0)
                        )  # windows inside the data
                        ok = agree(answers[name], body, name.startswith("topk"), warm)
                        emit("answers_agree", float(ok), "bool", query=name, peer=system, **ctx)
                for name, q in LARGE.items():
                    lo = max(start_s, end_s - LARGE_SPAN_S)
                    ms, body = time_query(base, q, lo, end_s, repeat, extra)
                    lat[(system, name)] = ms
                    emit("query_p50_ms", ms, "ms", query=name, steps=int((end_s - lo) // 60) + 1,
                         answer_series=len(body["data"]["result"]), **sctx)  # fmt: skip
                    if system == "filodb":
                        answers[name] = body
                    elif system == "prometheus":
                        ok = agree(answers[name], body, False, lo)
                        emit("answers_agree", float(ok), "bool", query=name, peer=system, **ctx)
                if not QUERIES:
                    continue
                emit("dashboard_median_ms", statistics.median(lat[(system, q)] for q in QUERIES),
                     "ms", **sctx)  # fmt: skip
                single: dict[str, float] = {}
                for c in clients:
                    rate, p50 = run_clients(base, c, start_s, end_s, passes, extra)
                    qps[(system, c)] = rate
                    single = single or p50
                    worst = max(QUERIES, key=lambda q: p50[q] / single[q])
                    emit("dashboard_qps", rate, "queries/s", clients=c, passes=passes, **sctx)
                    emit("dashboard_max_slowdown", p50[worst] / single[worst], "x single-client p50",
                         clients=c, query=worst, **sctx)  # fmt: skip
                    for q in QUERIES if p50 is not single else ():
                        emit("dashboard_slowdown", p50[q] / single[q], "x single-client p50",
                             clients=c, query=q, single_ms=single[q], **sctx)  # fmt: skip
                modes = [{"cache": "true"}, {"cache": "false"}] if system == "filodb" else [{}]
                for mode in modes:
                    ms = refresh_ms(base, mode, refreshes=repeat)
                    emit("dashboard_refresh_ms", ms, "ms", **{**sctx, **({"cache": mode["cache"] == "true"} if mode else {})},
                         range="1h", step="15s", moved_s=15)  # fmt: skip
            finally:
                stop()
    for peer in peers:
        for name in [*QUERIES, *LARGE]:
            emit("query_p50_ratio", lat[("filodb", name)] / lat[(peer, name)], "filodb/peer",
                 peer=peer, query=name, **ctx)  # fmt: skip
        if not QUERIES:
            continue
        med = [statistics.median(lat[(sy, q)] for q in QUERIES) for sy in ("filodb", peer)]
        emit("dashboard_median_ratio", med[0] / med[1], "filodb/peer", peer=peer, **ctx)
        for c in clients:
            emit("dashboard_qps_ratio", qps[("filodb", c)] / qps[(peer, c)], "filodb/peer",
                 peer=peer, clients=c, **ctx)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--series", default="10000", help="comma-separated series counts")
    ap.add_argument("--hours", type=float, default=6.0)
    ap.add_argument("--interval", type=int, default=30, help="seconds between samples")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--peers", default="prometheus,victoria-metrics", help="comma-separated; empty for none"
    )
    ap.add_argument("--quick", action="store_true", help="2 000 series x 1 h, 3 repeats")
    ap.add_argument("--workers", default="1,3", help="comma-separated worker counts for the floor")
    ap.add_argument("--floor-n", type=int, default=500, help="queries per query_floor_ms")
    ap.add_argument("--floor", action="store_true", help="only query_floor_ms, no load")
    ap.add_argument("--up-arg", action="append", default=[],
                    help="extra `filodb up` argument for the floor (e.g. --up-arg=--web-processes=2)")  # fmt: skip
    ap.add_argument("--clients", default="1,4,16", help="concurrent clients for dashboard_qps")
    ap.add_argument("--passes", type=int, default=2, help="dashboard passes per client")
    ap.add_argument(
        "--cache",
        choices=["on", "off"],
        default="off",
        help="FiloDB's results cache for query_p50_ms and dashboard_qps "
        "(dashboard_refresh_ms is measured both ways)",
    )
    ap.add_argument("--queries", default="",
                    help="comma-separated names of the queries to run (default: the dashboard "
                    f"set and {', '.join(LARGE)}); the others are left out everywhere")  # fmt: skip
    ap.add_argument("--no-floor", action="store_true", help="skip query_floor_ms")
    a = ap.parse_args()
    if a.queries:
        keep = set(a.queries.split(","))
        unknown = keep - QUERIES.keys() - LARGE.keys()
        if unknown:
            sys.exit(f"unknown queries: {sorted(unknown)}; known: {[*QUERIES, *LARGE]}")
        for table in (QUERIES, LARGE):
            for name in [n for n in table if n not in keep]:
                del table[name]
    if a.quick:
        a.series, a.hours, a.repeat, a.floor_n, a.passes = "2000", 1.0, 3, 200, 1
    peers = [p for p in a.peers.split(",") if p]
    for p in peers:
        if not shutil.which(p):
            sys.exit(
                f"{p} not found: apt-get install {'prometheus' if p == 'prometheus' else 'victoria-metrics'}"
            )
    if not a.no_floor:
        run_floor(a.floor_n, [int(w) for w in a.workers.split(",")], peers, a.up_arg)
    if a.floor:
        return
    for n in (int(x) for x in a.series.split(",")):
        run_scale(n, a.hours, a.interval, a.repeat, peers, [int(c) for c in a.clients.split(",")],
                  a.passes, a.cache == "on")  # fmt: skip


if __name__ == "__main__":
    main()
