"""Downsampling: job throughput, ds storage, and a 30-day query from raw vs downsampled data.

Prints one JSON object per line (``{"metric", "value", "unit", ...}``):

- ``downsample_raw_samples_per_s``: raw samples read / wall time of the job (``mode``:
  ``in-process`` over the whole range; ``local[2]`` over the first ``--spark-days`` days when
  the spark extra is installed);
- ``ds_storage_ratio``: bytes of each ds level / raw bytes of the same samples, per ``level``
  and ``total`` (``bytes``: ``vectors``, the encoded columns as the store is handed them, and
  ``disk``, the SQLite files: zstd, rows, indexes, part keys); aim under 5 %;
- ``query_30d_ms_raw`` / ``query_30d_ms_downsampled``: p50 latency (``cold_ms``: the first
  run after the start, chunks paged from the files) over HTTP on a real
  ``filodb up`` of ``sum by (job) (rate(node_cpu_seconds_total[5m]))`` over the whole range at
  a 1 h step: on dataset ``raw`` (every sample kept, no levels) vs dataset ``m`` (the same
  samples; raw kept ``--raw-keep`` days, levels ``--levels`` kept ``--keep`` days, so the
  long-range planner answers from raw, the 5 m and the 1 h level); ``query_speedup`` is their
  ratio (aim: 20x), with ``max_rel_diff`` between the two answers (they differ: a ds tier
  widens ``[5m]`` to two resolutions); ``worker_peak_rss_mb``: the worker's peak resident
  memory after the first downsampled query, then after the first raw one (paging 30 days).
  The repeats alternate the two queries, so that both see the same load.

    python bench/downsample.py            # 1 k series x 30 days at 15 s (173 M samples)
    python bench/downsample.py --quick    # 100 series x 3 days, about a minute
    python bench/downsample.py --quick --levels 1,5,15,60 --keep 1,2,2,0   # other levels

Data: ``filodb gen``'s exporter-shaped workload (``filodb.tools.generate.Workload``: 32 series
per instance, half of them ``node_cpu_seconds_total``), ending now, generated with numpy and
written per shard straight into the SQLite column store as encoded 480-sample chunks (as
flushes write them); remote write would take an hour for that volume. The job then runs over
``m``; ``raw`` is a copy of ``m``'s raw files; what retention would have deleted from ``m`` and
its levels is deleted before ``filodb up`` starts (results cache off, default page cache).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import requests  # noqa: E402

from filodb.downsample.job import run_local, shard_tasks, window_ms  # noqa: E402
from filodb.encoding import encode_many  # noqa: E402
from filodb.model.partkey import part_key  # noqa: E402
from filodb.redisproc import free_port  # noqa: E402
from filodb.shards.redis_map import ShardMapStore  # noqa: E402
from filodb.store import ChunkSet, PartKeyRecord, open_store  # noqa: E402
from filodb.testing.cluster import UpProcess, children_of, cmdline  # noqa: E402
from filodb.testing.wait import wait_for  # noqa: E402
from filodb.tools.generate import Workload  # noqa: E402

DAY, HOUR, STEP, SHARDS, CHUNK = 86_400_000, 3_600_000, 15_000, 4, 480
QUERY = "sum by (job) (rate(node_cpu_seconds_total[5m]))"


def emit(metric: str, value: float, unit: str, **extra: object) -> None:
    print(
        json.dumps({"metric": metric, "value": round(value, 3), "unit": unit, **extra}), flush=True
    )


def generate(col, series: int, days: int, t0: int) -> int:  # type: ignore[no-untyped-def]
    """``series`` x ``days`` of 15 s samples after ``t0`` into dataset ``m``, a day at a time:
    the day's values in one numpy block, its chunks encoded in one call, one write per shard."""
    w = Workload(series, seed=1)
    pks = [part_key(lb) for lb in w.series]
    shard = [i % SHARDS for i in range(series)]
    col.initialize("m", SHARDS)
    per_day = DAY // STEP
    starts = np.arange(0, per_day, CHUNK)
    offs = np.append(starts, per_day)
    for d in range(days):
        vals = w.next_values(per_day)
        ts = t0 + d * DAY + STEP * np.arange(1, per_day + 1, dtype=np.int64)
        tvec, _ = encode_many(ts, vals[0], offs)  # every series shares the day's timestamps
        by_shard: dict[int, list[ChunkSet]] = {}
        flat = vals.reshape(-1)
        _, vvec = encode_many(
            np.tile(ts, series),
            flat,
            np.append(
                (np.arange(series)[:, None] * per_day + starts[None, :]).reshape(-1), len(flat)
            ),
        )
        tfirst, tlast = ts[starts].tolist(), ts[offs[1:] - 1].tolist()
        rows = np.diff(offs).tolist()
        k = 0
        for i, pk in enumerate(pks):
            out = by_shard.setdefault(shard[i], [])
            for c in range(len(starts)):
                out.append(
                    ChunkSet(pk, tfirst[c], tfirst[c], tlast[c], rows[c], (tvec[c], vvec[k]))
                )
                k += 1
        for s, chunks in by_shard.items():
            col.write_chunks("m", s, chunks)
    end = t0 + days * DAY
    for s in range(SHARDS):
        col.write_part_keys("m", s, [PartKeyRecord(pk, t0 + STEP, end)
                                     for i, pk in enumerate(pks) if shard[i] == s])  # fmt: skip
    return series * days * per_day


