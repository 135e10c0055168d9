"""Out-of-order samples refused at the HTTP doors (:func:`filodb.gateway.door.without_late`):
real decoders (remote write, Influx line protocol) and their series-key caches, a door, and a
router that keeps what it is given in memory (the order the log would hold it).

The rule, checked against a model over random interleavings of bodies: a sample is refused
iff it is more than the window older than the newest timestamp of its series written before
its body and no sample of its series in the body reaches that newest (such a body is a
resend, or overlaps it: left to the worker); everything else is written, and the write
answers 400 naming what was refused.
"""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Callable

import numpy as np
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from filodb.errors import OutOfOrderError, UnavailableError
from filodb.gateway.door import Epochs, IngestDoor, note_routed, without_late
from filodb.gateway.influx import parse_lines
from filodb.model.batch import SampleBatch
from filodb.model.dataset import Dataset
from filodb.model.identity import SeriesKeyCache
from filodb.model.labels import Labels, make_labels
from filodb.prom.remote_write import decode_write_request_full, encode_write_request
from filodb.shards.cache_generation import invalidate

T0 = 1_700_000_000_000
SERIES = [make_labels({"__name__": "ooo_door", "i": str(i)}) for i in range(3)]
_created = itertools.count(1)


class Router:
    """Keeps the batches written, in order (and by the calling thread's ``body``); fails the
    next ``fail`` writes."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.by_body: dict[object, list[tuple[int, int]]] = {}
        self.desc = Dataset("prometheus", 4, created=float(next(_created)))  # a fresh scope
        self.log: list[tuple[Labels, int]] = []
        self.fail = 0
        self.lock = threading.Lock()

    def dataset(self, name: str) -> Dataset:
        return self.desc

    def write(self, dataset: str, batch: SampleBatch, desc: Dataset | None = None) -> dict:
        with self.lock:
            if self.fail:
                self.fail -= 1
                raise UnavailableError("log down")
            got = [(batch.series[j], t) for j, t in zip(batch.sidx.tolist(),
                                                       batch.ts.tolist(), strict=True)]  # fmt: skip
            self.log += got
            body = getattr(self.local, "body", None)
            if body is not None:
                self.by_body[body] = [(int(dict(s)["i"]), t) for s, t in got]
        return {0: len(batch)}

    def newest(self) -> dict[Labels, int]:
        with self.lock:
            out: dict[Labels, int] = {}
            for s, t in self.log:
                out[s] = max(out.get(s, t), t)
            return out


class Counts:
    def __init__(self) -> None:
        self.rejected: dict[str, int] = {}
        self.lock = threading.Lock()

    def samples_accepted(self, door: str, n: int) -> None:
        pass

    def samples_rejected(self, door: str, reason: str, n: int) -> None:
        with self.lock:
            self.rejected[reason] = self.rejected.get(reason, 0) + n

    def request_rejected(self, door: str, reason: str) -> None:
        pass


class Meta:
    def put(self, *a: object) -> None:
        pass

    def put_types(self, *a: object) -> None:
        pass


def _rw(samples: list[tuple[int, int]]) -> SampleBatch:
    """A remote-write body of (series, ts) samples, decoded as the door gets it."""
    sidx = np.array([s for s, _ in samples], np.int32)
    ts = np.array([t for _, t in samples], np.int64)
    body = encode_write_request(SampleBatch(SERIES, sidx, ts, np.ones(len(ts))))
    return decode_write_request_full(body)[0]


def _influx(samples: list[tuple[int, int]]) -> SampleBatch:
    """The same samples as Influx lines (precision ms)."""
    body = "\n".join(f"ooo_door,i={s} value=1 {t}" for s, t in samples).encode()
    return parse_lines(body, precision="ms").batch


DECODERS: dict[str, Callable[[list[tuple[int, int]]], SampleBatch]] = {
    "remote_write": _rw,
    "influx_http": _influx,
}


def _door(name: str, window_ms: int, epochs=None) -> tuple[IngestDoor, Router, Counts]:  # type: ignore[no-untyped-def]
    router, counts = Router(), Counts()
    kw = {} if epochs is None else {"epochs": epochs}
    # one write a body, in its own thread: the stub tells the bodies apart by thread (joined
    # writes are tests/gateway/test_joiner.py's; the late check comes before the join)
    door = IngestDoor(name, router, Meta(), counts, ooo_window_ms=window_ms, join_writes=False,
                      **kw)  # type: ignore[arg-type]  # fmt: skip
    return door, router, counts


def _key(batch: SampleBatch, j: int) -> int:
    """Which of SERIES a decoded batch's series ``j`` is (Influx names it its own way)."""
    return int(dict(batch.series[j])["i"])


