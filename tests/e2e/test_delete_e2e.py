"""``POST /api/v1/admin/tsdb/delete_series`` under a real ``filodb up``: deleted samples are
gone from memory and the column store at once, and stay gone through a kill -9 of the whole
tree (the log still holds them: its tombstone replays in order); samples outside the range and
other series keep their exact count and sum; new samples of a deleted series are taken."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from filodb.memstore.chunks import chunk_from_vectors, decode_chunks
from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.model.partkey import part_key
from filodb.prom.remote_write import encode_write_request
from filodb.store.sqlite import open_sqlite
from filodb.testing.cluster import UpProcess
from filodb.testing.wait import eventually

pytestmark = pytest.mark.e2e

T0 = 1_700_000_000_000
STEP = 10_000
N = 60  # samples per series
ENV = {"FILODB_FLUSH_INTERVAL": "1", "FILODB_FLUSH_GROUPS": "2", "FILODB_MAX_CHUNK_SAMPLES": "8",
       "FILODB_MEMORY_BUDGET_MB": "0", "FILODB_RETENTION": "0"}  # fmt: skip
NAMES = ("gone_total", "cut_total", "kept_total")


def _batch(lo: int, hi: int, names: tuple[str, ...] = NAMES) -> SampleBatch:
    series = [make_labels({"__name__": n, "i": str(i)}) for n in names for i in range(4)]
    idx = np.arange(lo, hi)
    k = len(series)
    return SampleBatch(series, np.repeat(np.arange(k), len(idx)), np.tile(T0 + STEP * idx, k),
                       np.tile(idx.astype(float), k))  # fmt: skip


def _post(url: str, b: SampleBatch) -> None:
    r = requests.post(url + "/api/v1/write", data=encode_write_request(b), timeout=10)
    assert r.status_code == 204, r.text


def _over_time(url: str, fn: str, name: str) -> dict[str, float]:
    t = (T0 + STEP * 200) / 1000
    r = requests.get(url + "/api/v1/query", params={"query": f"{fn}({name}[3000s])", "time": t},
                     timeout=30)  # fmt: skip
    assert r.status_code == 200, r.text
    return {x["metric"]["i"]: float(x["value"][1]) for x in r.json()["data"]["result"]}


def _ranged(url: str) -> list[str]:
    """``i`` of the gone_total series a range query over all the data answers (cached extents:
    the data is years old, so every extent is finished and stored)."""
    r = requests.get(url + "/api/v1/query_range", params={
        "query": "gone_total", "start": T0 / 1000, "end": (T0 + STEP * N) / 1000, "step": 10},
        timeout=30)  # fmt: skip
    assert r.status_code == 200, r.text
    return sorted(x["metric"]["i"] for x in r.json()["data"]["result"])


def _delete(url: str, **params: object) -> requests.Response:
    return requests.post(url + "/api/v1/admin/tsdb/delete_series", params=params, timeout=60)


def _expect_deleted(url: str) -> None:
    full = {str(i): float(N) for i in range(4)}
    full_sum = {str(i): float(sum(range(N))) for i in range(4)}
    # gone_total{i=~"0|1"}: all time; cut_total: samples 10..29 of every series
    assert _over_time(url, "count_over_time", "gone_total") == {"2": N, "3": N}
    assert _over_time(url, "count_over_time", "cut_total") == {k: v - 20 for k, v in full.items()}
    cut_sum = float(sum(range(N)) - sum(range(10, 30)))
    assert _over_time(url, "sum_over_time", "cut_total") == dict.fromkeys(full, cut_sum)
    assert _over_time(url, "count_over_time", "kept_total") == full
    assert _over_time(url, "sum_over_time", "kept_total") == full_sum
    r = requests.get(url + "/api/v1/series", params={"match[]": "gone_total"}, timeout=10)
    assert sorted(s["i"] for s in r.json()["data"]) == ["2", "3"]


def _stored(data_dir, name: str, i: int) -> list[int]:  # type: ignore[no-untyped-def]
    """Sample indexes of one series in the column store, read around the cluster."""
    column, _ = open_sqlite(data_dir)
    try:
        pk = part_key(make_labels({"__name__": name, "i": str(i)}))
        got = [chunk_from_vectors(c.chunk_id, c.start_ms, c.end_ms, c.num_rows, c.vectors)
               for s in range(2) for c in column.read_chunks("prometheus", s, [pk], 0, 2**62)]  # fmt: skip
        ts, _, _ = decode_chunks(got)
        return sorted(set(((ts - T0) // STEP).tolist()))
    finally:
        column.close()


def test_delete_series_survives_flush_and_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = UpProcess(tmp_path / "data", shards=2, env=ENV).start()
    try:
        _post(first.url, _batch(0, N // 2))
        data = tmp_path / "data"

        def flushed() -> None:  # the first half of every series is in the column store
            for name in NAMES:
                for i in range(4):
                    assert _stored(data, name, i) == list(range(N // 2)), (name, i)

        eventually(flushed, 60, 0.3)
        _post(first.url, _batch(N // 2, N))  # the second half is in memory (and being flushed)

        def all_four() -> None:
            assert _ranged(first.url) == ["0", "1", "2", "3"]

        eventually(all_four, 30, 0.3)
        _ranged(first.url)  # answered from the results cache now
        assert _delete(first.url).status_code == 400  # no match[]
        bad = _delete(first.url, **{"match[]": "x", "start": "100", "end": "50"})
        assert bad.status_code == 400 and bad.json()["errorType"] == "bad_data"
        assert _delete(first.url, **{"match[]": "x{"}).status_code == 400
        assert _delete(first.url, **{"match[]": 'gone_total{i=~"0|1"}'}).status_code == 204
        r = _delete(first.url, **{"match[]": "cut_total", "start": (T0 + STEP * 10) / 1000,
                                  "end": (T0 + STEP * 29) / 1000})  # fmt: skip
        assert r.status_code == 204, r.text
        _expect_deleted(first.url)  # at once: the answer waited for the shards
        assert _ranged(first.url) == ["2", "3"]  # the results cache forgot the old answers
        assert _stored(data, "gone_total", 0) == [] and _stored(data, "gone_total", 1) == []
        assert not set(range(10, 30)) & set(_stored(data, "cut_total", 2))

        def flushed_after() -> None:  # flushes after the delete bring nothing back
            assert _stored(data, "cut_total", 3) == [*range(10), *range(30, N)]
            assert _stored(data, "kept_total", 3) == list(range(N))
            assert _stored(data, "gone_total", 0) == []

        eventually(flushed_after, 60, 0.3)
        _expect_deleted(first.url)
    finally:
        first.kill9_all()
    second = UpProcess(tmp_path / "data", shards=2, env=ENV)
    second.port, second.url, second.args = first.port, first.url, first.args
    second.start()
    try:
        eventually(lambda: _expect_deleted(second.url), 60, 0.3,
                   (AssertionError, requests.RequestException, KeyError))  # fmt: skip
        # a deleted series written again is a new series
        _post(second.url, _batch(N, N + 5, ("gone_total",)))

        def rewritten() -> None:
            got = _over_time(second.url, "count_over_time", "gone_total")
            assert got == {"0": 5, "1": 5, "2": N + 5, "3": N + 5}, got

        eventually(rewritten, 30, 0.3)
    finally:
        second.stop()
