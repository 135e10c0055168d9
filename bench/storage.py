"""Storage-engine benchmark: codecs, memstore ingest, bytes per sample, memory per series, and
the on-disk bytes per sample of Prometheus 2.42 and VictoriaMetrics fed the same samples.

Prints one JSON object per line: ``{"metric", "value", "unit", ...context}``:
``encode_samples_per_s`` and ``decode_samples_per_s`` (one core; a sample = timestamp + value;
decode through the batch decoders), ``bytes_per_sample`` (encoded chunk vectors; per kind, and
for noisy gauges outside the workload, as extra lines), ``bytes_per_sample_at_rest`` (the
SQLite files after a flush and a clean close; per kind, each kind flushed alone),
``paged_select_ms`` (one select over all data of a shard holding none of it in memory: first,
second through the page cache, and the same select on a shard holding it all in memory), ``ingest_samples_per_s`` (decoded record batches into one
shard, chunks closing as they fill), ``rss_bytes_per_series`` (resident memory of a memstore
holding 2 h of every series, measured in a fresh process), ``index_match_ms`` (tag-index
lookups per matcher kind at ``--index-series``, 1 M by default), and with ``--peers`` the same
samples' on-disk bytes per sample in Prometheus (blocks of an admin snapshot) and
VictoriaMetrics (after a forced merge), with the ratio.

    python bench/storage.py            # 10 000 series x 2 h at 10 s
    python bench/storage.py --quick    # 2 000 series x 1 h, no peers, under two minutes
    python bench/storage.py --hours 6 --interval 15 --bytes-only   # the issue-15 comparison

Workload: ``bench/promql.py``'s exporter-like families (counters with integer increments,
gauges with one decimal, classic histogram buckets, constant info-like gauges), 10 s apart with
0-4 ms of jitter per scrape.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from promql import Peer, emit, push  # noqa: E402

from filodb.encoding import (  # noqa: E402
    decode_doubles_many,
    decode_timestamps_many,
    encode_doubles,
    encode_timestamps,
)
from filodb.memstore.shard import TimeSeriesShard  # noqa: E402
from filodb.model.batch import SampleBatch  # noqa: E402
from filodb.model.labels import Matcher  # noqa: E402
from filodb.node.flush import flush_all  # noqa: E402
from filodb.prom.remote_write import encode_write_request  # noqa: E402
from filodb.store import open_store  # noqa: E402

CHUNK = 480


def data(
    n_series: int, n_samples: int, seed: int = 1, interval_ms: int = 10_000
) -> tuple[list, np.ndarray, np.ndarray, list[str]]:
    from promql import workload

    series, vals = workload(n_series, n_samples, seed)
    rng = np.random.default_rng(seed)
    t0 = (int(time.time() * 1000) - n_samples * interval_ms - 600_000) // 1000 * 1000
    jitter = rng.integers(0, 5, (len(series), n_samples))
    ts = t0 + interval_ms * np.arange(n_samples)[None, :] + jitter
    kinds = []
    for lb in series:
        name = lb[0][1]
        kinds.append({"bench_requests_total": "counter", "bench_temp": "gauge",
                      "bench_latency_seconds_bucket": "histogram"}.get(name, "constant"))  # fmt: skip
    return series, ts, vals, kinds


def codec_figures(ts: np.ndarray, vals: np.ndarray, kinds: list[str], ctx: dict) -> float:
    n_series, n = vals.shape
    encode_timestamps(ts[0, :CHUNK])  # load the compiled kernels outside the timing
    encode_doubles(vals[0, :CHUNK])
    t_enc = time.perf_counter()
    enc_t, enc_v, kind_of = [], [], []
    for i in range(n_series):
        for a in range(0, n, CHUNK):
            enc_t.append(encode_timestamps(ts[i, a : a + CHUNK]))
            enc_v.append(encode_doubles(vals[i, a : a + CHUNK]))
            kind_of.append(kinds[i])
    t_enc = time.perf_counter() - t_enc
    total = n_series * n
    emit("encode_samples_per_s", total / t_enc, "samples/s", **ctx)
    decode_timestamps_many(enc_t[:10])  # compile outside the timing
    decode_doubles_many(enc_v[:10])
    best = 1e9
    for _ in range(3):
        t = time.perf_counter()
        decode_timestamps_many(enc_t)
        decode_doubles_many(enc_v)
        best = min(best, time.perf_counter() - t)
    emit("decode_samples_per_s", total / best, "samples/s", batched=True, **ctx)
    nbytes = sum(map(len, enc_t)) + sum(map(len, enc_v))
    emit("bytes_per_sample", nbytes / total, "bytes", what="chunk vectors", **ctx)
    per_kind: dict[str, list[int]] = {}
    rows = n_series * n // len(enc_t)
    for k, bt, bv in zip(kind_of, enc_t, enc_v, strict=True):
        acc = per_kind.setdefault(k, [0, 0, 0])
        acc[0] += len(bt)
        acc[1] += len(bv)
        acc[2] += rows
    for k, (bt, bv, cnt) in sorted(per_kind.items()):
        emit("bytes_per_sample", (bt + bv) / cnt, "bytes", what="chunk vectors", kind=k,
             timestamps=round(bt / cnt, 3), values=round(bv / cnt, 3), **ctx)  # fmt: skip
    return nbytes / total


def batches(series: list, ts: np.ndarray, vals: np.ndarray, k: int = 20) -> list[SampleBatch]:
    n_series, n = vals.shape
    out = []
    for a in range(0, n, k):
        b = min(n, a + k)
        out.append(SampleBatch(series, np.repeat(np.arange(n_series), b - a), ts[:, a:b].ravel(),
                               vals[:, a:b].ravel()))  # fmt: skip
    return out


def _disk_bytes(root: str) -> int:
    return sum(f.stat().st_size for f in Path(root).rglob("*") if f.is_file())


def _at_rest(shard: TimeSeriesShard) -> tuple[int, float]:
    """Flush every group of ``shard`` into a fresh SQLite store, close it cleanly (the WAL is
    checkpointed away), and return (bytes of its files, flush seconds)."""
    with tempfile.TemporaryDirectory() as d:
        cs, meta = open_store("sqlite", d)
        cs.initialize("bench", 1)
        t = time.perf_counter()
        flush_all(shard, cs, meta)
        took = time.perf_counter() - t
        cs.close()
        meta.close()
        return _disk_bytes(d), took


def ingest_and_disk(series: list, ts: np.ndarray, vals: np.ndarray, kinds: list[str],
                    ctx: dict) -> float:  # fmt: skip
    bs = batches(series, ts, vals)
    total = sum(len(b) for b in bs)
    shard = TimeSeriesShard("bench", 0, max_chunk_samples=CHUNK)
    t = time.perf_counter()
    for off, b in enumerate(bs, 1):
        shard.ingest(b, off)
    emit("ingest_samples_per_s", total / (time.perf_counter() - t), "samples/s", **ctx)
    disk, took = _at_rest(shard)
    emit("flush_samples_per_s", total / took, "samples/s", **ctx)
    emit("bytes_per_sample_at_rest", disk / total, "bytes", what="SQLite files after a flush "
         "and a clean close", **ctx)  # fmt: skip
    emit("bytes_per_sample", disk / total, "bytes", what="on disk (SQLite)", **ctx)
    kind_arr = np.array(kinds)
    for k in sorted(set(kinds)):  # each kind alone in its own store
        rows = np.flatnonzero(kind_arr == k)
        sub = TimeSeriesShard("bench", 0, max_chunk_samples=CHUNK)
        for off, b in enumerate(batches([series[i] for i in rows], ts[rows], vals[rows]), 1):
            sub.ingest(b, off)
        kd, _ = _at_rest(sub)
        emit("bytes_per_sample_at_rest", kd / vals[rows].size, "bytes", kind=k, **ctx)
    return disk / total


def paged_figures(series: list, ts: np.ndarray, vals: np.ndarray, ctx: dict) -> None:
    """One select over everything of a shard that holds none of it (flushed to SQLite and
    evicted): the first reads the store and fills the page cache, the second is served from
    it; beside them the same select on a shard holding every chunk in memory (each best of 3)."""
    from filodb.node.flush import make_pager

    bs = batches(series, ts, vals)
    name = Matcher("__name__", "=~", "bench_.*")
    lo, hi = int(ts.min()), int(ts.max())
    with tempfile.TemporaryDirectory() as d:
        cs, meta = open_store("sqlite", d)
        cs.initialize("bench", 1)
        mem = TimeSeriesShard("bench", 0, max_chunk_samples=CHUNK)
        paged = TimeSeriesShard("bench", 0, max_chunk_samples=CHUNK, memory_budget=1,
                                pager=make_pager(cs, "bench", 0))  # fmt: skip
        for off, b in enumerate(bs, 1):
            mem.ingest(b, off)
            paged.ingest(b, off)
        flush_all(paged, cs, meta)
        for s in (mem, paged):  # close the write buffers of both alike
            for g in range(s.num_groups):
                s.prepare_flush(g)
        assert paged.stats()["chunks"] == 0
        times = {"first": 1e9, "second": 1e9}
        for _ in range(3):  # best of 3, the page cache emptied before each first
            paged._page_cache.forget()
            for what in ("first", "second"):
                t = time.perf_counter()
                n = len(paged.select([name], lo, hi).ts)
                times[what] = min(times[what], time.perf_counter() - t)
        best = 1e9
        for _ in range(3):
            t = time.perf_counter()
            n_mem = len(mem.select([name], lo, hi).ts)
            best = min(best, time.perf_counter() - t)
        assert n == n_mem == vals.size
        cs.close()
        meta.close()
    for what, took in times.items():
        emit("paged_select_ms", 1000 * took, "ms", query=what, samples=n,
             **{k: v for k, v in ctx.items() if k != "samples"})  # fmt: skip
    emit("paged_select_ms", 1000 * best, "ms", query="in memory", samples=n,
         **{k: v for k, v in ctx.items() if k != "samples"})  # fmt: skip


def noisy_gauges(n_series: int, n: int, ctx: dict) -> None:
    """Chunk vectors of gauges with no short decimal form (ratios, averages, load: what falls
    back to raw without XOR), codec only; not part of the exporter-like workload above."""
    rng = np.random.default_rng(7)
    walk = np.cumsum(rng.normal(0, 0.01, (n_series, n)), axis=1)
    kinds = {
        "noisy_gauge_walk": 0.5 + walk,  # a random walk of full-precision floats
        "noisy_gauge_ratio": rng.random((n_series, n)) * 0.2 + 0.4,  # white noise in [0.4, 0.6)
        "noisy_gauge_avg": np.round(rng.random((n_series, 1)) * 100, 0) / 3.0 + 0 * walk,
    }
    for k, v in kinds.items():
        nb_ = sum(len(encode_doubles(v[i, a : a + CHUNK])) for i in range(n_series)
                  for a in range(0, n, CHUNK))  # fmt: skip
        emit("bytes_per_sample", nb_ / v.size, "bytes", what="value vectors only", kind=k, **ctx)


def rss_child(n_series: int, n_samples: int) -> None:
    """In a fresh process: RSS growth of one memstore holding every series (printed)."""
    series, ts, vals, _ = data(n_series, n_samples)
    bs = batches(series, ts, vals)
    del ts, vals
    import gc

    warm = TimeSeriesShard("warm", 0, max_chunk_samples=2)  # load the codec kernels first
    warm.ingest(SampleBatch(series[:1], np.zeros(3, np.int64), np.arange(3), np.arange(3.0)), 1)
    warm.select([Matcher("__name__", "=", series[0][0][1])], 0, 10)
    del warm
    gc.collect()
    before = _rss()
    shard = TimeSeriesShard("bench", 0, max_chunk_samples=CHUNK)
    for off, b in enumerate(bs, 1):
        shard.ingest(b, off)
    gc.collect()  # the batches stay alive: only the memstore's growth is measured
    print(orjson.dumps({"rss": _rss() - before, "series": shard.num_series}).decode())


def index_figures(n: int) -> None:
    """Tag-index lookups at ``n`` series in one shard: each matcher kind, warm (median of 5)."""
    from filodb.memstore.index import TagIndex

    idx = TagIndex()
    for i in range(n):
        idx.add(i, (("__name__", f"m{i % 100}"), ("instance", f"i{i % 10000}"), ("job", f"job{i % 50}"),
                    ("pod", f"p{i}")))  # fmt: skip
    cases = {
        "eq": [Matcher("__name__", "=", "m7")],
        "eq_and_neq": [Matcher("__name__", "=", "m7"), Matcher("job", "!=", "job8")],
        "regex": [Matcher("__name__", "=~", "m1.*")],
        "eq_and_not_regex": [Matcher("__name__", "=", "m7"), Matcher("instance", "!~", "i1.*")],
        "neq_only": [Matcher("job", "!=", "job1")],
    }
    for name, ms in cases.items():
        times = []
        for _ in range(6):
            t = time.perf_counter()
            got = idx.match(ms)
            times.append(time.perf_counter() - t)
        emit(
            "index_match_ms",
            1000 * sorted(times[1:])[2],
            "ms",
            matchers=name,
            series=n,
            matched=len(got),
        )


def _pid_rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peers_disk(series: list, ts: np.ndarray, vals: np.ndarray, ctx: dict, filodb_bps: float,
               filodb_disk_bps: float) -> None:  # fmt: skip
    n_series, n = vals.shape
    total = n_series * n
    k = max(10, 200_000 // n_series)
    bodies = []
    for a in range(0, n, k):  # time-major, as scrapers send
        b = min(n, a + k)
        batch = SampleBatch(
            series, np.repeat(np.arange(n_series), b - a), ts[:, a:b].ravel(), vals[:, a:b].ravel()
        )
        bodies.append(encode_write_request(batch))
    with tempfile.TemporaryDirectory() as d:
        for kind in ("prometheus", "victoria-metrics"):
            peer = Peer(kind, Path(d), admin=True)
            try:
                base_rss = _pid_rss(peer.proc.pid)
                push(peer.write_url, bodies)
                time.sleep(2)
                emit("peer_rss_bytes_per_series", (_pid_rss(peer.proc.pid) - base_rss) / n_series, "bytes",
                     peer=kind, **ctx)  # fmt: skip
                if kind == "prometheus":
                    r = requests.post(peer.base + "/api/v1/admin/tsdb/snapshot", timeout=600)
                    snap = Path(d) / kind / "tsdb" / "snapshots" / r.json()["data"]["name"]
                    size = sum(f.stat().st_size for f in snap.rglob("*") if f.is_file())
                else:
                    requests.get(peer.base + "/internal/force_flush", timeout=600)
                    requests.get(peer.base + "/internal/force_merge", timeout=600)
                    time.sleep(5)
                    data_dir = Path(d) / kind / "vm" / "data"
                    size = sum(f.stat().st_size for f in data_dir.rglob("*") if f.is_file())
                bps = size / total
                emit("peer_bytes_per_sample", bps, "bytes", peer=kind, **ctx)
                emit(
                    "bytes_per_sample_ratio",
                    filodb_bps / bps,
                    "filodb/peer",
                    peer=kind,
                    filodb="chunk vectors",
                    **ctx,
                )
                emit("bytes_per_sample_ratio", filodb_disk_bps / bps, "filodb/peer", peer=kind,
                     filodb="on disk (SQLite)", **ctx)  # fmt: skip
            finally:
                peer.stop()


def main() -> None:
    global CHUNK
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--quick", action="store_true", help="2 000 series x 1 h, no peers")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--index-series", type=int, default=1_000_000)
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--chunk", type=int, default=480, help="rows per chunk (max_chunk_samples)")
    ap.add_argument("--bytes-only", action="store_true", help="skip the RSS and index figures")
    ap.add_argument("--rss-child", nargs=3, type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    CHUNK = a.chunk
    if a.rss_child:
        CHUNK = a.rss_child[2]
        rss_child(*a.rss_child[:2])
        return
    if a.quick:
        a.series, a.hours, a.no_peers, a.index_series = 2000, 1.0, True, 100_000
    n = int(a.hours * 3600 / a.interval)
    series, ts, vals, kinds = data(a.series, n, interval_ms=int(a.interval * 1000))
    ctx = {
        "series": len(series),
        "hours": a.hours,
        "interval_s": a.interval,
        "samples": int(vals.size),
        "chunk_rows": CHUNK,
    }
    bps = codec_figures(ts, vals, kinds, ctx)
    noisy_gauges(min(a.series, 1000), n, ctx)
    disk_bps = ingest_and_disk(series, ts, vals, kinds, ctx)
    paged_figures(series, ts, vals, ctx)
    if a.bytes_only:
        if not a.no_peers:
            peers_disk(series, ts, vals, ctx, bps, disk_bps)
        return
    out = subprocess.run([sys.executable, __file__, "--rss-child", str(a.series), str(n), str(CHUNK)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    got = orjson.loads(out.stdout.strip().splitlines()[-1])
    emit("rss_bytes_per_series", got["rss"] / got["series"], "bytes", **ctx)
    index_figures(a.index_series)
    if not a.no_peers:
        peers_disk(series, ts, vals, ctx, bps, disk_bps)


if __name__ == "__main__":
    main()
