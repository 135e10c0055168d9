"""Remote read, export and metadata routes through the Flask app built by the factory, with a
real Redis and an in-memory series source in place of the workers (the e2e tests use real ones)."""

from __future__ import annotations

from types import SimpleNamespace

import cramjam
import numpy as np
import orjson
import pytest

from filodb.config import Config
from filodb.model.batch import SampleBatch
from filodb.model.labels import Matcher, make_labels
from filodb.prom.remote_read import (
    SAMPLES,
    STREAMED_XOR_CHUNKS,
    decode_chunked,
    decode_samples,
    encode_read_request,
)
from filodb.prom.remote_write import encode_write_request
from filodb.query.memsource import MemorySource
from filodb.web import create_app
from filodb.web.services import Services

T0 = 1_700_000_000_000
STALE = np.array([0x7FF0000000000002], np.uint64).view(np.float64)[0]


class _Source(MemorySource):
    warnings: list[str] = []


@pytest.fixture
def written() -> dict:
    rng = np.random.default_rng(3)
    data = {}
    for i in range(6):
        labels = make_labels({"__name__": "rr_metric", "job": "a" if i % 2 else "b", "i": str(i),
                              "odd": 'x"\\y'})  # fmt: skip
        ts = T0 + 15_000 * np.arange(300) + rng.integers(0, 3, 300)
        vals = np.round(rng.normal(0, 100, 300), 2)
        vals[5] = np.nan
        vals[6] = -np.inf
        data[labels] = (ts, vals)
    data[make_labels({"__name__": "other", "job": "a"})] = (
        T0 + 1000 * np.arange(10),
        np.arange(10.0),
    )
    return data


@pytest.fixture
def client(redis_url: str, written: dict):  # type: ignore[no-untyped-def]
    cfg = Config(redis_url=redis_url, max_body_bytes=1 << 20)
    svc = Services.from_config(cfg)
    src = _Source()
    for lb, (ts, vals) in written.items():
        src.add(lb, ts, vals)
    svc.source = lambda dataset, timeout_s, strict=False: src  # type: ignore[method-assign]
    app = create_app(cfg, svc)
    svc.shard_map.create_dataset("prometheus", 4, 1)
    return app.test_client()


def _want(written: dict, pred, start: int, end: int) -> dict:  # type: ignore[no-untyped-def]
    out = {}
    for lb, (ts, vals) in written.items():
        keep = (ts >= start) & (ts <= end)
        if pred(dict(lb)) and keep.any():
            out[lb] = (ts[keep], vals[keep])
    return out


def _same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for lb, (ts, vals) in want.items():
        assert np.array_equal(got[lb][0], ts)
        assert np.array_equal(got[lb][1].view(np.uint64), vals.view(np.uint64))


QUERIES = [
    (T0, T0 + 3_000_000, [Matcher("__name__", "=", "rr_metric"), Matcher("job", "=", "a")],
     lambda d: d["__name__"] == "rr_metric" and d["job"] == "a"),
    (T0 + 100_000, T0 + 200_000, [Matcher("__name__", "=~", "rr_.*|other"), Matcher("i", "!=", "0")],
     lambda d: d.get("i") != "0"),
    (T0, T0 + 10**7, [Matcher("job", "=", "a"), Matcher("i", "!~", "[13]")],
     lambda d: d["job"] == "a" and d.get("i") not in ("1", "3")),
    (T0, T0 + 10**7, [Matcher("odd", "=", 'x"\\y'), Matcher("i", "=", "4")], lambda d: d.get("i") == "4"),
    (T0 - 10**6, T0 - 1, [Matcher("__name__", "=", "rr_metric")], lambda d: False),
]  # fmt: skip


@pytest.mark.parametrize("accepted", [[], [SAMPLES], [SAMPLES, STREAMED_XOR_CHUNKS]])
def test_samples_response(client, written, accepted) -> None:  # type: ignore[no-untyped-def]
    body = encode_read_request([(a, b, ms) for a, b, ms, _ in QUERIES], accepted)
    r = client.post("/api/v1/read", data=body)
    assert r.status_code == 200, r.data[:300]
    assert (
        r.headers["Content-Type"] == "application/x-protobuf"
        and r.headers["Content-Encoding"] == "snappy"
    )
    results = decode_samples(r.data)
    assert len(results) == len(QUERIES)
    for got, (a, b, _, pred) in zip(results, QUERIES, strict=True):
        _same(got, _want(written, pred, a, b))


@pytest.mark.parametrize("accepted", [[STREAMED_XOR_CHUNKS], [7, STREAMED_XOR_CHUNKS, SAMPLES]])
def test_streamed_xor_chunks_response(client, written, accepted) -> None:  # type: ignore[no-untyped-def]
    body = encode_read_request([(a, b, ms) for a, b, ms, _ in QUERIES], accepted)
    r = client.post("/promql/prometheus/api/v1/read", data=body)
    assert r.status_code == 200, r.data[:300]
    assert (
        r.headers["Content-Type"]
        == "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"
    )
    got, frames = decode_chunked(r.data)
    assert frames >= 4
    for i, (a, b, _, pred) in enumerate(QUERIES):
        _same(got.get(i, {}), _want(written, pred, a, b))


@pytest.mark.parametrize("body", [b"", b"not snappy at all", bytes(cramjam.snappy.compress_raw(b"\xff\xff\xff")),
                                  encode_read_request([(0, 1, [SimpleNamespace(name="a", op="=~", value="(")])]),
                                  encode_read_request([(0, 1, [Matcher("a", "=", "")])]),
                                  encode_read_request([(0, 1, [Matcher("a", "=", "b")])], [5])])  # fmt: skip
