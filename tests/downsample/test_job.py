"""The downsample job on a real SQLite store: values against plain reference implementations,
rate/increase with resets, idempotency, a killed run rerun."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from filodb.downsample.job import COL_LABEL
from filodb.model.labels import Labels
from filodb.query.distributed import DistributedEngine, LocalShards
from filodb.testing.downsample import DAY, DAYS, RES, START, Raw, dump, memstore, read_ds, write_raw


def _with(lb: Labels, col: str) -> Labels:
    return tuple(sorted((*lb, (COL_LABEL, col))))


def _ref_gauge(ts: np.ndarray, vals: np.ndarray, res: int) -> dict[int, list[float]]:
    """Plain loop: period end -> its samples, for the whole windows the job ran over."""
    out: dict[int, list[float]] = {}
    for t, v in zip(ts.tolist(), vals.tolist(), strict=True):
        out.setdefault(-(-t // res) * res, []).append(v)
    return out


def _ref_counter(ts: np.ndarray, vals: np.ndarray, res: int) -> list[int]:
    """Plain loop: indices kept: last of each period, both sides of each reset."""
    keep = set()
    for i in range(len(ts)):
        last = i == len(ts) - 1 or -(-ts[i] // res) != -(-ts[i + 1] // res)
        if last:
            keep.add(i)
        if i and vals[i] < vals[i - 1]:
            keep |= {i - 1, i}
    return sorted(keep)


def test_gauges_and_counters_equal_the_reference(raw: Raw) -> None:
    raw.run()
    for res in RES:
        got = read_ds(raw.stores, f"m_ds_{res // 60_000}")
        for lb, (ts, vals) in raw.series.items():
            if lb[0][1] == "req_total":
                keep = _ref_counter(ts, vals, res)
                gts, gv = got[_with(lb, "last")]
                assert gts.tolist() == ts[keep].tolist() and gv.tolist() == vals[keep].tolist()
                assert not any(_with(lb, c) in got for c in ("min", "avg"))
                continue
            ref = _ref_gauge(ts, vals, res)
            ends = sorted(ref)
            for col, fn in (("min", min), ("max", max), ("sum", sum), ("count", len)):
                gts, gv = got[_with(lb, col)]
                assert gts.tolist() == ends
                assert gv.tolist() == [float(fn(ref[e])) for e in ends], (res, col)
            gts, gv = got[_with(lb, "avg")]
            assert gv.tolist() == [sum(ref[e]) / len(ref[e]) for e in ends]


def _ref_increase(ts: np.ndarray, vals: np.ndarray, res: int, lo: int, hi: int) -> float:
    """Prometheus's extrapolated increase over ``(lo, hi]`` of the series at resolution
    ``res``, its counter resets corrected from *every raw sample* (not the kept ones)."""
    adj = vals.astype(float).copy()  # the reset-corrected raw counter
    add = 0.0
    for i in range(len(vals)):
        if i and vals[i] < vals[i - 1]:
            add += vals[i - 1]
        adj[i] = vals[i] + add
    idx = [i for i in _ref_counter(ts, vals, res) if lo < ts[i] <= hi]
    t0, t1 = ts[idx[0]] / 1000, ts[idx[-1]] / 1000
    result = adj[idx[-1]] - adj[idx[0]]
    sampled = t1 - t0
    avg = sampled / (len(idx) - 1)
    to_start, to_end = t0 - lo / 1000, hi / 1000 - t1
    if result > 0 and vals[idx[0]] >= 0:
        to_start = min(to_start, sampled * (vals[idx[0]] / result))
    ext = sampled + (to_start if to_start < avg * 1.1 else avg / 2)
    ext += to_end if to_end < avg * 1.1 else avg / 2
    return result * ext / sampled


@pytest.mark.parametrize("fn", ["increase", "rate"])
def test_rate_and_increase_over_7_days_equal_raw_at_the_resolution(raw: Raw, fn: str) -> None:
    raw.run()
    t = START + DAYS * DAY
    for res in RES:
        ds = f"m_ds_{res // 60_000}"
        eng = DistributedEngine(LocalShards([memstore(raw.stores, ds, s) for s in range(2)]))
        got = eng.instant(f'{fn}(req_total{{{COL_LABEL}="last"}}[7d])', t)
        assert len(got.series) == 2
        for lb, _ts, v in got.series:
            host = dict(lb)["host"]
            ts, vals = next(
                sv
                for k, sv in raw.series.items()
                if dict(k) == {"__name__": "req_total", "host": host}
            )
            ref = _ref_increase(ts, vals, res, t - 7 * DAY, t)
            ref = ref / (7 * 86400) if fn == "rate" else ref
            assert math.isclose(float(v[0]), ref, rel_tol=1e-9), (res, host, float(v[0]), ref)
        resets = eng.instant(f'resets(req_total{{{COL_LABEL}="last"}}[7d])', t)
        for lb, _ts, v in resets.series:
            ts, vals = next(
                sv
                for k, sv in raw.series.items()
                if dict(k) == {"__name__": "req_total", "host": dict(lb)["host"]}
            )
            m = (ts > t - 7 * DAY) & (ts <= t)
            assert float(v[0]) == float(np.count_nonzero(np.diff(vals[m]) < 0))


def test_running_twice_changes_nothing(raw: Raw) -> None:
    first = raw.run()
    assert sum(r["ds_samples"] for r in first) > 0
    before = {ds: dump(raw.stores, ds) for ds in ("m_ds_1", "m_ds_5")}
    raw.run()
    raw.run(START + 2 * DAY, START + 3 * DAY)  # an overlapping range: the same windows again
    assert {ds: dump(raw.stores, ds) for ds in ("m_ds_1", "m_ds_5")} == before


_KILLER = """
import os, signal, sys
from filodb.store.sqlite import SqliteColumnStore
from filodb.downsample.job import run_local, shard_tasks
calls = [0]
orig = SqliteColumnStore.write_part_keys
def write_part_keys(self, *a, **k):
    calls[0] += 1
    if calls[0] == int(sys.argv[2]):  # killed between the chunks and the part keys of a window
        os.kill(os.getpid(), signal.SIGKILL)
    return orig(self, *a, **k)
SqliteColumnStore.write_part_keys = write_part_keys
spec = {"kind": "sqlite", "data_dir": sys.argv[1], "options": {}}
run_local(shard_tasks(spec, "m", 2, %d, %d, %r))
"""


def test_a_run_killed_halfway_and_rerun_gives_the_same_result(raw: Raw, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    from filodb.store import open_store

    clean_dir = tmp_path_factory.mktemp("clean")
    clean = open_store("sqlite", clean_dir)
    write_raw(clean, raw.series)
    Raw(clean_dir, clean, raw.series).run()
    script = _KILLER % (START, START + DAYS * DAY, RES)
    p = subprocess.run([sys.executable, "-c", script, str(raw.data_dir), "9"], timeout=600)
    assert p.returncode == -9  # it died halfway
    assert (
        0
        < sum(raw.stores.column.stats("m_ds_1", s)["chunks"] for s in range(2))
        < sum(clean.column.stats("m_ds_1", s)["chunks"] for s in range(2))
    )
    raw.run()
    for ds in ("m_ds_1", "m_ds_5"):
        assert dump(raw.stores, ds) == dump(clean, ds)
    clean.close()
