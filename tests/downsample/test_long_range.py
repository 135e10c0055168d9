"""Queries across resolutions: raw, then two downsampled levels, stitched without gaps or
double counting, against plain references over the raw samples; instant queries whose windows
or offsets reach past the raw retention."""

from __future__ import annotations

import math

import numpy as np
import pytest

from filodb.query.distributed import DistributedEngine, LocalShards
from filodb.query.longrange import Tier, plan_instant, plan_range, rewrite_for_ds, stitch
from filodb.query.parser import parse
from filodb.query.printer import to_string
from filodb.testing.downsample import DAY, DAYS, START, Raw, memstore
from tests.downsample.test_job import _ref_increase

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


@pytest.mark.parametrize("at", ["fixed", "start()"])
def test_a_selector_at_a_time_past_raw_retention_reads_a_level_at_every_step(
    raw: Raw, at: str
) -> None:
    """``@`` fixes where a selector reads whatever the step: the planner picks the tier by
    that time, and ``@ start()`` is the query's start in every piece, not the piece's."""
    raw.run()
    t_at = NOW - 4 * DAY  # raw kept 2 days: only the levels hold it
    start = t_at if at == "start()" else NOW - 6 * HOUR
    when = f"{t_at / 1000:.0f}" if at == "fixed" else at
    tiers, series, _ = _run(raw, f"max_over_time(temp[1h] @ {when})", start, NOW, 12 * HOUR)
    assert tiers == ["m_ds_1"] and len(series) == 3
    grid = np.arange(start, NOW + 1, 12 * HOUR)
    for lb, ts, vs in series:
        assert ts.tolist() == grid.tolist()
        want = _ref(raw, dict(lb)["host"], max, np.array([t_at]), HOUR)[0]
        assert vs.tolist() == [want] * len(grid)
    tier, got, _ = _instant(raw, f"max_over_time(temp[1h] @ {t_at / 1000:.0f})", NOW)
    assert tier == "m_ds_1"
    for host, v in got.items():
        assert v == _ref(raw, host, max, np.array([t_at]), HOUR)[0]


def test_a_query_using_its_own_range_is_not_split_across_tiers(raw: Raw) -> None:
    raw.run()
    tiers, series, _ = _run(raw, "max_over_time(temp[1h]) + 0 * end()", NOW - 4 * DAY, NOW, DAY)
    assert tiers == ["m_ds_1"] and len(series) == 3  # end() is the query's in its one piece


def test_rewrites_map_functions_to_columns() -> None:
    e, notes = rewrite_for_ds(parse("sum by (job) (rate(x_total[5m]))"), 300_000)
    assert to_string(e) == ('sum by (job) (label_replace(rate(x_total{__ds_col__=~"avg|last"}[10m]), '
                            '"__ds_col__", "", "__ds_col__", ".*"))')  # fmt: skip
    assert notes and "read as [10m]" in notes[0]
    e, _ = rewrite_for_ds(parse("count_over_time(g[1h])"), 60_000)
    assert 'sum_over_time(g{__ds_col__=~"count"}[1h])' in to_string(e)


def _instant(raw: Raw, q: str, t: int, tiers: list[Tier] | None = None):  # type: ignore[no-untyped-def]
    p, warnings = plan_instant(parse(q), t, tiers or _tiers(), 300_000)
    src = LocalShards([memstore(raw.stores, p.tier.dataset, s) for s in range(2)])
    res = DistributedEngine(src, lookback_ms=p.lookback_ms).instant(p.expr, t)
    return p.tier.dataset, {dict(lb)["host"]: float(v[0]) for lb, _t, v in res.series}, warnings


def _raw_of(raw: Raw, name: str, host: str) -> tuple[np.ndarray, np.ndarray]:
    return next(sv for k, sv in raw.series.items() if dict(k) == {"__name__": name, "host": host})


@pytest.mark.parametrize(("fn", "ref"), [("count_over_time", len), ("sum_over_time", sum),
                                         ("max_over_time", max), ("min_over_time", min),
                                         ("avg_over_time", lambda v: sum(v) / len(v))])  # fmt: skip
def test_an_instant_window_past_raw_retention_reads_the_finest_level_holding_it(
    raw: Raw, fn: str, ref
) -> None:  # type: ignore[no-untyped-def]
    raw.run()
    for rng, want_tier in (("1h", "m"), ("3d", "m_ds_1"), ("6d", "m_ds_5")):
        tier, got, warnings = _instant(raw, f"{fn}(temp[{rng}])", NOW)
        assert tier == want_tier and warnings == [] and len(got) == 3
        r = {"1h": HOUR, "3d": 3 * DAY, "6d": 6 * DAY}[rng]
        for host, v in got.items():
            want = _ref(raw, host, ref, np.array([NOW]), r)[0]
            assert (
                v == want
                if fn in ("count_over_time", "max_over_time", "min_over_time")
                else (np.isclose(v, want, rtol=1e-12))
            )


def test_an_instant_offset_past_raw_retention_reads_the_average_of_its_period(raw: Raw) -> None:
    raw.run()
    at = NOW - 4 * DAY - 7 * 60_000 - 20_000  # not on a period end
    tier, got, _ = _instant(raw, "temp offset 4d", NOW - 7 * 60_000 - 20_000)
    assert tier == "m_ds_1" and len(got) == 3
    for host, v in got.items():
        ts, vals = _raw_of(raw, "temp", host)
        end = -(-int(ts[ts <= at][-1]) // 60_000) * 60_000  # the last period with a sample
        end = end if end <= at else end - 60_000  # ... ending by then
        in_period = vals[(ts > end - 60_000) & (ts <= end)]
        assert np.isclose(v, in_period.mean(), rtol=1e-12)


@pytest.mark.parametrize("fn", ["rate", "increase"])
def test_an_instant_rate_past_raw_retention_equals_raw_at_the_resolution(raw: Raw, fn: str) -> None:
    raw.run()
    tier, got, _ = _instant(raw, f"{fn}(req_total[3d])", NOW)
    assert tier == "m_ds_1" and len(got) == 2
    for host, v in got.items():
        ts, vals = _raw_of(raw, "req_total", host)
        want = _ref_increase(ts, vals, 60_000, NOW - 3 * DAY, NOW)
        assert math.isclose(v, want / (3 * 86400) if fn == "rate" else want, rel_tol=1e-9)


def test_an_instant_window_past_every_levels_data_says_what_it_left_out(raw: Raw) -> None:
    raw.run(START, NOW - DAY)  # the levels reach a day before now
    reached = NOW - DAY
    tiers = [Tier("m", 0, NOW - 2 * DAY), Tier("m_ds_1", 60_000, NOW - 5 * DAY, reached),
             Tier("m_ds_5", 300_000, None, reached)]  # fmt: skip
    tier, got, warnings = _instant(raw, "count_over_time(temp[3d])", NOW, tiers)
    assert tier == "m_ds_1" and any("samples after that are not in" in w for w in warnings)
    for host, v in got.items():  # what the level holds: the window up to its end
        assert v == _ref(raw, host, len, np.array([reached]), 2 * DAY)[0]
    tier, _, warnings = _instant(raw, "count_over_time(temp[1d])", NOW, tiers)
    assert tier == "m" and warnings == []  # raw holds the whole window
    tier, _, _ = _instant(raw, "temp offset 3d", NOW, tiers)
    assert tier == "m_ds_1"
