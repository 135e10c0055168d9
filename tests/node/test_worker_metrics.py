"""A worker node's /metrics: a real NodeRuntime in this process (real Redis log, SQLite store,
no Celery) serves its port, records it in the node registry, and reports what its shards
ingested, their lag and its flushes."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from filodb.config import Config
from filodb.gateway.router import IngestRouter
from filodb.model.batch import SampleBatch
from filodb.model.exemplars import Exemplars
from filodb.model.labels import make_labels
from filodb.node.runtime import NodeRuntime
from filodb.shards.nodes import NodeRegistry
from filodb.testing.wait import eventually

T0 = 1_700_000_000_000


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name -> {sorted labels -> value}."""
    r = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert r.status_code == 200
    out: dict[str, dict] = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def per_shard(m: dict, name: str) -> dict[int, float]:
    return {int(dict(lb)["shard"]): v for lb, v in m.get(name, {}).items()}


@pytest.fixture
def node(redis_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    cfg = Config(redis_url=redis_url, data_dir=str(tmp_path), shards=2, heartbeat_interval=0.1,
                 flush_interval=3600.0)  # fmt: skip
    rt = NodeRuntime(cfg, "n1")
    rt.start()

    def both_active() -> None:
        assert len(rt.ingesters) == 2 and all(i.active for i in rt.ingesters.values()), (
            "the node's shards did not become Active"
        )

    eventually(both_active, timeout=30, interval=0.05)
    yield rt
    rt.stop()


def test_worker_metrics_follow_ingestion_and_flushes(node: NodeRuntime, redis_url: str) -> None:
    port = node.metrics_server.port
    entry = {n["name"]: n for n in NodeRegistry(redis_url).nodes()}["n1"]
    assert entry["metrics_port"] == port > 0

    series = [make_labels({"__name__": "wm", "i": str(i)}) for i in range(30)]
    ex = Exemplars(
        np.array([0, 1, 2, 0]),
        np.full(4, T0 + 3000),
        np.ones(4),
        [(("trace_id", str(i)),) for i in range(4)],
    )  # the last: a duplicate time
    batch = SampleBatch(series, np.repeat(np.arange(30), 4), np.tile(T0 + 1000 * np.arange(4), 30),
                        np.ones(120), exemplars=ex)  # fmt: skip
    per = IngestRouter(node.shard_map, node.ingest_log).write("prometheus", batch)
    late = SampleBatch(series[:5], np.arange(5), np.full(5, T0), np.ones(5))  # not newer: refused
    late_per = IngestRouter(node.shard_map, node.ingest_log).write("prometheus", late)
    ends = node.ingest_log.end_offsets("prometheus", [0, 1])

    def caught_up() -> None:
        assert all(node.ingesters[("prometheus", s)].offset >= ends[s] for s in (0, 1)), (
            "the ingesters did not catch up"
        )

    eventually(caught_up, timeout=20, interval=0.05)

    m = scrape(port)
    assert per_shard(m, "filodb_worker_samples_ingested_total") == {
        s: per.get(s, 0) for s in (0, 1)
    }
    rejected = m["filodb_worker_samples_rejected_total"]
    assert {int(dict(lb)["shard"]): v for lb, v in rejected.items()
            if dict(lb)["reason"] == "out_of_order"} == {s: late_per.get(s, 0) for s in (0, 1)}  # fmt: skip
    assert {dict(lb)["reason"] for lb in rejected} == {"out_of_order", "too_old"}
    assert sum(v for lb, v in rejected.items() if dict(lb)["reason"] == "too_old") == 0
    series_by_shard = per_shard(m, "filodb_worker_series")
    assert sum(series_by_shard.values()) == 30
    assert per_shard(m, "filodb_worker_log_offset") == {s: float(ends[s]) for s in (0, 1)}
    assert per_shard(m, "filodb_worker_log_lag_records") == {0: 0.0, 1: 0.0}
    assert m["filodb_worker_shards_owned"] == {
        (("dataset", "prometheus"), ("status", "Active")): 2.0
    }
    assert m["filodb_worker_fenced_total"] == {(): 0.0}
    assert m["filodb_worker_info"] == {(("node", "n1"),): 1.0}
    # the node's decoded-vector cache: its start budget (it grows only with queries)
    assert m["filodb_worker_decode_cache_budget_bytes"] == {(): float(64 << 20)}
    assert m["filodb_worker_decode_cache_lookups_total"] == {
        (("result", "hit"),): 0.0, (("result", "miss"),): 0.0}  # fmt: skip
    assert all(v > 0 for v in per_shard(m, "filodb_worker_memory_bytes").values())
    heads, chunks = (
        per_shard(m, "filodb_worker_head_bytes"),
        per_shard(m, "filodb_worker_chunk_bytes"),
    )
    assert all(v > 0 for v in heads.values())  # the samples are in the heads' pages
    assert {s: heads[s] + chunks[s] for s in heads} == per_shard(m, "filodb_worker_memory_bytes")
    assert sum(per_shard(m, "filodb_worker_exemplars_in_storage").values()) == 3
    assert sum(per_shard(m, "filodb_worker_exemplars_appended_total").values()) == 3
    assert sum(per_shard(m, "filodb_worker_exemplars_dropped_total").values()) == 1
    flushed_before = per_shard(m, "filodb_worker_flush_duration_seconds_count")  # process-wide

    before = time.time()
    for g in range(node.cfg.flush_groups):
        node.flush("prometheus", 0, g)
    m = scrape(port)
    counts = per_shard(m, "filodb_worker_flush_duration_seconds_count")
    assert counts[0] - flushed_before.get(0, 0) == node.cfg.flush_groups
    assert counts.get(1, 0) == flushed_before.get(1, 0)
    assert per_shard(m, "filodb_worker_last_flush_timestamp_seconds")[0] >= before
    assert per_shard(m, "filodb_worker_last_flush_timestamp_seconds")[1] == 0


def test_metrics_server_closes_with_the_node(node: NodeRuntime) -> None:
    port = node.metrics_server.port
    assert scrape(port)["filodb_worker_info"] == {(("node", "n1"),): 1.0}
    node.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
