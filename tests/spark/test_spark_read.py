"""``spark.read.format("filodb")`` over a real SQLite column store written chunk by chunk: the
rows are exactly the stored samples in the window that the selector matches (stale markers,
duplicate chunks and other series left out), one partition per shard and window."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from filodb.errors import BadInputError
from filodb.memstore.chunks import encode_chunk
from filodb.model.labels import Labels, make_labels
from filodb.model.partkey import part_key
from filodb.query.values import STALE_NAN_BITS
from filodb.spark.options import parse_read_options
from filodb.spark.read import plan, read_window
from filodb.store import ChunkSet, PartKeyRecord, Stores, open_store

T0 = 1_700_000_000_000
STEP = 15_000
N = 480  # 2 h of samples per series
SHARDS = 3
CHUNK = 100
SELECTOR = '{__name__="x", job=~"a.*|w.*"}'
WINDOW = (T0 + 1_234_567, T0 + 6_000_000)  # not aligned to chunks or samples


def _series() -> dict[Labels, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    out = {}
    for i in range(24):
        name = "x" if i < 18 else "y"
        lb = make_labels({"__name__": name, "job": ("api", "db", "web")[i % 3], "i": str(i)})
        ts = T0 + STEP * np.arange(N) + (i % 5)
        vals = np.round(rng.normal(100, 30, N), 3)
        if i == 0:
            vals[200] = np.uint64(STALE_NAN_BITS).view(np.float64)
        out[lb] = (ts, vals)
    return out


def _write_store(stores: Stores, series: dict[Labels, tuple[np.ndarray, np.ndarray]]) -> None:
    stores.column.initialize("prometheus", SHARDS)
    for i, (lb, (ts, vals)) in enumerate(series.items()):
        pk, shard = part_key(lb), i % SHARDS
        chunks = [encode_chunk(ts[a : a + CHUNK], vals[a : a + CHUNK]) for a in range(0, N, CHUNK)]
        if i == 3:  # a chunk written again under another id (samples 150..249): duplicates
            chunks.append(encode_chunk(ts[150:250], vals[150:250]))
            chunks[-1].chunk_id += 1
        stores.column.write_chunks("prometheus", shard, [
            ChunkSet(pk, c.chunk_id, c.start, c.end, c.count, c.vectors) for c in chunks])  # fmt: skip
        stores.column.write_part_keys(
            "prometheus", shard, [PartKeyRecord(pk, int(ts[0]), int(ts[-1]))]
        )
    stores.close()


def _expected(
    series: dict[Labels, tuple[np.ndarray, np.ndarray]],
) -> dict[Labels, list[tuple[int, float]]]:
    """The reference: plain Python over the generated samples."""
    a, b = WINDOW
    out = {}
    for lb, (ts, vals) in series.items():
        d = dict(lb)
        if d["__name__"] != "x" or d["job"][0] not in "aw":
            continue
        rows = [(int(t), float(v)) for t, v in zip(ts, vals, strict=True)
                if a <= t <= b and np.float64(v).view(np.uint64) != STALE_NAN_BITS]  # fmt: skip
        if rows:
            out[lb] = rows
    return out


def _read_all(options: dict[str, str]) -> dict[Labels, list[tuple[int, float]]]:
    """Every partition read by the task function alone (no Spark)."""
    opts = parse_read_options(options)
    rows = []
    for task in plan(opts):
        for rb in read_window(opts, *task):
            d = rb.to_pydict()
            stamps = rb.column("timestamp").cast("int64").to_pylist()
            rows += [(dict(lb), t // 1000, v)
                     for lb, t, v in zip(d["labels"], stamps, d["value"], strict=True)]  # fmt: skip
    out = _group(rows)
    assert sum(map(len, out.values())) == len(rows), "a sample came twice"
    return out


def _group(rows: list[tuple[dict[str, str], int, float]]) -> dict[Labels, list[tuple[int, float]]]:
    out: dict[Labels, list[tuple[int, float]]] = {}
    for labels, t_ms, v in rows:
        out.setdefault(make_labels(labels), []).append((t_ms, v))
    return {k: sorted(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[Labels, Any]]:
    data_dir = tmp_path_factory.mktemp("spark-read") / "data"
    series = _series()
    _write_store(open_store("sqlite", data_dir), series)
    return str(data_dir), _expected(series)


def _opts(where: str, **over: str) -> dict[str, str]:
    return {"dataset": "prometheus", "selector": SELECTOR, "start": str(WINDOW[0] / 1000),
            "end": str(WINDOW[1] / 1000), "data_dir": where, "window": "20m", **over}  # fmt: skip


def test_task_reader_gives_the_stored_samples(stored) -> None:  # type: ignore[no-untyped-def]
    data_dir, want = stored
    assert _read_all(_opts(data_dir)) == want


def test_a_window_between_samples_or_a_selector_matching_nothing_reads_nothing(stored) -> None:  # type: ignore[no-untyped-def]
    data_dir = stored[0]
    between = (T0 + 5 * STEP + 5) / 1000  # inside a chunk, after every series' 6th sample
    assert _read_all(_opts(data_dir, start=str(between), end=str(between + 0.005))) == {}
    assert _read_all(_opts(data_dir, selector='{__name__="nope"}')) == {}


def test_spark_read_equals_the_store(spark, stored) -> None:  # type: ignore[no-untyped-def]
    from pyspark.sql import functions as F

    data_dir, want = stored
    df = spark.read.format("filodb").options(**_opts(data_dir)).load()
    assert (
        df.schema.simpleString()
        == "struct<labels:map<string,string>,timestamp:timestamp,value:double>"
    )
    n_windows = len(parse_read_options(_opts(data_dir)).windows())
    assert df.rdd.getNumPartitions() == SHARDS * n_windows
    rows = df.select("labels", F.unix_micros("timestamp").alias("us"), "value").collect()
    got = _group([(r["labels"], r["us"] // 1000, r["value"]) for r in rows])
    assert got == want
    assert len(rows) == sum(len(v) for v in want.values())


def test_read_from_cassandra(spark, cassandra_env) -> None:  # type: ignore[no-untyped-def]
    from pyspark.sql import functions as F

    where = {"cassandra_hosts": cassandra_env["FILODB_CASSANDRA_HOSTS"],
             "cassandra_port": cassandra_env["FILODB_CASSANDRA_PORT"], "keyspace": "spark_read"}  # fmt: skip
    stores = open_store("cassandra", "", hosts=where["cassandra_hosts"].split(","),
                        port=int(where["cassandra_port"]), keyspace="spark_read")  # fmt: skip
    stores.column.initialize("prometheus", SHARDS)
    stores.column.truncate("prometheus")
    series = _series()
    _write_store(stores, series)
    options = {**_opts("", window="6h"), "data_dir": "", **where}
    assert _read_all(options) == _expected(series)
    df = spark.read.format("filodb").options(**options).load()
    got = df.select("labels", F.unix_micros("timestamp").alias("us"), "value").collect()
    assert _group([(r["labels"], r["us"] // 1000, r["value"]) for r in got]) == _expected(series)


def test_spark_filters_and_aggregates_on_top(spark, stored) -> None:  # type: ignore[no-untyped-def]
    from pyspark.sql import functions as F

    data_dir, want = stored
    df = spark.read.format("filodb").options(**_opts(data_dir, window="1h")).load()
    got = {r["job"]: (r["n"], r["s"]) for r in
           df.groupBy(F.col("labels")["job"].alias("job"))
             .agg(F.count("*").alias("n"), F.sum("value").alias("s")).collect()}  # fmt: skip
    by_job: dict[str, list[float]] = {}
    for lb, rows in want.items():
        by_job.setdefault(dict(lb)["job"], []).extend(v for _, v in rows)
    assert set(got) == set(by_job)
    for job, vals in by_job.items():
        assert got[job][0] == len(vals)
        assert got[job][1] == pytest.approx(sum(vals), rel=1e-12)


@pytest.mark.parametrize(("over", "named"), [
    ({"selector": "x{job=~"}, "selector"),
    ({"selector": "rate(x[5m])"}, "selector"),
    ({"selector": ""}, "selector"),
    ({"start": "yesterday"}, "start"),
    ({"end": "1"}, "end"),
    ({"window": "-5m"}, "window"),
    ({"window": "1ms", "start": "0"}, "window"),
    ({"dataset": "no/such"}, "dataset"),
    ({"data_dir": "/nonexistent/filodb"}, "data_dir"),
    ({"datadir": "/tmp"}, "datadir"),
    ({"cassandra_hosts": "127.0.0.1"}, "data_dir"),
])  # fmt: skip
def test_bad_options_name_the_option(stored, over, named) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadInputError, match=f"option '{named}'"):
        parse_read_options(_opts(stored[0], **over))


def test_a_dataset_the_store_lacks_is_named_when_planning(stored) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadInputError, match="option 'dataset'.*nosuch"):
        plan(parse_read_options(_opts(stored[0], dataset="nosuch")))


def test_bad_selector_fails_the_spark_read_naming_the_option(spark, stored) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Exception, match="option 'selector'"):
        spark.read.format("filodb").options(**_opts(stored[0], selector='x{job="a"')).load().count()


def test_the_module_pyspark_finds_names_the_source() -> None:
    import pyspark_filodb
    from filodb.spark.source import FiloDBDataSource

    assert pyspark_filodb.DefaultSource is FiloDBDataSource
    assert FiloDBDataSource.name() == "filodb"


def test_an_overwritten_timestamp_reads_as_the_memstore_answers_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An out-of-order chunk (ooo_window) rewrote one timestamp and stored a stale marker at
    another: the last write wins, as in the memstore, and the marker hides the sample."""
    from filodb.memstore.chunks import ooo_id
    from filodb.memstore.shard import TimeSeriesShard
    from filodb.model.batch import SampleBatch
    from filodb.spark.read import read_samples

    _STALE = float(np.array([STALE_NAN_BITS], np.uint64).view(np.float64)[0])

    stores = open_store("sqlite", tmp_path / "data")
    stores.column.initialize("prometheus", 1)
    pk = part_key(make_labels({"__name__": "x", "job": "a"}))
    ts = T0 + STEP * np.arange(4)
    first = encode_chunk(ts, np.array([1.0, 2.0, 3.0, 4.0]))
    late = encode_chunk(ts[1:3], np.array([20.0, _STALE]))
    late_id = ooo_id(7, late.vectors[0], late.vectors[1])
    stores.column.write_chunks("prometheus", 0, [
        ChunkSet(pk, late_id, late.start, late.end, late.count, late.vectors),
        ChunkSet(pk, first.chunk_id, first.start, first.end, first.count, first.vectors)])  # fmt: skip
    owner, got_ts, got = read_samples(stores.column, "prometheus", 0, [pk], T0, T0 + 10 * STEP)
    assert got_ts.tolist() == [ts[0], ts[1], ts[3]] and got.tolist() == [1.0, 20.0, 4.0]
    # the memstore, holding the same writes, answers the same
    shard = TimeSeriesShard("prometheus", 0, ooo_window_ms=10 * STEP)
    lb = make_labels({"__name__": "x", "job": "a"})
    shard.ingest(SampleBatch([lb], np.zeros(4, np.int64), ts, np.array([1.0, 2.0, 3.0, 4.0])))
    shard.ingest(SampleBatch([lb], np.zeros(2, np.int64), ts[1:3],
                             np.array([20.0, _STALE])))  # fmt: skip
    block = shard.select([], T0, T0 + 10 * STEP)
    assert block.ts.tolist()[:2] == [ts[0], ts[1]] and block.vals.tolist()[1] == 20.0
