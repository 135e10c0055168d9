"""The HTTP ingestion door against a real Redis: a batch is durable in the log when ``write``
returns, its metadata is kept after it, and every sample is counted once, as accepted or as
rejected with the reason the web tier's metrics report."""

from __future__ import annotations

import numpy as np
import pytest

from filodb.errors import BadInputError, ErrPayloadTooLarge, UnknownDatasetError
from filodb.gateway.door import IngestDoor
from filodb.gateway.router import IngestRouter
from filodb.ingest.redis_streams import RedisStreamsLog
from filodb.model.batch import SampleBatch, concat_batches
from filodb.model.exemplars import Exemplars
from filodb.model.labels import make_labels
from filodb.model.partkeys import PartKeys
from filodb.prom import remote_write as rw
from filodb.redisproc import free_port
from filodb.shards.metadata import MetadataStore
from filodb.shards.redis_map import ShardMapStore

DS = "prometheus"
META = [{"metric": "w", "type": "gauge", "help": "A gauge.", "unit": ""}]


class Counts:
    """Records what a door counts, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def samples_accepted(self, door: str, n: int) -> None:
        self.calls.append(("accepted", door, n))

    def samples_rejected(self, door: str, reason: str, n: int) -> None:
        self.calls.append(("rejected", door, reason, n))

    def request_rejected(self, door: str, reason: str) -> None:
        self.calls.append(("refused", door, reason))


def _batch(n_series: int, per: int) -> SampleBatch:
    series = [make_labels({"__name__": "w", "i": str(i)}) for i in range(n_series)]
    return SampleBatch(series, np.repeat(np.arange(n_series), per),
                       np.tile(1_700_000_000_000 + np.arange(per), n_series),
                       np.arange(float(n_series * per)))  # fmt: skip


def _door(url: str, log_url: str | None = None) -> tuple[IngestDoor, Counts]:
    counts = Counts()
    router = IngestRouter(ShardMapStore(url), RedisStreamsLog(log_url or url, socket_timeout=2))
    return IngestDoor("remote_write", router, MetadataStore(url), counts), counts


@pytest.fixture
def url(redis_url: str) -> str:
    ShardMapStore(redis_url).create_dataset(DS, 4, 1)
    return redis_url


def test_write_is_in_the_log_and_counted(url: str) -> None:
    door, counts = _door(url)
    per_shard = door.write(DS, _batch(10, 3), META)
    assert sum(per_shard.values()) == 30
    got = RedisStreamsLog(url).read(DS, dict.fromkeys(range(4), 0), 1000, 0)
    logged = concat_batches([SampleBatch.from_bytes(r) for recs in got.values() for _, r in recs])
    assert len(logged) == 30 and {len(recs) for recs in got.values()} <= {0, 1}
    assert MetadataStore(url).get(DS) == {"w": {"type": "gauge", "help": "A gauge.", "unit": ""}}
    assert counts.calls == [("accepted", "remote_write", 30)]


def test_unknown_dataset_is_rejected_and_raised(url: str) -> None:
    door, counts = _door(url)
    with pytest.raises(UnknownDatasetError):
        door.write("nosuch", _batch(2, 2), META)
    assert counts.calls == [("rejected", "remote_write", "unknown_dataset", 4)]
    assert MetadataStore(url).get("nosuch") == {}  # nothing kept of a failed write


def test_log_down_is_log_unavailable(url: str) -> None:
    door, counts = _door(url, log_url=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the backend raises
        door.write(DS, _batch(3, 1), META)
    assert counts.calls == [("rejected", "remote_write", "log_unavailable", 3)]
    assert MetadataStore(url).get(DS) == {}


def test_rejected_lines_and_requests(url: str) -> None:
    door, counts = _door(url)
    door.reject_samples("malformed_line", 2)
    door.reject_request(BadInputError("garbage"))
    door.reject_request(ErrPayloadTooLarge("4 GiB"))
    assert counts.calls == [("rejected", "remote_write", "malformed_line", 2),
                            ("refused", "remote_write", "malformed"),
                            ("refused", "remote_write", "too_large")]  # fmt: skip


def test_records_of_a_decoded_body_are_to_bytes_byte_for_byte(url: str) -> None:
    """A remote-write batch hands its part keys down as the series cache's arena; the router's
    records are what ``to_bytes`` writes, exemplars and types included."""
    b = _batch(40, 2)
    b.exemplars = Exemplars(np.array([3], np.int32), np.array([1_700_000_000_000]),
                            np.array([0.5]), [(("trace_id", "t1"),)])  # fmt: skip
    batch = rw.decode_write_request(rw.encode_write_request(b, META))
    batch.types = {"w": "gauge"}
    assert isinstance(batch.pks, PartKeys) and batch.exemplars is not None
    router = IngestRouter(ShardMapStore(url), RedisStreamsLog(url))
    router.write(DS, batch)
    got = RedisStreamsLog(url).read(DS, dict.fromkeys(range(4), 0), 1000, 0)
    parts = batch.split(router._shards(router.dataset(DS), batch), 4)
    assert len(parts) > 1
    for shard, part in parts.items():
        assert [r for _, r in got[shard]] == [part.to_bytes()]
        back = SampleBatch.from_bytes(got[shard][0][1])
        assert back.series == part.series and back.ts.tolist() == part.ts.tolist()
    assert sorted(got) == sorted(parts)