bodies = st.lists(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 40).map(lambda k: T0 + 1000 * k)),
             min_size=1, max_size=6),
    min_size=1, max_size=8,
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(bodies=bodies, door_name=st.sampled_from(sorted(DECODERS)),
       window_s=st.sampled_from([0, 5]))  # fmt: skip
def test_a_sample_is_refused_iff_older_than_the_newest_routed_minus_the_window_unless_a_resend(
    bodies: list[list[tuple[int, int]]], door_name: str, window_s: int
) -> None:
    door, router, counts = _door(door_name, window_s * 1000)
    reason = "too_old" if window_s else "out_of_order"
    newest: dict[int, int] = {}  # the model: per series, the newest written
    refused_total = 0
    for samples in bodies:
        before = dict(newest)
        reach = {s: max(t for x, t in samples if x == s) for s, _ in samples}
        want_refused = [
            (s, t)
            for s, t in samples
            if s in before and t < before[s] - window_s * 1000 and reach[s] < before[s]
        ]
        want_written = [(s, t) for s, t in samples if (s, t) not in want_refused]
        at = len(router.log)
        try:
            door.write("prometheus", DECODERS[door_name](samples))
            assert not want_refused
        except OutOfOrderError as e:
            msg = str(e)
            word = "too old sample" if window_s else "out of order sample"
            assert msg.startswith(f"{word}: {len(want_refused)} samples refused"), msg
            assert msg.endswith(f"the other {len(want_written)} samples were written"), msg
        written = sorted((int(dict(s)["i"]), t) for s, t in router.log[at:])
        assert written == sorted(want_written)
        for s, t in want_written:
            newest[s] = max(newest.get(s, t), t)
        refused_total += len(want_refused)
    assert counts.rejected == ({reason: refused_total} if refused_total else {})


def test_equal_timestamps_and_resends_pass_and_the_newest_is_the_one_before_the_body() -> None:
    door, router, counts = _door("remote_write", 0)
    door.write("prometheus", _rw([(0, T0), (0, T0 + 10_000)]))
    door.write("prometheus", _rw([(0, T0 + 10_000)]))  # a resend of the last scrape: 204
    # out of order within one body: left to the worker (the newest is the one before)
    door.write("prometheus", _rw([(0, T0 + 30_000), (0, T0 + 20_000)]))
    with pytest.raises(OutOfOrderError, match="1 samples refused.*the other 1 samples"):
        door.write("prometheus", _rw([(0, T0 + 25_000), (1, T0)]))  # series 1 is new
    assert counts.rejected == {"out_of_order": 1}
    # the very same body again, and one reaching past the newest: 204, the worker's to judge
    door.write("prometheus", _rw([(0, T0 + 30_000), (0, T0 + 20_000)]))
    door.write("prometheus", _rw([(0, T0 + 5_000), (0, T0 + 40_000)]))
    assert counts.rejected == {"out_of_order": 1}
    assert [t for _, t in router.log] == [T0, T0 + 10_000, T0 + 10_000, T0 + 30_000,
                                          T0 + 20_000, T0, T0 + 30_000, T0 + 20_000,
                                          T0 + 5_000, T0 + 40_000]  # fmt: skip


def test_a_failed_write_notes_nothing_so_its_resend_passes() -> None:
    door, router, _ = _door("remote_write", 0)
    door.write("prometheus", _rw([(0, T0)]))
    router.fail = 1
    with pytest.raises(UnavailableError):
        door.write("prometheus", _rw([(0, T0 + 5_000), (0, T0 + 10_000)]))
    door.write("prometheus", _rw([(0, T0 + 3_000)]))  # nothing newer reached the log
    door.write("prometheus", _rw([(0, T0 + 5_000), (0, T0 + 10_000)]))  # the resend: 204


def test_malformed_lines_and_late_samples_are_both_told() -> None:
    from filodb.errors import BadInputError
    from filodb.web.ingest import write_influx

    door, router, counts = _door("influx_http", 0)
    door.write("prometheus", _influx([(0, T0 + 10_000)]))
    body = f"ooo_door,i=0 value=1 {T0}\nnot a line\nooo_door,i=1 value=2 {T0}".encode()
    with pytest.raises(BadInputError) as e:
        write_influx(door, body, None, "ms", "prometheus", 1 << 20)
    assert "1 malformed line(s) rejected" in str(e.value)
    assert "out of order sample: 1 samples refused" in str(e.value)
    assert "the other 1 samples were written" in str(e.value)
    assert counts.rejected == {"out_of_order": 1, "malformed_line": 1}


