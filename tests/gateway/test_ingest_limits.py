"""The ingest limits of a dataset at the door, against a real Redis: past a series limit the
new series' samples are refused and the others written, the error names the limit and the
refused samples; the count is shared by every door (process) and forgets series silent for
longer than the retention; past the ingest rate a whole batch is refused with a wait."""

from __future__ import annotations

import numpy as np
import pytest
import redis

from filodb.config import Config
from filodb.errors import LimitExceededError, RateLimitedError
from filodb.gateway.door import IngestDoor
from filodb.gateway.limits import IngestLimiter
from filodb.gateway.router import IngestRouter
from filodb.ingest.redis_streams import RedisStreamsLog
from filodb.model.batch import SampleBatch, concat_batches
from filodb.model.labels import Labels, make_labels
from filodb.shards.limits import LimitsStore
from filodb.shards.metadata import MetadataStore
from filodb.shards.redis_map import ShardMapStore

T0 = 1_700_000_000_000


class Counts:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def samples_accepted(self, door: str, n: int) -> None:
        self.calls.append(("accepted", n))

    def samples_rejected(self, door: str, reason: str, n: int) -> None:
        self.calls.append(("rejected", reason, n))

    def request_rejected(self, door: str, reason: str) -> None:
        self.calls.append(("refused", reason))


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _series(metric: str, ids: range) -> list[Labels]:
    return [make_labels({"__name__": metric, "i": str(i)}) for i in ids]


def _batch(series: list[Labels], per: int = 2) -> SampleBatch:
    n = len(series)
    return SampleBatch(series, np.repeat(np.arange(n), per), np.tile(T0 + np.arange(per), n),
                       np.ones(n * per))  # fmt: skip


def _door(url: str, clock: Clock | None = None) -> tuple[IngestDoor, Counts]:
    counts = Counts()
    router = IngestRouter(ShardMapStore(url), RedisStreamsLog(url))
    limiter = IngestLimiter(LimitsStore(url), Config(redis_url=url), clock or Clock(1e9))
    return IngestDoor("remote_write", router, MetadataStore(url), counts, limiter), counts


def _logged(url: str, ds: str) -> set[Labels]:
    got = RedisStreamsLog(url).read(ds, dict.fromkeys(range(4), 0), 1000, 0)
    b = concat_batches([SampleBatch.from_bytes(r) for recs in got.values() for _, r in recs])
    return set(b.series)


def test_max_series_refuses_new_series_and_writes_known_ones(redis_url: str) -> None:
    ShardMapStore(redis_url).create_dataset("lim", 4, 1, limits={"max_series": 5})
    door, counts = _door(redis_url)
    first = _series("a", range(8))
    with pytest.raises(LimitExceededError) as e:
        door.write("lim", _batch(first))
    assert e.value.http_status == 400
    msg = str(e.value)
    assert (
        "max_series=5" in msg
        and "6 samples of 3 new series" in msg
        and "the other 10 samples were written" in msg
    )
    assert _logged(redis_url, "lim") == set(first[:5])
    assert counts.calls == [("rejected", "max_series", 6), ("accepted", 10)]
    # known series are still accepted, alone or beside refused new ones
    door.write("lim", _batch(first[:5], 3))
    with pytest.raises(LimitExceededError, match="2 samples of 1 new series"):
        door.write("lim", _batch(first[2:4] + _series("b", range(1))))
    assert counts.calls[2:] == [("accepted", 15), ("rejected", "max_series", 2), ("accepted", 4)]
    assert LimitsStore(redis_url).refused("lim") == {"max_series": 8}


def test_the_count_is_shared_by_every_door(redis_url: str) -> None:
    ShardMapStore(redis_url).create_dataset("lim", 4, 1, limits={"max_series": 4})
    d1, _ = _door(redis_url)
    d2, c2 = _door(redis_url)  # another web process
    d1.write("lim", _batch(_series("a", range(3))))
    with pytest.raises(LimitExceededError, match="2 samples of 1 new series"):
        d2.write("lim", _batch(_series("a", range(2, 4)) + _series("a", range(9, 10))))
    assert c2.calls == [("rejected", "max_series", 2), ("accepted", 4)]
    assert LimitsStore(redis_url).series_count("lim") == 4


def test_max_series_per_metric(redis_url: str) -> None:
    ShardMapStore(redis_url).create_dataset("lim", 4, 1, limits={"max_series_per_metric": 2})
    door, counts = _door(redis_url)
    with pytest.raises(LimitExceededError, match="max_series_per_metric=2 refused 6 samples of 3"):
        door.write("lim", _batch(_series("a", range(3)) + _series("b", range(4))))
    assert _logged(redis_url, "lim") == set(_series("a", range(2)) + _series("b", range(2)))
    assert counts.calls == [("rejected", "max_series_per_metric", 6), ("accepted", 8)]


def test_series_silent_past_the_retention_leave_the_count(redis_url: str) -> None:
    ShardMapStore(redis_url).create_dataset("lim", 4, 1, retention_s=100,
                                            limits={"max_series": 3})  # fmt: skip
    door, _ = _door(redis_url, Clock(1000.0))
    door.write("lim", _batch(_series("a", range(3))))
    with pytest.raises(LimitExceededError):
        _door(redis_url, Clock(1050.0))[0].write("lim", _batch(_series("b", range(1))))
    later, counts = _door(redis_url, Clock(1101.0))  # a was last seen at 1000: gone
    later.write("lim", _batch(_series("b", range(3))))
    assert counts.calls == [("accepted", 6)]
    assert LimitsStore(redis_url).series_count("lim") == 3


def test_ingest_rate_refuses_the_whole_batch_with_a_wait(redis_url: str) -> None:
    ShardMapStore(redis_url).create_dataset("lim", 4, 1, limits={"ingest_samples_per_s": 10})
    door, counts = _door(redis_url)
    door.write("lim", _batch(_series("a", range(5))))  # 10 samples: the whole bucket
    with pytest.raises(RateLimitedError) as e:
        door.write("lim", _batch(_series("a", range(5))))
    assert e.value.http_status == 429 and 0 < e.value.retry_after_s <= 1.0
    assert "ingest_samples_per_s=10" in str(e.value)
    assert counts.calls == [("accepted", 10), ("rejected", "ingest_samples_per_s", 10)]
    assert LimitsStore(redis_url).refused("lim") == {"ingest_samples_per_s": 10}


def test_no_limits_touch_no_limit_state(redis_url: str) -> None:
    ShardMapStore(redis_url).create_dataset("free", 4, 1)
    door, counts = _door(redis_url)
    door.write("free", _batch(_series("a", range(50))))
    assert counts.calls == [("accepted", 100)]
    r = redis.Redis.from_url(redis_url)
    assert r.keys("filodb:series:*") == [] and r.keys("filodb:bucket:*") == []


def test_config_defaults_apply_to_datasets_without_limits(redis_url: str) -> None:
    ShardMapStore(redis_url).create_dataset("dflt", 4, 1)
    counts = Counts()
    router = IngestRouter(ShardMapStore(redis_url), RedisStreamsLog(redis_url))
    cfg = Config(redis_url=redis_url, dataset_max_series=2)
    door = IngestDoor("remote_write", router, MetadataStore(redis_url), counts,
                      IngestLimiter(LimitsStore(redis_url), cfg))  # fmt: skip
    with pytest.raises(LimitExceededError, match="max_series=2"):
        door.write("dflt", _batch(_series("a", range(3))))
