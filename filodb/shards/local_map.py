"""A process-local copy of the shard map, kept current from the shard-event stream.

The web tier asks it which shards are Active before every fan-out, so a query costs no Redis
read for the map. A background thread subscribes to the events; the stream starts with a
snapshot of every dataset (read after subscribing, so no event falls in between), then each
event replaces one shard's state. While the thread is not connected (Redis restarting), or
before its first snapshot, reads go to Redis directly: the copy is never trusted when stale.
An event reaches the copy a moment after the map changed in Redis, so a copy that says some
shard is not Active is confirmed by one Redis read: a shard that has just become Active (a
writer saw it so in the status and queried at once) is never reported missing from a lagging
copy. When all are Active, the copy answers alone, the common case.
"""

from __future__ import annotations

import logging
import threading
import time

from filodb.shards.redis_map import ShardMapStore
from filodb.shards.state import ShardState, ShardStatus

log = logging.getLogger(__name__)
WARN_EVERY_S = 60.0


class LocalShardMap:
    """Shard states by dataset, fed by pub/sub; thread-safe."""

    def __init__(self, shard_map: ShardMapStore, start: bool = True) -> None:
        self.shard_map = shard_map
        self._maps: dict[str, dict[int, ShardState]] = {}
        self._lock = threading.Lock()
        self._synced = threading.Event()
        self._stop = threading.Event()
        self.events_seen = 0
        self.fallback_reads = 0
        self.confirm_reads = 0  # Redis reads because the copy had a shard not Active
        self._thread = threading.Thread(target=self._run, name="shard-map", daemon=True)
        if start:
            self._thread.start()

    def close(self) -> None:
        self._stop.set()

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    def states(self, dataset: str) -> dict[int, ShardState]:
        """The dataset's shard states: the local copy when in sync and all Active, else read
        from Redis."""
        m = None
        if self._synced.is_set():
            with self._lock:
                m = self._maps.get(dataset)
            if m is not None and all(st.status is ShardStatus.ACTIVE for st in m.values()):
                return dict(m)
        if m is None:
            self.fallback_reads += 1
        else:
            self.confirm_reads += 1
        return {s.shard: s for s in self.shard_map.shard_states(dataset)}

    def apply(self, ev: dict) -> None:
        """Fold one event (or snapshot, or the end of the snapshots) into the copy."""
        if ev.get("event") == "ShardMapSnapshotEnd":
            self._synced.set()
            return
        if ev.get("event") == "ShardMapSnapshot":
            states = {d["shard"]: ShardState.from_json(d) for d in ev.get("shards_state", [])}
            with self._lock:
                self._maps[ev["dataset"]] = states
            return
        st = ShardState.from_json(ev)
        with self._lock:
            self._maps.setdefault(st.dataset, {})[st.shard] = st
        self.events_seen += 1

    def _run(self) -> None:
        backoff = 0.2
        warned_at = float("-inf")  # one warning a minute while Redis stays away
        while not self._stop.is_set():
            try:
                with self._lock:
                    self._maps.clear()
                for ev in self.shard_map.follow_events(timeout_s=None, snapshot=True,
                                                   idle=self._stop.is_set, snapshot_end=True):  # fmt: skip
                    if ev.get("event") == "ShardMapSnapshotEnd":
                        backoff = 0.2
                    self.apply(ev)
            except Exception as e:  # noqa: BLE001 - Redis down: read through until back
                self._synced.clear()
                now = time.monotonic()
                if backoff == 0.2 or now - warned_at >= WARN_EVERY_S:
                    warned_at = now
                    log.warning("shard map stream lost (%s); reading Redis directly meanwhile", e)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
