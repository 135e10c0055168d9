"""``deriv`` and ``predict_linear`` equal a real Prometheus 2.42's answers bit for bit (``==`` on
the floats, not approx) on random data: series of several magnitudes, jittered timestamps, a
constant series and one with a step. Prometheus reads the same samples from blocks written by
``promtool tsdb create-blocks-from openmetrics``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from filodb.model.labels import make_labels
from filodb.query.engine import Engine
from filodb.query.memsource import MemorySource
from filodb.testing.prometheus import PROMTOOL, PromServer, need

T0 = 1_700_000_000_000  # ms; steps fall on whole seconds, samples never do
N = 400


def _series(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    k = np.arange(N)
    ms = rng.integers(1, 999, N)  # never on a second: 2.42's closed windows and ours agree
    ts = T0 + k * 15_000 + rng.integers(0, 14, N) * 1000 + ms
    out = {}
    for i, scale in enumerate([1e-3, 1.0, 1e3, 1e9, 1e15]):
        vals = np.cumsum(rng.normal(0, 1, N)) * scale + rng.uniform(-1, 1) * scale * 50
        out[f"s{i}"] = (ts, vals)
    out["counter"] = (ts, np.cumsum(rng.integers(0, 100, N)).astype(np.float64))
    out["const"] = (ts, np.full(N, 3.7))
    out["stepped"] = (ts, np.where(k < N // 2, 1.0, 2.5))
    out["tiny"] = (ts, 1e-300 * rng.uniform(1, 2, N))
    return out


def _openmetrics(data: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    lines = ["# TYPE m gauge"]
    for name, (ts, vals) in data.items():
        lines += [f'm{{s="{name}"}} {float(v)!r} {t // 1000}.{t % 1000:03d}'
                  for t, v in zip(ts.tolist(), vals.tolist(), strict=True)]  # fmt: skip
    return "\n".join([*lines, "# EOF", ""])


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    need(PROMTOOL)
    home: Path = tmp_path_factory.mktemp("prom")
    data = _series(np.random.default_rng(20261130))
    om = home / "data.om"
    om.write_text(_openmetrics(data))
    subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(om), str(home / "tsdb")],
                   check=True, capture_output=True)  # fmt: skip
    src = MemorySource()
    for name, (ts, vals) in data.items():
        src.add(make_labels({"__name__": "m", "s": name}), ts, vals)
    prom = PromServer(home, {"global": {"scrape_interval": "1h"}}).start()
    yield prom, src
    prom.stop()


def _prom_matrix(prom: PromServer, q: str, start: int, end: int, step: int) -> dict:
    data = prom.get("/api/v1/query_range", query=q, start=start / 1000, end=end / 1000,
                    step=step / 1000)  # fmt: skip
    return {r["metric"]["s"]: {int(round(float(t) * 1000)): float(v) for t, v in r["values"]}
            for r in data["result"]}  # fmt: skip


def _ours(src: MemorySource, q: str, start: int, end: int, step: int) -> dict:
    res = Engine(src).range(q, start, end, step)
    return {dict(lb)["s"]: dict(zip(ts.tolist(), vs.tolist(), strict=True))
            for lb, ts, vs in res.series}  # fmt: skip


def _same(a: float, b: float) -> bool:
    """Equal bits (so -0.0 is not 0.0), or both NaN (payloads differ between Go and numpy)."""
    if np.isnan(a) or np.isnan(b):
        return bool(np.isnan(a) and np.isnan(b))
    return bool(np.float64(a).view(np.uint64) == np.float64(b).view(np.uint64))


@pytest.mark.parametrize("q", [
    "deriv(m[5m])", "deriv(m[1h])", "deriv(m[47s])", "predict_linear(m[5m], 600)",
    "predict_linear(m[30m], -3600.5)", "deriv(m[10m] offset 7m)",
    "predict_linear(m[20m] offset 3m, 120)",
])  # fmt: skip
def test_equal_to_prometheus_bit_for_bit(loaded, q: str) -> None:  # type: ignore[no-untyped-def]
    prom, src = loaded
    start, end, step = T0 + 600_000, T0 + (N - 2) * 15_000, 37_000
    want = _prom_matrix(prom, q, start, end, step)
    got = _ours(src, q, start, end, step)
    assert want.keys() == got.keys()
    assert sum(len(v) for v in want.values()) > 100
    for s, pts in want.items():
        assert got[s].keys() == pts.keys(), s
        diff = [(t, v, got[s][t]) for t, v in pts.items() if not _same(v, got[s][t])]
        assert not diff, f"{q} {s}: {len(diff)} of {len(pts)} differ, e.g. {diff[:3]}"
