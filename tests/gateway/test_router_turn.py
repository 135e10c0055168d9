"""The doors' CPU turn (:data:`filodb.gateway.router.CPU_TURN`): bodies take turns at their
CPU work but not at their log appends, so concurrent bodies still share one append call (the
log's group commit) while one of them waits on its round trip."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from filodb.gateway.router import CPU_TURN, IngestRouter
from filodb.ingest.redis_streams import RedisStreamsLog
from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.shards.redis_map import ShardMapStore

DS = "prometheus"
T0 = 1_700_000_000_000


class _HeldLog(RedisStreamsLog):
    """Redis Streams whose first append waits for ``release``; ``entered`` counts appends."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.release = threading.Event()
        self.first_in = threading.Event()
        self.entered = 0

    def append_begin(self, dataset: str, records: Mapping[int, Sequence[bytes]]
                     ) -> Callable[[], dict[int, list[int]]]:  # fmt: skip
        self.entered += 1
        if self.entered == 1:
            self.first_in.set()
            assert self.release.wait(30)
        return super().append_begin(dataset, records)


def _batch(job: str) -> SampleBatch:
    series = [make_labels({"__name__": "up", "job": job, "instance": f"i{i}"}) for i in range(50)]
    return SampleBatch(series, np.arange(50), np.full(50, T0), np.ones(50))


def test_a_write_waiting_on_its_append_leaves_the_turn_to_others(redis_url: str) -> None:
    ShardMapStore(redis_url).create_dataset(DS, 4, 1)
    log = _HeldLog(redis_url)
    router = IngestRouter(ShardMapStore(redis_url), log)
    first = threading.Thread(target=router.write, args=(DS, _batch("a")), daemon=True)
    first.start()
    try:
        assert log.first_in.wait(30)
        assert not CPU_TURN.locked()  # the first write is in its append, not in its turn
        second: dict[int, int] = {}
        done = threading.Thread(target=lambda: second.update(router.write(DS, _batch("b"))),
                                daemon=True)  # fmt: skip
        done.start()
        done.join(30)
        assert sum(second.values()) == 50 and log.entered == 2
    finally:
        log.release.set()
        first.join(30)
    assert not first.is_alive()
    ends = log.end_offsets(DS, [0, 1, 2, 3])
    assert sum(ends.values()) >= 2  # both writes' records are in the log
