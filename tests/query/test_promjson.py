"""The byte writer of vector/matrix answers prints exactly what the reference formatter does."""

from __future__ import annotations

import math

import numpy as np
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from filodb.model.labels import make_labels
from filodb.query import promjson
from filodb.query.result import Result

SPECIAL = [0.0, -0.0, 1.0, -1.0, 2.0**53, 2.0**53 + 2, 1e16, 1e-5, 1e-4, 123.456, 1e300, -1e-300,
           5e-324, math.nan, math.inf, -math.inf, 0.1 + 0.2, 1 / 3, 1e15 + 0.5, 12345678901234567890.0]  # fmt: skip


def _same(res: Result) -> None:
    want = res.to_prom_json()
    got = orjson.loads(res.to_prom_json_bytes())
    assert got == orjson.loads(orjson.dumps(want))


def _series(vals: list[float], ts: list[int]) -> list:  # type: ignore[type-arg]
    return [(make_labels({"__name__": "m", "i": str(i), "q": 'a"b\\c'}), np.array([t]), np.array([v]))
            for i, (t, v) in enumerate(zip(ts, vals, strict=True))]  # fmt: skip


def test_special_values_and_times() -> None:
    ts = [1_700_000_000_000 + k * 137 for k in range(len(SPECIAL))]
    _same(Result("vector", _series(SPECIAL, ts)))
    whole = np.array(SPECIAL)
    _same(
        Result(
            "matrix",
            [
                (make_labels({"a": "1"}), np.array(ts), whole),
                (make_labels({"a": "2"}), np.array([], np.int64), np.array([])),
            ],
        )
    )


def test_empty_answers() -> None:
    assert orjson.loads(Result("matrix", []).to_prom_json_bytes()) == {
        "resultType": "matrix",
        "result": [],
    }
    assert orjson.loads(Result("vector", []).to_prom_json_bytes()) == {
        "resultType": "vector",
        "result": [],
    }


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=40), st.integers(-(10**12), 10**13))
def test_any_float_bits(bits: list[int], t0: int) -> None:
    vals = np.array(bits, np.uint64).view(np.float64)
    ts = t0 + np.arange(len(vals)) * 15_001
    half = len(vals) // 2
    _same(Result("matrix", [(make_labels({"s": "a"}), ts[:half], vals[:half]),
                            (make_labels({"s": "b"}), ts[half:], vals[half:])]))  # fmt: skip
    _same(Result("vector", _series(vals.tolist(), ts.tolist())))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=30))
def test_any_float(vals: list[float]) -> None:
    _same(
        Result("matrix", [(make_labels({"s": "x"}), np.arange(len(vals)) * 1000, np.array(vals))])
    )


def test_prefix_and_suffix_wrap_the_same_bytes() -> None:
    """The enclosing answer written in the same pass is the bare data between them, on the
    kernel's path and on the token-matrix path (times past 2286) alike, and for other types."""
    for t0 in (1_700_000_000_123, 10**13 + 5):
        ts = [t0 + k * 137 for k in range(len(SPECIAL))]
        for res in (Result("vector", _series(SPECIAL, ts)),
                    Result("matrix", [(make_labels({"a": "1"}), np.array(ts), np.array(SPECIAL)),
                                      (make_labels({"a": "2"}), np.array(ts[:3]), np.ones(3))]),
                    Result("matrix", []), Result("scalar", scalar=(t0, 1.5))):  # fmt: skip
            bare = res.to_prom_json_bytes()
            assert (
                res.to_prom_json_bytes(b'{"data":', b',"x":1}') == b'{"data":' + bare + b',"x":1}'
            )
            assert orjson.loads(b'{"data":' + bare + b"}")["data"] == orjson.loads(bare)


def test_small_answers_are_the_bytes_the_kernel_writes(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Answers of a few pairs are written in plain Python: byte for byte what the numba
    kernel and the token-matrix path (times past 2286) write."""
    ts = [1_700_000_000_000 + k * 137 for k in range(len(SPECIAL))]
    answers = [
        Result("vector", _series(SPECIAL[:8], ts[:8])),
        Result("vector", _series(SPECIAL[8:], [-(10**13) - 7, *ts[9:]])),
        Result("matrix", [(make_labels({"a": "1"}), np.array(ts[:10]), np.array(SPECIAL[:10])),
                          (make_labels({"a": "2"}), np.array([], np.int64), np.array([])),
                          (make_labels({"a": "3"}), np.array(ts[10:16]), np.array(SPECIAL[10:16]))]),
        Result("matrix", [(make_labels({}), np.array([10**13 + 5]), np.array([2.5]))]),
    ]  # fmt: skip
    small = [r.to_prom_json_bytes(b"<", b">") for r in answers]
    monkeypatch.setattr(promjson, "SMALL_PAIRS", 0)
    assert small == [r.to_prom_json_bytes(b"<", b">") for r in answers]
    monkeypatch.undo()
    many = Result("matrix", [(make_labels({}), np.arange(17) * 1000, np.ones(17))])
    assert promjson._small_json(False, many.series, b"", b"") is None  # past SMALL_PAIRS


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 11), min_size=1, max_size=60), st.integers(-(10**12), 10**12),
       st.integers(1, 4))  # fmt: skip
def test_times_printed_again_from_the_cache(picks: list[int], t0: int, n_series: int) -> None:
    # times that share a cache slot (4 096 s apart, or a fraction moved into the seconds) and
    # series that repeat them: every text must be its own time's
    pool = t0 + np.array([0, 4_096_000, 8_192_000, 1, 1_000, 999, -1_000, 60_000, 60_001, 15,
                          4_096_015, -4_096_000], np.int64)  # fmt: skip
    ts = np.sort(pool[np.array(picks)])
    series = [(make_labels({"s": str(i)}), ts, np.arange(len(ts)) * 0.5) for i in range(n_series)]
    _same(Result("matrix", series))