def test_bad_requests_are_400(client, body: bytes) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/read", data=body)
    assert r.status_code == 400 and r.json["errorType"] == "bad_data", r.data[:300]


def test_export_streams_raw_samples_in_windows(client, written) -> None:  # type: ignore[no-untyped-def]
    start, end = T0 + 10_000, T0 + 2_000_000
    r = client.post("/api/v1/export", data={"match[]": ['rr_metric{job="a"}', '{i="1"}'], "start": start / 1000,
                                            "end": end / 1000, "window": "7m"})  # fmt: skip
    assert r.status_code == 200 and r.mimetype == "application/x-ndjson"
    got: dict = {}
    lines = [orjson.loads(x) for x in r.data.splitlines()]
    for item in lines:
        lb = make_labels(item["metric"])
        vals = np.array(
            [{"NaN": np.nan, "-Inf": -np.inf, "+Inf": np.inf}.get(v, v) for v in item["values"]],
            float,
        )
        old = got.get(lb, (np.zeros(0, np.int64), np.zeros(0)))
        got[lb] = (
            np.concatenate([old[0], item["timestamps"]]).astype(np.int64),
            np.concatenate([old[1], vals]),
        )
    assert len(lines) > len(got)  # several windows
    _same(
        got, _want(written, lambda d: d["__name__"] == "rr_metric" and d["job"] == "a", start, end)
    )


def test_export_needs_match_and_a_valid_range(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/api/v1/export").status_code == 400
    assert client.get("/api/v1/export?match[]=up&start=10&end=5").status_code == 400
    assert client.get("/api/v1/export?match[]=rate(up[5m])").status_code == 400


def test_export_over_a_huge_range_is_a_400_not_a_hang(client) -> None:  # type: ignore[no-untyped-def]
    """Found by bench/fuzz_http.py: start=0001-01-01 meant 17 million one-hour windows, one
    fan-out each, and the request never ended."""
    r = client.get("/api/v1/export?match[]=up&start=1900-01-01T00:00:00Z&end=1700000000")
    assert r.status_code == 400 and "windows" in r.json["error"], r.data[:300]
    ok = client.get("/api/v1/export?match[]=up&start=1700000000&end=1700360000&window=1h")
    assert ok.status_code == 200  # 101 windows


def test_metadata_from_remote_write(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/api/v1/metadata").json == {"status": "success", "data": {}}
    b = SampleBatch([make_labels({"__name__": "c_total"})], np.zeros(1), np.array([T0]), np.ones(1))
    meta = [{"metric": "c_total", "type": "counter", "help": "Counts things.", "unit": ""},
            {"metric": "h", "type": "histogram", "help": "", "unit": "seconds"}]  # fmt: skip
    assert client.post("/api/v1/write", data=encode_write_request(b, meta)).status_code == 204
    r = client.get("/api/v1/metadata")
    assert r.json == {"status": "success", "data": {
        "c_total": [{"type": "counter", "help": "Counts things.", "unit": ""}],
        "h": [{"type": "histogram", "help": "", "unit": "seconds"}]}}  # fmt: skip
    assert list(client.get("/api/v1/metadata?metric=h").json["data"]) == ["h"]
    assert list(client.get("/api/v1/metadata?limit=1").json["data"]) == ["c_total"]
    assert client.get("/promql/other/api/v1/metadata").json["data"] == {}  # per dataset
    assert client.get("/api/v1/metadata?limit=x").status_code == 400


def test_stale_markers_and_series_left_empty_are_not_read(client) -> None:  # type: ignore[no-untyped-def]
    # a series whose only sample in range is a stale marker is left out, as a range selector
    # leaves it; the one with real samples around a marker keeps those samples
    src = client.application.extensions["filodb"].source("prometheus", 1.0)
    src.add(
        make_labels({"__name__": "st", "k": "1"}), [T0, T0 + 1000, T0 + 2000], [1.0, STALE, 3.0]
    )
    src.add(make_labels({"__name__": "st", "k": "2"}), [T0 + 1000], [STALE])
    body = encode_read_request([(T0, T0 + 2000, [Matcher("__name__", "=", "st")])])
    got = decode_samples(client.post("/api/v1/read", data=body).data)[0]
    assert list(got) == [make_labels({"__name__": "st", "k": "1"})]
    ts, vals = got[make_labels({"__name__": "st", "k": "1"})]
    assert ts.tolist() == [T0, T0 + 2000] and vals.tolist() == [1.0, 3.0]
    r = client.get(
        "/api/v1/export",
        query_string={"match[]": "st", "start": T0 / 1000, "end": (T0 + 2000) / 1000},
    )
    assert [orjson.loads(x)["values"] for x in r.data.splitlines()] == [[1, 3]]


def test_query_limits_apply_to_raw_reads(redis_url: str, written: dict) -> None:
    for limit, match in (
        ({"max_samples": 100}, "too many samples"),
        ({"max_series": 2}, "too many series"),
    ):
        cfg = Config(redis_url=redis_url, **limit)  # type: ignore[arg-type]
        svc = Services.from_config(cfg)
        src = _Source()
        for lb, (ts, vals) in written.items():
            src.add(lb, ts, vals)
        svc.source = lambda dataset, timeout_s, strict=False, s=src: s  # type: ignore[method-assign]
        c = create_app(cfg, svc).test_client()
        body = encode_read_request([(T0, T0 + 10**7, [Matcher("__name__", "=", "rr_metric")])])
        r = c.post("/api/v1/read", data=body)
        assert r.status_code == 422 and match in r.json["error"], r.data[:300]