def disk_bytes(root: Path, dataset: str) -> int:
    return sum(f.stat().st_size for f in (root / "store" / dataset).glob("shard-*"))


def storage(col, root: Path, levels: dict[int, str], label: str, share: float) -> None:  # type: ignore[no-untyped-def]
    """``ds_storage_ratio`` per level and in total, in vector bytes and in file bytes. The job
    covers whole days only (``share`` of the raw samples: the partial first and last day are
    left out), so the raw side is that share of the raw bytes."""
    vec = {
        n: sum(col.stats(n, s)["vector_bytes"] for s in range(SHARDS))
        for n in ["m", *levels.values()]
    }
    col.close()  # the files, checkpointed, as they stay on disk
    disk = {n: disk_bytes(root, n) for n in vec}
    for kind, got in (("vectors", vec), ("disk", disk)):
        raw = got["m"] * share
        for r, n in levels.items():
            emit("ds_storage_ratio", 100 * got[n] / raw, "%", level=f"{r // 60_000}m",
                 bytes=kind, levels=label, ds_bytes=got[n], raw_bytes=round(raw),
                 raw_share=round(share, 4))  # fmt: skip
        total = sum(got[n] for n in levels.values())
        emit("ds_storage_ratio", 100 * total / raw, "%", level="total", bytes=kind,
             levels=label, ds_bytes=total, raw_bytes=round(raw), raw_share=round(share, 4))  # fmt: skip


def expire(col, root: Path, now: int, raw_keep_ms: int, levels: dict[int, str],  # type: ignore[no-untyped-def]
           keep_ms: dict[int, int]) -> None:  # fmt: skip
    """Copy ``m``'s raw files to ``raw``; delete from ``m`` and its levels what their retention
    would have deleted by ``now`` (the nodes' retention pass does the same)."""
    shutil.copytree(root / "store" / "m", root / "store" / "raw")
    col.initialize("raw", SHARDS)
    for s in range(SHARDS):
        col.delete_before("m", s, now - raw_keep_ms)
        for r, n in levels.items():
            if keep_ms[r]:
                col.delete_before(n, s, now - keep_ms[r])


def get(url: str, **params: object) -> requests.Response:
    r = requests.get(url, params=params, timeout=600)
    if r.status_code != 200:
        raise RuntimeError(f"{url}: {r.status_code} {r.text[:500]}")
    return r


