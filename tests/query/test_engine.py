"""Engine answers against brute-force references computed sample by sample in plain Python."""

from __future__ import annotations

import math

import numpy as np
import pytest

from filodb.errors import ExecutionError
from filodb.model.labels import Labels, make_labels
from filodb.query.ast import VectorMatching
from filodb.query.engine import Engine
from filodb.query.memsource import MemorySource
from filodb.query.values import STALE_NAN_BITS

STALE = np.array([STALE_NAN_BITS], np.uint64).view(np.float64)[0]
LOOKBACK = 300_000
START, END, STEP = 600_000, 3_600_000, 60_000


def _data(seed: int) -> dict[Labels, tuple[np.ndarray, np.ndarray]]:
    """Irregular counters and gauges, with gaps, counter resets and a stale marker."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(6):
        n = int(rng.integers(20, 200))
        ts = np.sort(rng.choice(np.arange(0, 3_600_000, 7_000), n, replace=False)).astype(np.int64)
        if i % 2 == 0:
            vals = np.cumsum(rng.integers(0, 10, n)).astype(np.float64)
            vals[n // 2 :] -= vals[n // 2] - 1  # a counter reset
        else:
            vals = rng.normal(0, 100, n)
        if i == 3:
            vals[n // 3] = STALE
        lb = make_labels({"__name__": "m", "job": f"j{i % 2}", "inst": str(i)})
        out[lb] = (ts, vals)
    return out


@pytest.fixture(params=[0, 1, 2])
def data(request: pytest.FixtureRequest) -> dict[Labels, tuple[np.ndarray, np.ndarray]]:
    return _data(request.param)


@pytest.fixture
def engine(data: dict[Labels, tuple[np.ndarray, np.ndarray]]) -> Engine:
    src = MemorySource()
    for lb, (ts, vals) in data.items():
        src.add(lb, ts, vals)
    return Engine(src, lookback_ms=LOOKBACK)


def _is_stale(v: float) -> bool:
    return bool(np.array([v]).view(np.uint64)[0] == STALE_NAN_BITS)


def _instant(ts: np.ndarray, vals: np.ndarray, t: int) -> float | None:
    """Newest sample in (t - lookback, t]; None when there is none or it is stale."""
    best = None
    for x, v in zip(ts.tolist(), vals.tolist(), strict=True):
        if t - LOOKBACK < x <= t:
            best = v
    return None if best is None or _is_stale(best) else best


def _window(ts: np.ndarray, vals: np.ndarray, t: int, rng: int) -> list[tuple[int, float]]:
    return [
        (x, v)
        for x, v in zip(ts.tolist(), vals.tolist(), strict=True)
        if t - rng < x <= t and not _is_stale(v)
    ]


def _rate(
    w: list[tuple[int, float]], t: int, rng: int, counter: bool, per_second: bool
) -> float | None:
    """Prometheus ``extrapolatedRate``, one window at a time."""
    if len(w) < 2:
        return None
    result = w[-1][1] - w[0][1]
    if counter:
        result += sum(a for (_, a), (_, b) in zip(w, w[1:], strict=False) if b < a)
    to_start = (w[0][0] - (t - rng)) / 1000
    to_end = (t - w[-1][0]) / 1000
    sampled = (w[-1][0] - w[0][0]) / 1000
    avg = sampled / (len(w) - 1)
    if to_start >= avg * 1.1:
        to_start = avg / 2
    if counter and result > 0 and w[0][1] >= 0:
        to_start = min(to_start, sampled * (w[0][1] / result))
    if to_end >= avg * 1.1:
        to_end = avg / 2
    factor = (sampled + to_start + to_end) / sampled
    return result * factor / (rng / 1000 if per_second else 1)


def _series(res) -> dict[Labels, dict[int, float]]:  # type: ignore[no-untyped-def]
    return {lb: dict(zip(ts.tolist(), vs.tolist(), strict=True)) for lb, ts, vs in res.series}


def _close(got: dict[Labels, dict[int, float]], want: dict[Labels, dict[int, float]]) -> None:
    want = {lb: pts for lb, pts in want.items() if pts}
    assert set(got) == set(want)
    for lb, pts in want.items():
        assert set(got[lb]) == set(pts), lb
        for t, v in pts.items():
            g = got[lb][t]
            assert (math.isnan(g) and math.isnan(v)) or g == pytest.approx(v, rel=1e-9, abs=1e-9), (
                lb,
                t,
            )


def _drop_name(lb: Labels) -> Labels:
    return tuple(p for p in lb if p[0] != "__name__")


STEPS = list(range(START, END + 1, STEP))


def test_instant_selector_over_a_range(engine: Engine, data) -> None:  # type: ignore[no-untyped-def]
    want = {
        lb: {t: v for t in STEPS if (v := _instant(ts, vals, t)) is not None}
        for lb, (ts, vals) in data.items()
    }
    _close(_series(engine.range("m", START, END, STEP)), want)


@pytest.mark.parametrize("fn,ref", [
    ("sum_over_time", lambda w: sum(v for _, v in w)),
    ("count_over_time", lambda w: float(len(w))),
    ("avg_over_time", lambda w: sum(v for _, v in w) / len(w)),
    ("min_over_time", lambda w: min(v for _, v in w)),
    ("max_over_time", lambda w: max(v for _, v in w)),
    ("last_over_time", lambda w: w[-1][1]),
    ("changes", lambda w: float(sum(a[1] != b[1] for a, b in zip(w, w[1:], strict=False)))),
    ("resets", lambda w: float(sum(b[1] < a[1] for a, b in zip(w, w[1:], strict=False)))),
])  # fmt: skip
def test_over_time_functions(engine: Engine, data, fn, ref) -> None:  # type: ignore[no-untyped-def]
    rng = 120_000
    want = {}
    for lb, (ts, vals) in data.items():
        key = lb if fn == "last_over_time" else _drop_name(lb)
        want[key] = {t: ref(w) for t in STEPS if (w := _window(ts, vals, t, rng))}
    _close(_series(engine.range(f"{fn}(m[2m])", START, END, STEP)), want)


@pytest.mark.parametrize("fn,counter,per_second", [("rate", True, True), ("increase", True, False),
                                                   ("delta", False, False)])  # fmt: skip
def test_extrapolated_rates(engine: Engine, data, fn, counter, per_second) -> None:  # type: ignore[no-untyped-def]
    rng = 300_000
    want = {}
    for lb, (ts, vals) in data.items():
        pts = {
            t: r
            for t in STEPS
            if (r := _rate(_window(ts, vals, t, rng), t, rng, counter, per_second)) is not None
        }
        want[_drop_name(lb)] = pts
    _close(_series(engine.range(f"{fn}(m[5m])", START, END, STEP)), want)


def test_offset_and_at(engine: Engine, data) -> None:  # type: ignore[no-untyped-def]
    want = {lb: {t: v for t in STEPS if (v := _instant(ts, vals, t - 600_000)) is not None}
            for lb, (ts, vals) in data.items()}  # fmt: skip
    _close(_series(engine.range("m offset 10m", START, END, STEP)), want)
    want = {lb: {t: v for t in STEPS if (v := _instant(ts, vals, 1_800_000)) is not None}
            for lb, (ts, vals) in data.items()}  # fmt: skip
    _close(_series(engine.range("m @ 1800", START, END, STEP)), want)


@pytest.mark.parametrize("op,ref", [("sum", sum), ("max", max), ("min", min), ("count", lambda xs: float(len(xs))),
                                    ("avg", lambda xs: sum(xs) / len(xs))])  # fmt: skip
def test_aggregations_by_label(engine: Engine, data, op, ref) -> None:  # type: ignore[no-untyped-def]
    want: dict[Labels, dict[int, float]] = {}
    for t in STEPS:
        groups: dict[Labels, list[float]] = {}
        for lb, (ts, vals) in data.items():
            v = _instant(ts, vals, t)
            if v is not None:
                groups.setdefault((("job", dict(lb)["job"]),), []).append(v)
        for g, xs in groups.items():
            want.setdefault(g, {})[t] = ref(xs)
    _close(_series(engine.range(f"{op} by (job) (m)", START, END, STEP)), want)


def test_vector_matching_on_label_and_comparison_filter(engine: Engine, data) -> None:  # type: ignore[no-untyped-def]
    t = 2_400_000
    now = {lb: v for lb, (ts, vals) in data.items() if (v := _instant(ts, vals, t)) is not None}
    sums: dict[str, float] = {}
    for lb, v in now.items():
        sums[dict(lb)["job"]] = sums.get(dict(lb)["job"], 0.0) + v
    want = {_drop_name(lb): {t: v / sums[dict(lb)["job"]]} for lb, v in now.items()}
    _close(_series(engine.instant("m / on(job) group_left sum by (job) (m)", t)), want)
    want = {lb: {t: v} for lb, v in now.items() if v > 10}
    _close(_series(engine.instant("m > 10", t)), want)


def test_topk_keeps_labels_and_orders_by_value(engine: Engine, data) -> None:  # type: ignore[no-untyped-def]
    t = 3_000_000
    now = sorted(((v, lb) for lb, (ts, vals) in data.items() if (v := _instant(ts, vals, t)) is not None
                  and not math.isnan(v)), reverse=True)  # fmt: skip
    res = engine.instant("topk(2, m)", t)
    assert [lb for lb, _, _ in res.series] == [lb for _, lb in now[:2]]


def test_subquery_matches_its_inner_range_query(engine: Engine, data) -> None:  # type: ignore[no-untyped-def]
    t = 3_000_000
    inner = _series(engine.range("m", t - 600_000 + 60_000, t, 60_000))
    want = {lb: {t: sum(pts.values())} for lb, pts in inner.items()}
    _close(
        _series(engine.instant("sum_over_time(m[10m:1m])", t)),
        {_drop_name(k): v for k, v in want.items()},
    )


def test_json_shapes() -> None:
    src = MemorySource()
    src.add(make_labels({"__name__": "x", "a": "1"}), np.array([0, 60_000]), np.array([0.1, 1e21]))
    eng = Engine(src)
    assert eng.instant("x", 60_000).to_prom_json() == {
        "resultType": "vector", "result": [{"metric": {"__name__": "x", "a": "1"},
                                            "value": [60, "1000000000000000000000"]}]}  # fmt: skip
    values = eng.range("x", 0, 60_000, 30_000).to_prom_json()["result"][0]["values"]
    assert [list(p) for p in values] == [
        [0, "0.1"], [30, "0.1"], [60, "1000000000000000000000"]]  # fmt: skip
    assert eng.instant("1 / 0", 0).to_prom_json() == {"resultType": "scalar", "result": [0, "+Inf"]}
    assert eng.instant('"s"', 1500).to_prom_json() == {"resultType": "string", "result": [1.5, "s"]}


def test_execution_errors() -> None:
    src = MemorySource()
    for i in range(3):
        src.add(
            make_labels({"__name__": "x", "i": str(i), "j": "a"}), np.array([0]), np.array([1.0])
        )
    eng = Engine(src)
    with pytest.raises(ExecutionError, match="same labelset"):
        eng.instant("label_replace(x, 'i', '', 'i', '.*')", 0)
    with pytest.raises(ExecutionError, match="many-to-many"):
        eng.instant("x + on(j) x", 0)
    with pytest.raises(ExecutionError, match="too many samples"):
        Engine(src, max_samples=2).instant("x", 0)


def test_smoothed_selector_interpolates_between_samples() -> None:
    src = MemorySource()
    src.add(
        make_labels({"__name__": "x"}), np.array([0, 10_000, 20_000]), np.array([0.0, 10.0, 40.0])
    )
    res = Engine(src).range("x smoothed", 0, 30_000, 5_000)
    assert res.series[0][2].tolist() == [0, 5, 10, 25, 40, 40, 40]


@pytest.mark.parametrize("q", ["max_over_time(vector(1)[10000d:1ms])", "x[30d:1ms]",
                               "count_over_time(x[10000y:1ms])"])  # fmt: skip
def test_a_subquery_of_billions_of_steps_is_too_many_samples_not_an_allocation(q: str) -> None:
    """Found by bench/fuzz_http.py: the step grid was allocated whole (6 TiB: a 500, or the
    web process killed by the kernel) before any limit was looked at."""
    src = MemorySource()
    src.add(make_labels({"__name__": "x"}), np.array([0, 10_000]), np.array([1.0, 2.0]))
    with pytest.raises(ExecutionError, match="too many samples"):
        Engine(src).instant(q, 10_000)


def test_subquery_points_count_against_max_samples() -> None:
    src = MemorySource()
    src.add(make_labels({"__name__": "x"}), np.arange(0, 600_000, 1000), np.ones(600))
    assert Engine(src, max_samples=10_000).instant("sum_over_time(x[5m:1s])", 599_000)
    with pytest.raises(ExecutionError, match="too many samples"):  # 600 read + 300 points
        Engine(src, max_samples=800).instant("sum_over_time(x[5m:1s])", 599_000)


def test_range_function_over_several_names_checks_label_sets() -> None:
    """Dropping the name of one metric's series keeps them apart (no check is made); over
    several metrics two series may become one label set, an error at the steps both have."""
    src = MemorySource()
    for name in ("a", "b"):
        src.add(
            make_labels({"__name__": name, "j": "1"}), np.array([0, 10_000]), np.array([1.0, 2.0])
        )
    src.add(make_labels({"__name__": "a", "j": "2"}), np.array([0, 10_000]), np.array([1.0, 3.0]))
    eng = Engine(src)
    got = eng.instant("rate(a[1m])", 10_000).to_prom_json()["result"]
    assert sorted(r["metric"]["j"] for r in got) == ["1", "2"]
    with pytest.raises(ExecutionError, match="same labelset"):
        eng.instant('rate({__name__=~"a|b"}[1m])', 10_000)
    got = eng.instant('last_over_time({__name__=~"a|b"}[1m])', 10_000).to_prom_json()["result"]
    assert len(got) == 3


def test_names_marked_dropped_share_one_pair_per_name() -> None:
    """``drop_names`` keeps a result per series of a shard: every label set of one metric
    name holds the same marked pair object, and the rest of each label set is its own."""
    from filodb.query.binops import DROPPED_NAME, drop_name, final_labels

    a = make_labels({"__name__": "up", "instance": "a"})
    b = make_labels({"__name__": "up", "instance": "b"})
    c = make_labels({"__name__": "down", "instance": "a"})
    da, db, dc = drop_name(a), drop_name(b), drop_name(c)
    assert da[0] == (DROPPED_NAME, "up") and dc[0] == (DROPPED_NAME, "down")
    assert da[0] is db[0] and da[0] is not dc[0]
    assert [final_labels(x) for x in (da, db, dc)] == [
        (("instance", "a"),), (("instance", "b"),), (("instance", "a"),)]  # fmt: skip
    assert drop_name((("instance", "a"),)) == (("instance", "a"),)  # no name: unchanged


def test_label_memos_keep_a_label_set_the_second_time_it_is_asked_for() -> None:
    """A query over every series once (an ad-hoc look) leaves the label memos as they were;
    what is asked again is kept, and every answer is the function's."""
    from filodb.query import binops

    sets = [make_labels({"__name__": "once", "i": str(i)}) for i in range(50)]
    binops._DROPPED.forget()
    binops._DROPPED_SEEN.clear()
    first = binops.drop_names(sets)
    assert first == [binops.drop_name(lb) for lb in sets]
    assert not any(lb in binops._DROPPED for lb in sets)
    assert binops.drop_names(sets) == first
    assert all(lb in binops._DROPPED for lb in sets)
    vm = VectorMatching(card="one-to-one", on=True, labels=("i",), include=())
    sigs = binops.signatures(sets, vm)
    assert sigs == [(("i", str(i)),) for i in range(50)]
    memo = binops._SIG_MEMOS.get((True, ("i",)))
    assert memo is not None and not any(lb in memo for lb in sets)
    assert binops.signatures(sets, vm) == sigs and all(lb in memo for lb in sets)
