"""The HTTP conformance runner's two conversions: times to the seconds it sends, and the
server's JSON answer back to a :class:`Result` (bit for bit, as the comparison needs)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from filodb.query.result import Result
from filodb.testing.promql_http import result_from_json, seconds


@pytest.mark.parametrize(("ms", "text"), [(0, "0"), (60_000, "60"), (1, "0.001"), (1_500, "1.5"),
                                          (-1_500, "-1.5"), (-1, "-0.001"),
                                          (10**15 + 7, "1000000000000.007")])  # fmt: skip
def test_seconds_are_exact_decimals(ms: int, text: str) -> None:
    assert seconds(ms) == text


EXTREMES = np.array([1.7976931348623157e308, -1.7976931348623157e308, 5e-324, -0.0, np.nan, np.inf,
                     -np.inf, 0.1, 2.0**53, 1e-300])  # fmt: skip


def _bits(a: np.ndarray) -> list[int]:
    return np.ascontiguousarray(a, np.float64).view(np.uint64).tolist()


def _series(kind: str) -> list:
    if kind == "vector":  # one sample per series, at the evaluation time
        return [((("__name__", "m"), ("i", str(i))), np.array([-1_500], np.int64), EXTREMES[i : i + 1])
                for i in range(len(EXTREMES))]  # fmt: skip
    ts = np.arange(len(EXTREMES), dtype=np.int64) * 1_001 - 5_000
    return [
        ((("__name__", "m"), ("ü", 'a"\n')), ts, EXTREMES),
        ((("__name__", "n"),), ts, EXTREMES[::-1]),
    ]


@pytest.mark.parametrize("kind", ["vector", "matrix"])
def test_series_answers_come_back_bit_for_bit(kind: str) -> None:
    series = _series(kind)
    back = result_from_json(orjson.loads(Result(kind, series).to_prom_json_bytes()))
    assert back.result_type == kind
    assert [lb for lb, _, _ in back.series] == [lb for lb, _, _ in series]
    for (_, ts, vs), (_, ts0, vs0) in zip(back.series, series, strict=True):
        assert ts.tolist() == ts0.tolist()
        assert _bits(vs) == _bits(vs0)


def test_scalar_and_string_answers() -> None:
    sc = result_from_json(
        orjson.loads(Result("scalar", scalar=(-1_500, -np.inf)).to_prom_json_bytes())
    )
    assert sc.result_type == "scalar" and sc.scalar == (-1_500, -np.inf)
    st = result_from_json(
        orjson.loads(Result("string", string=(60_001, 'a"b')).to_prom_json_bytes())
    )
    assert st.result_type == "string" and st.string == (60_001, 'a"b')