def test_another_epoch_or_dataset_creation_forgets_the_newest() -> None:
    epoch = [0]
    door, router, _ = _door("remote_write", 0, epochs=lambda _ds: epoch[0])
    door.write("prometheus", _rw([(0, T0 + 10_000)]))
    with pytest.raises(OutOfOrderError):
        door.write("prometheus", _rw([(0, T0)]))
    epoch[0] = 1  # series deleted: the workers' newest may have gone back
    door.write("prometheus", _rw([(0, T0)]))
    router.desc = Dataset("prometheus", 4, created=float(next(_created)))  # created again
    door.write("prometheus", _rw([(0, T0 - 10_000)]))
    door.write("prometheus", _rw([(0, T0 - 10_000)]))
    epoch[0] = None  # type: ignore[call-overload]  # Redis did not answer: no check
    door.write("prometheus", _rw([(0, T0 - 20_000)]))


def test_epochs_follow_the_results_cache_generation(redis_url: str) -> None:
    redis_client = redis.Redis.from_url(redis_url)
    now = [0.0]
    epochs = Epochs(redis_client, ttl_s=1.0, clock=lambda: now[0])
    assert epochs("ds") == 0
    invalidate(redis_client, "ds")
    assert epochs("ds") == 0  # read again after ttl_s
    now[0] = 1.0
    assert epochs("ds") == 1
    invalidate(redis_client, "ds")
    epochs.expire("ds")  # the process that served the deletion: at once
    assert epochs("ds") == 2


def test_a_cache_started_again_refuses_nothing_of_its_earlier_ids() -> None:
    cache = SeriesKeyCache(lambda a, _b, _k: (make_labels({"__name__": a.decode()}), None), 3)
    desc = Dataset("prometheus", 1, created=1.0)

    def batch(names: list[bytes], ts: int) -> SampleBatch:
        buf = np.frombuffer(b"".join(names), np.uint8)
        ends = np.cumsum([len(n) for n in names])
        got = cache.resolve(buf, ends - [len(n) for n in names], ends, ends, ends,
                            np.zeros(len(names), np.uint8))  # fmt: skip
        n = len(got.series)
        return SampleBatch(got.series, np.arange(n), np.full(n, ts), np.ones(n),
                           routed=got.routed)  # fmt: skip

    first = batch([b"a", b"b", b"c"], T0)
    note_routed(desc, first)
    assert without_late(desc, batch([b"a"], T0 - 1), 0)[1] == 1
    batch([b"d"], T0)  # 4 keys: past max_entries, the next resolve starts from empty
    again = batch([b"e"], T0 - 1)  # the ids of `first` mean nothing now
    note_routed(desc, first)  # an earlier generation: not noted
    assert without_late(desc, again, 0)[1] == 0
    assert without_late(desc, batch([b"a"], T0 - 1), 0)[1] == 0