def matrix(r: requests.Response) -> dict[str, dict[float, float]]:
    return {json.dumps(s["metric"], sort_keys=True): {t: float(v) for t, v in s["values"]}
            for s in r.json()["data"]["result"]}  # fmt: skip


def max_rel_diff(a: dict[str, dict[float, float]], b: dict[str, dict[float, float]]) -> float:
    """The largest relative difference between two answers at the steps both have."""
    pairs = np.array([(v, b[k][t]) for k, s in a.items() if k in b for t, v in s.items()
                      if t in b[k]], float).reshape(-1, 2)  # fmt: skip
    return float(
        np.max(
            np.abs(pairs[:, 0] - pairs[:, 1]) / np.maximum(np.abs(pairs[:, 0]), 1e-12), initial=0.0
        )
    )


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    with open(f"/proc/{pid}/status") as fh:
        kb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM"))
    return kb / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--levels", default="5,60", help="resolutions in minutes, finest first")
    ap.add_argument("--keep", default="7,0", help="days each level is kept (0: forever)")
    ap.add_argument("--raw-keep", type=float, default=1.0, help="days of raw data m keeps")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--spark", default="local[2]", help="Spark master for a second run ('' skips)")
    ap.add_argument("--spark-days", type=int, default=3, help="days the Spark run covers")
    ap.add_argument("--quick", action="store_true", help="100 series x 3 days, no Spark")
    a = ap.parse_args()
    if a.quick:
        a.series, a.days, a.repeat, a.spark = 100, 3, 3, ""
        if a.keep == "7,0":  # the default levels' keep, shortened to the 3 days
            a.keep = "2,0"
    res = tuple(int(m) * 60_000 for m in a.levels.split(","))
    keep_ms = {r: int(float(k) * DAY) for r, k in zip(res, a.keep.split(","), strict=True)}
    levels = {r: f"m_ds_{r // 60_000}" for r in res}
    label = ",".join(f"{r // 60_000}m:" + (f"{keep_ms[r] / DAY:g}d" if keep_ms[r] else "forever")
                     for r in res) + f"; raw {a.raw_keep:g}d"  # fmt: skip
    end = int(time.time() * 1000) // STEP * STEP
    t0 = end - a.days * DAY
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "data"
        stores = open_store("sqlite", root)
        col = stores.column
        t = time.perf_counter()
        n = generate(col, a.series, a.days, t0)
        emit("generate_samples_per_s", n / (time.perf_counter() - t), "samples/s", raw_samples=n)
        spec = {"kind": "sqlite", "data_dir": str(root), "options": {}}
        win = window_ms(res)
        done = end // win * win
        tasks = shard_tasks(spec, "m", SHARDS, t0, done, res)
        warm = shard_tasks(spec, "m", SHARDS, t0 - win, t0 + 1, res)
        run_local(warm[:1])  # numba compilation out of the timing (no whole window: no work)
        t = time.perf_counter()
        got = run_local(tasks)
        secs = time.perf_counter() - t
        emit("downsample_raw_samples_per_s", sum(r["raw_samples"] for r in got) / secs, "samples/s",
             mode="in-process", series=a.series, days=a.days, seconds=round(secs, 1))  # fmt: skip
        if a.spark:
            spark_run(a, spec, t0, res)
        storage(col, root, levels, label, sum(r["raw_samples"] for r in got) / n)
        stores = open_store("sqlite", root)
        expire(stores.column, root, end, int(a.raw_keep * DAY), levels, keep_ms)
        stores.close()
        query(a, root, res, keep_ms, t0, end, done)


