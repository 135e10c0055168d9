"""A door's concurrent writes joined: the batches queued while a group is written go in the
next group, each request gets its own counts or its group's error, and through a real log
every sample of concurrent bodies is there once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import pytest

from filodb.gateway.door import IngestDoor
from filodb.gateway.influx import parse_lines
from filodb.gateway.joiner import QUEUED, WriteJoiner, run_steps
from filodb.gateway.router import IngestRouter
from filodb.ingest.redis_streams import RedisStreamsLog
from filodb.model.batch import SampleBatch, concat_batches
from filodb.model.dataset import Dataset
from filodb.shards.metadata import MetadataStore
from filodb.shards.redis_map import ShardMapStore
from filodb.testing.wait import wait_for

DS = "prometheus"
T0 = 1_700_000_000_000


class Accepted:
    """What a door counts accepted, per write."""

    def __init__(self) -> None:
        self.accepted: list[int] = []

    def samples_accepted(self, door: str, n: int) -> None:
        self.accepted.append(n)

    def samples_rejected(self, door: str, reason: str, n: int) -> None:
        raise AssertionError(f"{n} samples rejected: {reason}")

    def request_rejected(self, door: str, reason: str) -> None:
        raise AssertionError(f"a request rejected: {reason}")


def _body(host: int, n: int, at_ms: int) -> SampleBatch:
    lines = "".join(
        f"jw,host=h{host},i=i{i} v={i}.5 {(T0 + at_ms) * 1_000_000}\n" for i in range(n)
    )
    return parse_lines(lines.encode(), precision="ns", now_ms=T0).batch


class GatedRouter:
    """Counts per shard as a router would (all in shard 0); its first group's records wait for
    ``release`` (``gate="begin"``: the joiner's turn is held meanwhile) or its first group's
    append does (``gate="wait"``: the turn is free meanwhile); ``fail`` makes group writes
    raise. ``log`` records the order of begins and ends of the appends."""

    def __init__(self, gate: str = "begin") -> None:
        self.release = threading.Event()
        self.groups: list[list[int]] = []  # batch sizes of each write_many call
        self.fail: Exception | None = None
        self.gate = gate
        self.log: list[tuple[str, int]] = []

    def write(
        self, dataset: str, batch: SampleBatch, desc: Dataset | None = None
    ) -> dict[int, int]:
        outs, wait = self.write_many_begin(dataset, [batch], desc)
        wait()
        return outs[0]

    def write_many_begin(self, dataset: str, batches: Sequence[SampleBatch],
                         desc: Dataset | None = None
                         ) -> tuple[list[dict[int, int]], Callable[[], object]]:  # fmt: skip
        first = not self.groups
        k = len(self.groups)
        self.groups.append([len(b) for b in batches])
        self.log.append(("begin", k))
        if first and self.gate == "begin":
            assert self.release.wait(30)
        if self.fail is not None:
            raise self.fail

        def wait() -> None:
            if first and self.gate == "wait":
                assert self.release.wait(30)
            self.log.append(("end", k))

        return [{0: len(b)} for b in batches], wait


def _run_three(router: GatedRouter) -> tuple[WriteJoiner, dict[int, object]]:
    """Body 0 is written alone (its group waits); bodies 1 and 2 queue meanwhile."""
    joiner = WriteJoiner(router)  # type: ignore[arg-type]
    got: dict[int, object] = {}

    def write(k: int, batch: SampleBatch) -> None:
        try:
            got[k] = joiner.write(DS, batch)
        except Exception as e:  # noqa: BLE001 - what each request is told
            got[k] = e

    bodies = [_body(k, 3 + k, 0) for k in range(3)]
    first = threading.Thread(target=write, args=(0, bodies[0]))
    first.start()
    wait_for(lambda: router.groups, 10, "the first group", interval=0.005)
    rest = [threading.Thread(target=write, args=(k, bodies[k])) for k in (1, 2)]
    for t in rest:
        t.start()
    wait_for(lambda: len(joiner._queued) == 2, 10, "two bodies queued", interval=0.005)
    router.release.set()
    for t in (first, *rest):
        t.join(30)
    return joiner, got


def test_bodies_queued_while_a_group_is_written_are_written_together() -> None:
    router = GatedRouter()
    joiner, got = _run_three(router)
    assert router.groups == [[3], [4, 5]]  # body 0 alone (nothing waited), then 1 and 2 in one
    assert got == {0: {0: 3}, 1: {0: 4}, 2: {0: 5}}  # each its own counts
    assert (joiner.groups, joiner.joined) == (2, 3)


def test_the_next_group_is_made_while_an_append_travels_and_answers_wait_for_their_own() -> None:
    """The turn keeps the groups' order but is not held over the log's round trip: with the
    first group's append in flight, the next group is begun (its records queued after the
    first's), and a request returns only after its own group's append ended."""
    router = GatedRouter(gate="wait")
    joiner = WriteJoiner(router)  # type: ignore[arg-type]
    got: dict[int, object] = {}
    bodies = [_body(k, 3 + k, 0) for k in range(2)]
    threads = [threading.Thread(target=lambda k=k: got.__setitem__(k, joiner.write(DS, bodies[k])))
               for k in range(2)]  # fmt: skip
    threads[0].start()
    wait_for(lambda: router.log == [("begin", 0)], 10, "the first group begun", interval=0.005)
    threads[1].start()
    wait_for(lambda: ("begin", 1) in router.log, 10, "the second group begun meanwhile",
             interval=0.005)  # fmt: skip
    assert 0 not in got  # the first group's append is still in flight: not answered
    router.release.set()
    for t in threads:
        t.join(30)
    assert router.log.index(("begin", 1)) < router.log.index(("end", 0))
    assert got == {0: {0: 3}, 1: {0: 4}} and router.groups == [[3], [4]]


def test_writes_taken_in_steps_together_are_one_group() -> None:
    """As the web server's ingestion loop takes a pass's requests: each to where it is only
    queued, then each to where its records are in the log, then each through. The first to
    go on makes one group of all of them; each gets its own counts."""
    router = GatedRouter()
    router.release.set()
    joiner = WriteJoiner(router)  # type: ignore[arg-type]
    steps = [joiner.write_steps(DS, _body(k, 3 + k, 0)) for k in range(3)]
    assert [next(st) for st in steps] == [QUEUED] * 3
    assert [next(st) for st in steps] == [None] * 3  # at the log: one group for the three
    assert router.groups == [[3, 4, 5]] and (joiner.groups, joiner.joined) == (1, 3)
    assert [run_steps(st) for st in steps] == [{0: 3}, {0: 4}, {0: 5}]
    assert router.log == [("begin", 0), ("end", 0)]


def test_a_failed_group_write_fails_every_request_in_it() -> None:
    router = GatedRouter()
    router.fail = ConnectionError("log down")
    _, got = _run_three(router)
    assert router.groups == [[3], [4, 5]]
    assert all(isinstance(got[k], ConnectionError) for k in range(3))


def test_a_batch_no_cache_resolved_is_written_alone_at_once() -> None:
    router = GatedRouter()
    router.release.set()
    joiner = WriteJoiner(router)  # type: ignore[arg-type]
    plain = concat_batches([_body(1, 2, 0), _body(2, 2, 0)])  # a list of label sets: no cache's
    assert joiner.write(DS, plain) == {0: 4}
    assert joiner.write(DS, SampleBatch.empty()) == {0: 0}
    assert joiner.groups == 0  # neither went through a group


@pytest.fixture
def url(redis_url: str) -> str:
    ShardMapStore(redis_url).create_dataset(DS, 4, 1)
    return redis_url


def test_concurrent_bodies_reach_the_log_once_each(url: str) -> None:
    """8 threads x 6 bodies through a real door, router and Redis log: joined or not, the log
    holds every sample once, and the counts each write returned add up to them."""
    counts = Accepted()
    router = IngestRouter(ShardMapStore(url), RedisStreamsLog(url, socket_timeout=5))
    door = IngestDoor("influx_http", router, MetadataStore(url), counts)
    per: list[int] = []
    lock = threading.Lock()

    def sender(k: int) -> None:
        for j in range(6):  # disjoint series (tests/model/test_joined.py: shared ones)
            out = door.write(DS, _body(k, 20 + k, j * 15_000))
            with lock:
                per.append(sum(out.values()))

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    want = sum(6 * (20 + k) for k in range(8))
    got = RedisStreamsLog(url).read(DS, dict.fromkeys(range(4), 0), 10_000, 0)
    logged = concat_batches([SampleBatch.from_bytes(r) for recs in got.values() for _, r in recs])
    rows = sorted(zip([tuple(logged.series[i]) for i in logged.sidx.tolist()],
                      logged.ts.tolist(), logged.vals.tolist(), strict=True))  # fmt: skip
    sent = sorted((tuple(b.series[i]), t, v) for k in range(8) for j in range(6)
                  for b in [_body(k, 20 + k, j * 15_000)]
                  for i, t, v in zip(b.sidx.tolist(), b.ts.tolist(), b.vals.tolist(), strict=True))  # fmt: skip
    assert len(per) == 48 and sum(per) == want == len(rows)
    assert rows == sent
    assert sorted(counts.accepted) == sorted(per)  # counted per request, as written
    assert door.joiner is not None and door.joiner.joined == 48  # all joined (~16 groups here)


def test_a_pass_of_bodies_is_one_record_a_shard_in_one_call(url: str, redis_url: str) -> None:
    """Through a real door, router and log, bodies taken in steps together (the ingestion
    loop's pass) and sent with ``send_appends``: one record a shard for all of them, one
    script call, and every sample there once."""
    import select

    import redis

    log = RedisStreamsLog(url, socket_timeout=5)
    door = IngestDoor("influx_http", IngestRouter(ShardMapStore(url), log),
                      MetadataStore(url), Accepted())  # fmt: skip
    door.write(DS, _body(9, 50, 0))  # the series' cache and the script warm
    stats = redis.Redis.from_url(redis_url)
    before = stats.info("commandstats")["cmdstat_evalsha"]["calls"]
    ends = log.end_offsets(DS, list(range(4)))
    bodies = [_body(k, 40, 15_000) for k in range(4)]
    steps = [door.write_steps(DS, b) for b in bodies]
    assert [next(st) for st in steps] == [QUEUED] * 4
    assert [next(st) for st in steps] == [None] * 4
    sent = log.send_appends()
    assert sent is not None and sent.jobs == 1  # one group: one append
    select.select([sent.fileno()], [], [], 10)
    sent.finish()
    outs = [run_steps(st) for st in steps]
    assert [sum(o.values()) for o in outs] == [40] * 4
    assert stats.info("commandstats")["cmdstat_evalsha"]["calls"] == before + 1
    got = log.read(DS, ends, 10_000, 0)
    assert all(len(recs) == 1 for recs in got.values())  # a record a shard for the four
    logged = concat_batches([SampleBatch.from_bytes(r) for recs in got.values() for _, r in recs])
    rows = sorted(zip([tuple(logged.series[i]) for i in logged.sidx.tolist()],
                      logged.ts.tolist(), logged.vals.tolist(), strict=True))  # fmt: skip
    assert rows == sorted((tuple(b.series[i]), t, v) for b in bodies for i, t, v in
                          zip(b.sidx.tolist(), b.ts.tolist(), b.vals.tolist(), strict=True))  # fmt: skip
