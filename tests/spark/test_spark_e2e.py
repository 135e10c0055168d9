"""The data source against a real ``filodb up``: what Spark reads from the column store is what
``/api/v1/export`` answers over the same selector and window, and a DataFrame written with
``df.write.format("filodb")`` is then queryable; a write the server refuses fails the job."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
import requests

from filodb.model.batch import SampleBatch
from filodb.model.labels import Labels, make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.spark.options import parse_read_options
from filodb.spark.read import read_window
from filodb.testing.cluster import UpProcess
from filodb.testing.wait import eventually

pytestmark = pytest.mark.e2e

T0 = 1_700_000_000_000
STEP = 15_000
N_SERIES, N_SAMPLES = 12, 240
ENV = {"FILODB_FLUSH_INTERVAL": "2", "FILODB_FLUSH_GROUPS": "2", "FILODB_MAX_CHUNK_SAMPLES": "64",
       "FILODB_MEMORY_BUDGET_MB": "0"}  # fmt: skip
SELECTOR = '{__name__="sp_x", job=~"a.*"}'
START, END = T0 + 700_000, T0 + 3_000_000  # inside the data, not on a sample


def _batch() -> SampleBatch:
    rng = np.random.default_rng(3)
    series = [make_labels({"__name__": "sp_x", "job": ("api", "db", "app")[i % 3], "i": str(i)})
              for i in range(N_SERIES)]  # fmt: skip
    ts = T0 + STEP * np.arange(N_SAMPLES)
    return SampleBatch(series, np.repeat(np.arange(N_SERIES), N_SAMPLES), np.tile(ts, N_SERIES),
                       np.round(rng.normal(50, 20, N_SERIES * N_SAMPLES), 4))  # fmt: skip


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    proc = UpProcess(tmp_path_factory.mktemp("spark-e2e") / "data", shards=2, env=ENV).start()
    try:
        r = requests.post(
            proc.url + "/api/v1/write", data=encode_write_request(_batch()), timeout=30
        )
        assert r.status_code == 204, r.text
        yield proc
    finally:
        proc.stop()


def _read_opts(up: UpProcess, selector: str, start: int, end: int) -> dict[str, str]:
    return {"dataset": "prometheus", "selector": selector, "start": str(start / 1000),
            "end": str(end / 1000), "data_dir": str(up.data_dir), "window": "30m"}  # fmt: skip


def _stored_samples(up: UpProcess) -> int:
    opts = parse_read_options(_read_opts(up, '{__name__="sp_x"}', T0, T0 + STEP * N_SAMPLES))
    return sum(rb.num_rows for s in range(2) for a, b in opts.windows()
               for rb in read_window(opts, s, a, b))  # fmt: skip


def _export(up: UpProcess, selector: str, start: int, end: int) -> dict[Labels, list[Any]]:
    r = requests.get(up.url + "/api/v1/export", timeout=30, params={
        "match[]": selector, "start": start / 1000, "end": end / 1000, "window": "1d"})  # fmt: skip
    assert r.status_code == 200, r.text
    out = {}
    for line in r.content.splitlines():
        d = orjson.loads(line)
        out[make_labels(d["metric"])] = list(zip(d["timestamps"], d["values"], strict=True))
    return out


def _spark_rows(df: Any) -> dict[Labels, list[Any]]:
    from pyspark.sql import functions as F

    out: dict[Labels, list[Any]] = {}
    for r in df.select("labels", F.unix_micros("timestamp").alias("us"), "value").collect():
        out.setdefault(make_labels(r["labels"]), []).append((r["us"] // 1000, r["value"]))
    return {k: sorted(v) for k, v in out.items()}


def test_spark_read_equals_export(spark, up) -> None:  # type: ignore[no-untyped-def]
    # flushes run every 2 s: wait until the column store holds every sample written
    eventually(lambda: _check(_stored_samples(up) == N_SERIES * N_SAMPLES), 90, 0.5)
    want = _export(up, SELECTOR, START, END)
    assert len(want) == 8 and all(want.values())  # the "api" and "app" series
    df = spark.read.format("filodb").options(**_read_opts(up, SELECTOR, START, END)).load()
    assert _spark_rows(df) == want


def test_dataframe_written_is_queryable(spark, up) -> None:  # type: ignore[no-untyped-def]
    from pyspark.sql import functions as F

    df = spark.read.format("filodb").options(**_read_opts(up, SELECTOR, START, END)).load()
    want = {make_labels((*lb, ("copy", "1"))): rows for lb, rows in _spark_rows(df).items()}
    copy = df.withColumn("labels", F.map_concat("labels", F.create_map(F.lit("copy"), F.lit("1"))))
    copy.repartition(3, F.to_json("labels")).write.format("filodb").mode("append").options(
        url=up.url, dataset="prometheus", batch_samples="500").save()  # fmt: skip

    def copied() -> None:
        assert _export(up, '{__name__="sp_x", copy="1"}', START, END) == want

    eventually(copied, 60, 0.5)


def test_refused_writes_fail_the_job(spark, up) -> None:  # type: ignore[no-untyped-def]
    df = spark.read.format("filodb").options(**_read_opts(up, SELECTOR, START, END)).load()
    with pytest.raises(Exception, match="nosuchds"):
        df.write.format("filodb").mode("append").options(url=up.url, dataset="nosuchds").save()
    with pytest.raises(Exception, match="option 'url'"):
        df.write.format("filodb").mode("append").options(dataset="prometheus").save()
    with pytest.raises(Exception, match="option 'mode'"):
        df.write.format("filodb").mode("overwrite").options(url=up.url).save()


def _check(ok: bool) -> None:
    assert ok