@pytest.mark.parametrize("door_name", sorted(DECODERS))
def test_racing_bodies_never_refuse_a_sample_the_log_holds_nothing_newer_than(
    door_name: str,
) -> None:
    door, router, counts = _door(door_name, 2000)
    rng = np.random.default_rng(7)
    refused: list[tuple[list[tuple[int, int]], dict[Labels, int]]] = []

    def sender(seed: int) -> None:
        r = np.random.default_rng(seed)
        for k in range(60):
            samples = [(int(s), T0 + 1000 * int(t)) for s, t in
                       zip(r.integers(0, 3, 4), r.integers(0, 60, 4), strict=True)]  # fmt: skip
            router.local.body = (seed, k)
            try:
                door.write("prometheus", DECODERS[door_name](samples))
            except OutOfOrderError:
                left = list(samples)
                for x in router.by_body.get((seed, k), []):
                    left.remove(x)  # what is left was refused
                refused.append((left, router.newest()))

    threads = [threading.Thread(target=sender, args=(int(s),)) for s in rng.integers(0, 1 << 30, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert refused, "no body was refused: the race was not exercised"
    for left, held in refused:
        # every refused sample is older (beyond the window) than one the log held when its
        # write returned: the workers would have dropped it
        top = {int(dict(s)["i"]): t for s, t in held.items()}
        assert left and all(s in top and t < top[s] - 2000 for s, t in left), (left, top)
    assert sum(len(x) for x, _ in refused) == counts.rejected["too_old"]
    assert counts.rejected["too_old"] + len(router.log) == 4 * 60 * 4


@pytest.mark.parametrize("window_s", [0, 5])
def test_tcp_doors_drop_and_count_late_samples(redis_url: str, window_s: int) -> None:
    """No reply channel: the late samples are dropped before the write and counted under the
    workers' reasons; the rest reaches the log."""
    from filodb.gateway.router import IngestRouter
    from filodb.gateway.tcp import GatewayOptions, TcpGateway
    from filodb.ingest.redis_streams import RedisStreamsLog
    from filodb.redisproc import free_port
    from filodb.shards.redis_map import ShardMapStore
    from filodb.testing.wait import eventually

    ds = f"ooo_tcp_{window_s}"
    ShardMapStore(redis_url).create_dataset(ds, 2, 1)
    router = IngestRouter(ShardMapStore(redis_url), RedisStreamsLog(redis_url))
    ports = {"influx": free_port(), "graphite": free_port()}
    opts = GatewayOptions(ooo_window_ms=window_s * 1000)
    gw = TcpGateway(router, ds, "127.0.0.1", ports, opts,
                    epochs=Epochs(redis.Redis.from_url(redis_url))).start()  # fmt: skip
    reason = "too_old" if window_s else "out_of_order"
    s = T0 // 1000
    sends = {  # newest at s + 20; then s + 18 (within 5 s) and s + 10 (beyond); s + 20 again
        "influx": [f"ooo_tcp,i=0 value=1 {(s + 20) * 10**9}\n",
                   f"ooo_tcp,i=0 value=2 {(s + 18) * 10**9}\nooo_tcp,i=0 value=3 "
                   f"{(s + 10) * 10**9}\n",
                   f"ooo_tcp,i=0 value=4 {(s + 20) * 10**9}\n"],
        "graphite": [f"ooo.tcp 1 {s + 20}\n", f"ooo.tcp 2 {s + 18}\nooo.tcp 3 {s + 10}\n",
                     f"ooo.tcp 4 {s + 20}\n"],
    }  # fmt: skip
    want_refused = 1 if window_s else 2
    try:
        for door, bodies in sends.items():
            done = 0
            for body in bodies:  # one connection a body: its batch is written when it closes
                with socket.create_connection(("127.0.0.1", gw.ports[door])) as c:
                    c.sendall(body.encode())
                done += body.count("\n")
                eventually(lambda d=door, w=done: _check_written(gw, d, w), 15.0, 0.05)
            st_ = gw.stats.snapshot()[door]
            assert st_["lines_rejected"] == {reason: want_refused}
            assert st_["samples_written"] == 4 - want_refused
    finally:
        gw.stop()


def _check_written(gw, door: str, n: int) -> None:  # type: ignore[no-untyped-def]
    snap = gw.stats.snapshot()[door]
    assert snap["samples_written"] + sum(snap["lines_rejected"].values()) >= n


def test_the_slow_decoders_bodies_are_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bodies the fast paths leave (remote write's reference protobuf decoder; Influx lines
    with escapes or non-ASCII bytes; Graphite lines of an odd shape) name their series by
    label set in the same cache, so the same series is checked whichever decoder read it."""
    from filodb.gateway import graphite
    from filodb.prom import remote_write as rw

    door, router, counts = _door("remote_write", 0)
    door.write("prometheus", _rw([(0, T0 + 10_000)]))  # the fast path notes the newest
    with monkeypatch.context() as m:
        m.setattr(rw, "_decode_fast", lambda _raw: None)  # the reference decoder
        late = _rw([(0, T0), (1, T0)])
        assert late.routed is not None
        with pytest.raises(OutOfOrderError, match="1 samples refused.*the other 1 samples"):
            door.write("prometheus", late)
        door.write("prometheus", _rw([(1, T0 + 20_000)]))  # newest noted by the slow path
    with pytest.raises(OutOfOrderError, match="1 samples refused"):
        door.write("prometheus", _rw([(1, T0 + 15_000)]))  # and checked by the fast one
    assert counts.rejected == {"out_of_order": 2}

    door, router, counts = _door("influx_http", 0)
    door.write("prometheus", _influx([(0, T0 + 10_000)]))
    escaped = parse_lines(f"ooo\\ door,i=0 value=1 {T0}".encode(), precision="ms").batch
    assert escaped.series == _influx([(0, T0)]).series  # the same series, read per line
    with pytest.raises(OutOfOrderError, match="1 samples refused.*the other 0 samples"):
        door.write("prometheus", escaped)
    door.write("prometheus", parse_lines(f"ooo,i=é value=1 {T0}".encode(), precision="ms").batch)
    with pytest.raises(OutOfOrderError):  # a body not ASCII: every line read per line
        door.write("prometheus", parse_lines(f"ooo,i=é value=1 {T0 - 1}".encode(),
                                             precision="ms").batch)  # fmt: skip
    assert counts.rejected == {"out_of_order": 2}

    door, router, counts = _door("graphite", 0)
    door.write("prometheus", graphite.parse_graphite(b"ooo.g;i=0 1 100\n", 0).batch)
    with pytest.raises(OutOfOrderError):  # two spaces: the per-line parser reads it
        door.write("prometheus", graphite.parse_graphite(b"ooo.g;i=0  1 50\n", 0).batch)
