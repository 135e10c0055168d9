"""Queries across resolutions: raw, then two downsampled levels, stitched without gaps or
double counting, against plain references over the raw samples."""

from __future__ import annotations

import numpy as np
import pytest

from filodb.query.distributed import DistributedEngine, LocalShards
from filodb.query.longrange import Tier, plan_range, rewrite_for_ds, stitch
from filodb.query.parser import parse
from filodb.query.printer import to_string
from filodb.testing.downsample import DAY, DAYS, START, Raw, memstore

HOUR = 3_600_000
NOW = START + DAYS * DAY


def _tiers() -> list[Tier]:  # raw kept 2 days, 1m kept 5 days, 5m forever
    reached = NOW
    return [Tier("m", 0, NOW - 2 * DAY), Tier("m_ds_1", 60_000, NOW - 5 * DAY, reached),
            Tier("m_ds_5", 300_000, None, reached)]  # fmt: skip


def _run(raw: Raw, q: str, start: int, end: int, step: int) -> tuple[list, list[str]]:
    pieces, warnings = plan_range(parse(q), start, end, step, _tiers(), 300_000)
    results = []
    for p in pieces:
        src = LocalShards([memstore(raw.stores, p.tier.dataset, s) for s in range(2)])
        results.append(
            DistributedEngine(src, lookback_ms=p.lookback_ms).range(
                p.expr, p.start_ms, p.end_ms, p.step_ms
            )
        )
    return [p.tier.dataset for p in pieces], stitch(results).series, warnings  # type: ignore[return-value]


def _ref(raw: Raw, host: str, fn, t: np.ndarray, rng: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    ts, vals = next(
        sv for k, sv in raw.series.items() if dict(k) == {"__name__": "temp", "host": host}
    )
    return np.array([fn(vals[(ts > x - rng) & (ts <= x)].tolist()) for x in t.tolist()], float)


@pytest.mark.parametrize(("fn", "ref"), [("count_over_time", len), ("sum_over_time", sum),
                                         ("max_over_time", max), ("min_over_time", min),
                                         ("avg_over_time", lambda v: sum(v) / len(v))])  # fmt: skip
def test_a_range_over_raw_and_two_resolutions_equals_the_reference(raw: Raw, fn: str, ref) -> None:  # type: ignore[no-untyped-def]
    raw.run()
    start, end, step = START + 12 * HOUR, NOW, HOUR
    tiers, series, warnings = _run(raw, f"{fn}(temp[1h])", start, end, step)
    assert tiers == ["m_ds_5", "m_ds_1", "m"] and warnings == []
    assert len(series) == 3
    grid = np.arange(start, end + 1, step)
    for lb, ts, vs in series:
        assert "__ds_col__" not in dict(lb)
        assert ts.tolist() == grid.tolist()  # every step once: no gap, no step twice
        want = _ref(raw, dict(lb)["host"], ref, grid, HOUR)
        if fn in ("count_over_time", "max_over_time", "min_over_time"):
            assert vs.tolist() == want.tolist()  # exact: no sample counted twice at the seams
        else:
            np.testing.assert_allclose(vs, want, rtol=1e-12)


def test_a_step_finer_than_the_resolution_is_answered_at_it_with_a_warning(raw: Raw) -> None:
    raw.run()
    tiers, series, warnings = _run(
        raw, "max_over_time(temp[5m])", START + DAY, START + 2 * DAY, 60_000
    )
    assert tiers == ["m_ds_5"] and any("5m resolution of m_ds_5" in w for w in warnings)
    for _lb, ts, _vs in series:
        assert (np.diff(ts) == 300_000).all()


def test_rewrites_map_functions_to_columns() -> None:
    e, notes = rewrite_for_ds(parse("sum by (job) (rate(x_total[5m]))"), 300_000)
    assert to_string(e) == ('sum by (job) (label_replace(rate(x_total{__ds_col__=~"avg|last"}[10m]), '
                            '"__ds_col__", "", "__ds_col__", ".*"))')  # fmt: skip
    assert notes and "read as [10m]" in notes[0]
    e, _ = rewrite_for_ds(parse("count_over_time(g[1h])"), 60_000)
    assert 'sum_over_time(g{__ds_col__=~"count"}[1h])' in to_string(e)