def spark_run(a: argparse.Namespace, spec: dict, t0: int, res: tuple[int, ...]) -> None:
    from filodb.downsample.job import downsample_shard

    try:
        from filodb.spark.runner import run_tasks

        win = window_ms(res)
        tasks = shard_tasks(
            spec, "m", SHARDS, t0 // win * win, t0 + a.spark_days * DAY, res, None, DAY
        )
        t = time.perf_counter()
        got = run_tasks(a.spark, downsample_shard, tasks)
        secs = time.perf_counter() - t
        emit("downsample_raw_samples_per_s", sum(r["raw_samples"] for r in got) / secs, "samples/s",
             mode=a.spark, series=a.series, days=a.spark_days)  # fmt: skip
    except Exception as e:  # noqa: BLE001 - the extra is optional
        print(json.dumps({"skipped": f"spark run: {e}"}), file=sys.stderr)


def query(a: argparse.Namespace, root: Path, res: tuple[int, ...], keep_ms: dict[int, int],
          t0: int, end: int, done: int) -> None:  # fmt: skip
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    env = {"FILODB_REDIS_URL": redis_url, "FILODB_QUERY_CACHE_MB": "0",
           "FILODB_MAX_SAMPLES": str(2_000_000_000)}  # fmt: skip
    up = UpProcess(root, shards=SHARDS, env=env).start(180)
    try:
        levels = [{"resolution": f"{r // 60_000}m", "retention": f"{keep_ms[r] // 1000}s"}
                  for r in res]  # fmt: skip
        for name, body in (("raw", {"shards": SHARDS, "retention": 0}),
                           ("m", {"shards": SHARDS, "retention": f"{int(a.raw_keep * DAY) // 1000}s",
                                  "downsample": levels})):  # fmt: skip
            r = requests.post(f"{up.url}/api/v1/cluster/{name}", json=body, timeout=60)
            assert r.status_code == 200, r.text
        ShardMapStore(redis_url).mark_downsampled("m", done)
        names = ["raw", "m", *(f"m_ds_{r // 60_000}" for r in res)]

        def active() -> bool:
            rows = [s for n in names for s in requests.get(
                f"{up.url}/api/v1/cluster/{n}/status", timeout=10).json()["data"]]  # fmt: skip
            return len(rows) == SHARDS * len(names) and all(s["status"] == "Active" for s in rows)

        wait_for(active, 300, "every shard active", up.log_tail)
        q0, q1 = (t0 + HOUR) // HOUR * HOUR // 1000, end // HOUR * HOUR // 1000
        params = {"query": QUERY, "start": q0, "end": q1, "step": 3600}
        workers = [p for p in children_of(up.proc.pid) if " worker" in cmdline(p)]
        urls = {name: f"{up.url}/promql/{ds}/api/v1/query_range"
                for name, ds in (("downsampled", "m"), ("raw", "raw"))}  # fmt: skip
        cold, answers, tiers = {}, {}, {}
        for name, url in urls.items():  # the first run of each pages its chunks in
            t = time.perf_counter()
            first = get(url, **params)
            cold[name] = (time.perf_counter() - t) * 1000
            answers[name] = matrix(first)
            tiers[name] = first.headers.get("X-Filodb-Resolution", "raw")
            emit("worker_peak_rss_mb", sum(peak_rss_mb(p) for p in workers), "MB", after=name)
        lat: dict[str, list[float]] = {name: [] for name in urls}
        for _ in range(a.repeat):  # interleaved: both see the same load on a shared machine
            for name, url in urls.items():
                t = time.perf_counter()
                get(url, **params)
                lat[name].append((time.perf_counter() - t) * 1000)
        times = {name: statistics.median(v) for name, v in lat.items()}
        for name in urls:
            emit(f"query_30d_ms_{name}", times[name], "ms", days=a.days, series=a.series,
                 steps=(q1 - q0) // 3600 + 1, cold_ms=round(cold[name]), tiers=tiers[name])  # fmt: skip
        emit("query_speedup", times["raw"] / times["downsampled"], "x",
             max_rel_diff=max_rel_diff(answers["raw"], answers["downsampled"]),
             same_series=sorted(answers["raw"]) == sorted(answers["downsampled"]))  # fmt: skip
    finally:
        up.stop()


if __name__ == "__main__":
    main()
