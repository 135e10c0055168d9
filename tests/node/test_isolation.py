"""One dataset that cannot start does not stop a node's loop for the others: its shards go to
Error with the reason, the rest become Active and keep being served."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from filodb.config import Config
from filodb.node.runtime import NodeRuntime
from filodb.shards.redis_map import ShardMapStore
from filodb.shards.state import ShardStatus
from filodb.store.base import Stores
from filodb.testing.wait import eventually


class RefusingColumnStore:
    """The real column store, except that it cannot initialize one dataset."""

    def __init__(self, inner: Any, refuse: str) -> None:
        self.inner, self.refuse = inner, refuse

    def initialize(self, dataset: str, num_shards: int) -> None:
        if dataset == self.refuse:
            raise OSError(f"disk says no to {dataset}")
        self.inner.initialize(dataset, num_shards)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_dataset_that_cannot_start_spoils_no_other(redis_url: str, tmp_path: Path) -> None:
    cfg = Config(redis_url=redis_url, data_dir=str(tmp_path), shards=2, heartbeat_interval=0.1,
                 flush_interval=3600.0)  # fmt: skip
    maps = ShardMapStore(redis_url)
    maps.create_dataset("broken", 2, 0)
    rt = NodeRuntime(cfg, "n1")
    rt.stores = Stores(RefusingColumnStore(rt.stores.column, "broken"), rt.stores.meta)  # type: ignore[arg-type]
    rt.start()
    try:

        def settled() -> None:
            good = {s.shard: s.status for s in maps.shard_states("prometheus")}
            bad = maps.shard_states("broken")
            assert good == {0: ShardStatus.ACTIVE, 1: ShardStatus.ACTIVE}
            assert all(s.status is ShardStatus.ERROR for s in bad), bad
            assert all("OSError: disk says no to broken" in s.error for s in bad), bad

        eventually(settled, timeout=30, interval=0.05)
        assert rt.memstore("prometheus", 0) is not None and rt.memstore("broken", 0) is None
        beats = [n["last_heartbeat"] for n in rt.registry.nodes() if n["name"] == "n1"]

        def still_beating() -> None:  # the loop goes on after the failure
            now = [n["last_heartbeat"] for n in rt.registry.nodes() if n["name"] == "n1"]
            assert now and now[0] > beats[0]

        eventually(still_beating, timeout=10, interval=0.05)
        from filodb.web import create_app

        web = create_app(cfg).test_client()
        rows = web.get("/api/v1/cluster/broken/status").json["data"]
        assert all(r["status"] == "Error" and "disk says no" in r["error"] for r in rows)
        health = web.get("/admin/health")
        assert health.status_code == 503 and {r["dataset"] for r in health.json["not_active"]} == {
            "broken"
        }
    finally:
        rt.stop()
