"""The leaf side of a query, served by a worker node: :class:`LeafServer`.

One thread ``BLPOP``s the node's request list (:mod:`filodb.tasks.rpc`), and with
``listen`` each of the web tier's direct connections has a thread reading its requests
(:mod:`filodb.tasks.direct`; their replies go back on the connection); each request names
the shards of the query this node owns. The request is cut into pieces (:func:`pieces`): a
range ``eval`` or a ``select`` of several shards once per shard (numpy releases the GIL: with
10 k series a single-threaded union evaluation made ``sum by (job) (rate(...))`` 2.7x slower),
other ops once over the union of the shards it serves as Active
(:class:`~filodb.model.source.UnionSource`: their series are disjoint, so the answer over the
union is the merge of the per-shard ones). The pieces wait in a
:class:`~filodb.tasks.scheduler.FairQueue` (cheapest estimated first, with aging, and a runner
kept free of heavy work) for one of the server's runner threads; the runner that finishes the
last piece of a request pushes the answers in one
``RPUSH`` (a :mod:`filodb.tasks.wire` message whose header has
``ok``, ``shards`` it covers, ``shard`` the first of them, and either the answer or
``error``), then ``EXPIRE``s the reply list. A request not answered within ``RECEIPT_AFTER_S`` gets
one receipt ``{"received": true, "shards": [...]}`` first (from the server's receipt thread),
which stops the caller's resends (after 2 s); a quick answer needs none, which saves a round
trip on each side. A node that does not own a shard as Active answers
``ok: false`` with ``error_type: "unavailable"`` for it, so the caller can mark the answer
partial (fencing).

The server is bound to the node's runtime (anything with the :class:`NodeRuntime` shape below),
so this module knows nothing of what a node is.

Ops: ``select`` (SeriesBlock), ``series``, ``label_names``, ``label_values``, ``eval``
(a pushed-down PromQL subexpression evaluated at the query's steps), ``tsdb_status`` (the
cardinality of the served shards, merged: :mod:`filodb.model.cardinality`). ``series``,
``label_names`` and ``label_values`` take a ``limit`` (> 0): the node answers at most that
many items and ``truncated`` when it left some out. ``exemplars``: the exemplars of the
matching series in the range (the shards' exemplar rings).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from filodb.errors import BadInputError, FiloError
from filodb.model.cardinality import CardinalityStats
from filodb.model.labels import Labels, Matcher
from filodb.model.source import SeriesSource, UnionSource
from filodb.query.distributed import eval_local
from filodb.shards.secret import cluster_secret
from filodb.tasks.direct import Listener, ReplySink
from filodb.tasks.rpc import LeafRequest, request_key
from filodb.tasks.scheduler import (
    HEAVY_S,
    SPLIT_S,
    CostModel,
    FairQueue,
    Taken,
    cost_key,
    cost_units,
)
from filodb.tasks.wire import flat_labels, matchers_from_wire, pack, pack_block, pack_steps

log = logging.getLogger(__name__)

REPLY_TTL_S = 60
POP_TIMEOUT_S = 1  # a server thread notices stop() within this; below the socket timeout
RECEIPT_AFTER_S = 0.1  # a request still running then gets a receipt (the caller resends at 2 s)
# A request of one piece estimated below this (from pieces of its shape already run), popped
# while nothing is queued, runs on the popping thread: no hand-off to a runner (a thread
# wake-up and a GIL hand-over, 90 us of the floor's leaf round trip).
INLINE_S = 0.0005
# On a direct connection (tasks/direct.py) the receiving thread serves that one caller thread:
# running a piece there blocks no other request, so any cheap-lane piece (below HEAVY_S) runs
# there when nothing is queued; as with the popping thread, at most one piece more than the
# runners runs at once.
INLINE_DIRECT_S = HEAVY_S


class _Cardinality(Protocol):
    """A shard's memstore for ``tsdb_status``."""

    def cardinality(self) -> CardinalityStats: ...


class _Exemplars(Protocol):
    """A shard's memstore for ``exemplars``."""

    def query_exemplars(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int
                        ) -> list[tuple[Labels, np.ndarray, np.ndarray, list[Labels]]]: ...  # fmt: skip


def _exemplars(source: SeriesSource, matchers: Sequence[Matcher], start: int, end: int,
               ok: dict[str, Any]) -> bytes:  # fmt: skip
    """Series with exemplars in the range: their labels, exemplar counts and label sets in the
    header, timestamps and values as two arrays."""
    parts = source.sources if isinstance(source, UnionSource) else [source]
    found = [x for s in parts for x in cast(_Exemplars, s).query_exemplars(matchers, start, end)]
    header = {**ok, "series": flat_labels([lb for lb, *_ in found]),
              "counts": [len(t) for _, t, _, _ in found],
              "labels": flat_labels([e for *_, es in found for e in es])}  # fmt: skip
    ts = np.concatenate([t for _, t, _, _ in found]) if found else np.zeros(0, np.int64)
    vals = np.concatenate([v for _, _, v, _ in found]) if found else np.zeros(0)
    return pack(header, [ts.astype(np.int64), vals.astype(np.float64)])


class _SeriesLimit(Protocol):
    """A shard's memstore for ``series`` with a limit (label sets built for those only)."""

    def series(
        self, matchers: Sequence[Matcher], start_ms: int, end_ms: int, limit: int = 0
    ) -> list[Labels]: ...


def _cut(items: list, limit: int) -> tuple[list, bool]:
    """At most ``limit`` (> 0) of the sorted ``items``, and whether some were dropped."""
    return (items[:limit], True) if 0 < limit < len(items) else (items, False)


def _series(
    source: SeriesSource, matchers: Sequence[Matcher], start: int, end: int, limit: int
) -> tuple[list[Labels], bool]:
    """The matching label sets; with ``limit`` > 0 each shard builds at most ``limit`` + 1
    (one more tells that some were left out), the node answers at most ``limit``."""
    if limit <= 0:
        return source.series(matchers, start, end), False
    parts = source.sources if isinstance(source, UnionSource) else [source]
    found = {
        lb for s in parts for lb in cast(_SeriesLimit, s).series(matchers, start, end, limit + 1)
    }
    return _cut(sorted(found), limit)


class NodeRuntime(Protocol):
    """What the tasks need of a node."""

    def memstore(self, dataset: str, shard: int) -> SeriesSource | None: ...


def run_op(source: SeriesSource, shards: Sequence[int], op: str, p: dict[str, Any]) -> bytes:
    """Execute one leaf op against the source of ``shards`` and pack the answer."""
    ok = {"ok": True, "shard": shards[0], "shards": list(shards)}
    if op == "eval":
        v, read = eval_local(source, p)
        return pack_steps({**ok, "read": read}, v)
    if op == "tsdb_status":
        parts = source.sources if isinstance(source, UnionSource) else [source]
        header, arrays = CardinalityStats.merge(
            [cast(_Cardinality, s).cardinality() for s in parts]
        ).to_wire()
        return pack({**ok, **header}, arrays)
    matchers = matchers_from_wire(p.get("matchers", []))
    start, end = int(p["start"]), int(p["end"])
    if op == "select":
        return pack_block(source.select(matchers, start, end), ok)
    if op == "exemplars":
        return _exemplars(source, matchers, start, end, ok)
    limit = int(p.get("limit", 0))  # > 0: answer at most that many, and say if some were cut
    if op == "series":
        found, cut = _series(source, matchers, start, end, limit)
        return pack({**ok, "labels": flat_labels(found), "truncated": cut}, [])
    if op == "label_names":
        names, cut = _cut(source.label_names(matchers, start, end), limit)
        return pack({**ok, "values": names, "truncated": cut}, [])
    if op == "label_values":
        vals, cut = _cut(source.label_values(p["name"], matchers, start, end), limit)
        return pack({**ok, "values": vals, "truncated": cut}, [])
    raise ValueError(f"unknown leaf op {op!r}")


def answer(rt: NodeRuntime, dataset: str, shards: Sequence[int], op: str,
           params: dict[str, Any]) -> list[bytes]:  # fmt: skip
    """The reply messages of one piece of a request (:func:`pieces`): the answer for the
    shards the node serves (one evaluation over their union), one "unavailable" failure per
    shard it does not."""
    out = []
    served: list[int] = []
    sources: list[SeriesSource] = []
    for s in shards:
        source = rt.memstore(dataset, s)
        if source is None:
            out.append(pack({"ok": False, "shard": s, "error_type": "unavailable",
                             "error": f"shard {dataset}/{s} is not active on this node"}, []))  # fmt: skip
        else:
            served.append(s)
            sources.append(source)
    if not served:
        return out
    source = sources[0] if len(sources) == 1 else UnionSource(sources)
    return [*out, _guarded(source, served, op, params, dataset)]


def pieces(
    shards: Sequence[int], op: str, params: dict[str, Any], cost_s: float = SPLIT_S
) -> list[tuple[int, ...]]:
    """The shards of each piece a request is cut into: a ``select`` or a range ``eval``
    estimated at ``SPLIT_S`` or more (``cost_s``) runs once per shard (one answer each: the
    shards' numpy work runs on every core, and the pieces of a heavy query interleave with
    other work, :mod:`filodb.tasks.scheduler`); other ops and cheap requests once over the
    union of the shards (one runner, one wake-up: under load each extra piece waits for a
    runner again)."""
    if len(shards) > 1 and cost_s >= SPLIT_S and _heavy(op, params):
        return [(s,) for s in shards]
    return [tuple(shards)]


def _heavy(op: str, p: dict[str, Any]) -> bool:
    """Whether per-shard evaluation on the pool pays: a select, or an eval over a range of
    steps. An instant eval reads one step's window; one evaluation over the union answers it
    sooner than several answers would (0.4 ms of the 2 ms floor)."""
    return op == "select" or (op == "eval" and int(p.get("end", 0)) > int(p.get("start", 0)))


def _guarded(
    source: SeriesSource, served: list[int], op: str, params: dict[str, Any], dataset: str
) -> bytes:
    """:func:`run_op`, its failure packed as the answer of ``served``."""
    fail = {"ok": False, "shard": served[0], "shards": served}
    try:
        return run_op(source, served, op, params)
    except FiloError as e:
        return pack({**fail, "error_type": e.error_type, "status": e.http_status,
                     "error": str(e)}, [])  # fmt: skip
    except Exception as e:  # reported to the caller, never silently lost
        log.exception("leaf %s on %s/%s failed", op, dataset, served)
        return pack({**fail, "error_type": "internal",
                     "error": f"{type(e).__name__}: {e}"}, [])  # fmt: skip


def _reply(r: redis.Redis, reply_key: str, msgs: list[bytes]) -> None:
    pipe = r.pipeline(transaction=False)
    pipe.rpush(reply_key, *msgs)
    pipe.expire(reply_key, REPLY_TTL_S)
    pipe.execute()


@dataclass
class _Job:
    """A request being answered: its pieces' messages, filled in as they finish."""

    req: LeafRequest
    token: object
    sink: ReplySink  # where its replies go: its Redis reply list, or the connection it came on
    parts: list[list[bytes] | None]
    left: int
    key: tuple[Any, ...] = ()  # its query shape (scheduler.cost_key)
    units: float = 0.0  # and cost units, learned from the sum of its pieces when it was cut
    cpu_s: float = 0.0  # CPU seconds its pieces took so far


@dataclass
class _Piece:
    job: _Job
    index: int
    shards: tuple[int, ...]
    key: tuple[Any, ...]
    units: float
    queued_at: float  # monotonic


class LeafServer:
    """Serve the leaf requests addressed to ``node``: one thread pops them into a
    :class:`~filodb.tasks.scheduler.FairQueue`, ``threads`` runners take the pieces from it;
    ``clock`` is the wall clock in seconds that request deadlines are read against. With
    ``listen`` (``host:port``) it also takes requests on direct connections
    (:mod:`filodb.tasks.direct`; ``address`` is then what the node advertises), from callers
    that know the cluster's secret (``secret``, else the one in Redis:
    :mod:`filodb.shards.secret`)."""

    def __init__(
        self, runtime: NodeRuntime, redis_url: str, node: str, threads: int = 4,
        clock: Callable[[], float] = time.time, listen: str = "", secret: str = "",
    ) -> None:  # fmt: skip
        self.runtime = runtime
        self.key = request_key(node)
        self.clock = clock
        # blocking pops need a socket timeout above their own (shared/notes/celery-redis.md)
        self._r = redis.Redis.from_url(redis_url, socket_timeout=POP_TIMEOUT_S + 10)
        self._redis_sink: ReplySink = lambda reply, msgs: _reply(self._r, reply, msgs)
        self._listener: Listener | None = None
        if listen:
            try:
                key = cluster_secret(self._r, secret)
                self._listener = Listener(node, listen, self._handle_direct, key)
            except (
                OSError,
                redis.RedisError,
            ) as e:  # e.g. the port is taken: the node serves through Redis only
                log.warning("leaf server of %s cannot listen on %s: %s", node, listen, e)
        self.address = self._listener.address if self._listener else ""
        self._stop = threading.Event()
        runners = self._runners = max(1, threads)
        self._queue: FairQueue[_Piece] = FairQueue(runners)
        self.costs = CostModel()
        self._threads = [threading.Thread(target=self._loop, name="leaf-pop", daemon=True)]
        self._threads += [
            threading.Thread(target=self._run_loop, name=f"leaf-{i}", daemon=True)
            for i in range(runners)
        ]
        self.served = 0
        self.dropped = 0  # requests past their deadline when popped or run, or malformed
        self.receipts = 0
        self.inlined = 0  # requests answered on the thread that received them (no runner)
        self.direct = 0  # requests taken on direct connections (the rest came by Redis)
        self.taken = {False: 0, True: 0}  # pieces taken from the queue: heavy? -> count
        self.waited_s = {False: 0.0, True: 0.0}  # and the seconds they had waited
        # requests being answered: token -> (monotonic time their receipt is due, request, sink)
        self._inflight: dict[object, tuple[float, LeafRequest, ReplySink]] = {}
        lock = threading.Lock()  # guards the above, the queue and the cost model
        self._cond = threading.Condition(lock)  # the receipt thread waits here
        self._work = threading.Condition(lock)  # the runners wait here for pieces
        # when the receipt thread wakes by itself (monotonic); a request due before it notifies
        # it (a wake-up per request would take the GIL from the thread answering the request)
        self._receipts_wake_at = 0.0
        self._threads.append(threading.Thread(target=self._receipt_loop, name="leaf-receipts",
                                              daemon=True))  # fmt: skip

    def refused(self) -> int:
        """Direct connections refused for want of the cluster secret."""
        return self._listener.refused if self._listener is not None else 0

    def start(self) -> LeafServer:
        for t in self._threads:
            t.start()
        if self._listener is not None:
            self._listener.start()
        return self

    def stop(self, wait_s: float = POP_TIMEOUT_S + 1) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.stop()
        with self._cond:
            self._cond.notify_all()
            self._work.notify_all()
        for t in self._threads:
            if t.ident is not None:
                t.join(wait_s)
        self._r.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                got = self._r.blpop([self.key], timeout=POP_TIMEOUT_S)
                if got is not None:
                    self.handle(cast(bytes, got[1]), inline_s=INLINE_S)
            except redis.RedisError:  # Redis down: the callers resend or time out
                log.warning("leaf server on %s: Redis unreachable", self.key, exc_info=True)
                self._stop.wait(0.5)
            except Exception:  # noqa: BLE001 - one bad request never stops the server
                log.exception("leaf server on %s", self.key)

    def _handle_direct(self, raw: bytes, sink: ReplySink) -> None:
        self.direct += 1
        self.handle(raw, inline_s=INLINE_DIRECT_S, sink=sink)

    def handle(self, raw: bytes, inline_s: float = 0.0, sink: ReplySink | None = None) -> None:
        """Queue the pieces of one request (see the module docstring); a request of one piece
        of a known shape estimated below ``inline_s`` that finds the queue empty and a runner
        slot free runs here instead (on the receiving thread). Its replies go to ``sink`` (by default its
        Redis reply list)."""
        sink = sink or self._redis_sink
        try:
            req = LeafRequest.unpack(raw)
        except BadInputError as e:
            self.dropped += 1
            log.warning("leaf server on %s: %s", self.key, e)
            return
        if self.clock() >= req.deadline_unix:
            self.dropped += 1  # its caller has timed out: nobody waits for the answer
            return
        token = object()
        key = cost_key(req.dataset, req.op, req.params)
        now = time.monotonic()
        with self._cond:
            whole = cost_units(req.op, req.params, len(req.shards))
            cut = pieces(req.shards, req.op, req.params, self.costs.estimate(key, whole))
            job = _Job(req, token, sink, [None] * len(cut), len(cut), key, whole)
            self._inflight[token] = (now + RECEIPT_AFTER_S, req, sink)
            # a piece of one shard of a cut request has a cost of its own (a metric's series may
            # sit on some shards only); until it is known, the shape's cost per unit stands in
            made = [_Piece(job, i, shards, (*key, shards[0]) if len(cut) > 1 else key,
                           cost_units(req.op, req.params, len(shards)), now)
                    for i, shards in enumerate(cut)]  # fmt: skip
            costs = [self.costs.estimate(p.key if self.costs.known(p.key) else key, p.units)
                     for p in made]  # fmt: skip
            q = self._queue
            mine = (len(cut) == 1 and not len(q) and costs[0] < inline_s and self.costs.known(key)
                    and q.running_cheap + q.running_heavy <= self._runners)  # fmt: skip
            if mine:
                kept = self._queue.take_cheap(made[0])  # handed back by _run_one, as if popped
                self.taken[False] += 1
                self.inlined += 1
            else:
                for p, c in zip(made, costs, strict=True):
                    self._queue.push(p, c, now)
                self._work.notify(len(cut))
            if self._receipts_wake_at > now + RECEIPT_AFTER_S:  # it would wake too late
                self._cond.notify()  # the receipt thread
        if mine:
            self._run_one(kept)

    def _next(self) -> Taken[_Piece] | None:
        with self._cond:
            while not self._stop.is_set():
                got = self._queue.pop()
                if got is not None:
                    self.taken[got.heavy] += 1
                    self.waited_s[got.heavy] += time.monotonic() - got.item.queued_at
                    return got
                self._work.wait(POP_TIMEOUT_S)
        return None

    def _run_loop(self) -> None:
        while (got := self._next()) is not None:
            self._run_one(got)

    def _run_one(self, got: Taken[_Piece]) -> None:
        """Run a piece taken from the queue (or kept by :meth:`handle`) and hand its slot back."""
        try:
            self._run(got.item)
        except redis.RedisError:  # the caller resends or times out
            log.warning("leaf server on %s: reply not sent", self.key, exc_info=True)
        except Exception:  # noqa: BLE001 - one bad request never stops the server
            log.exception("leaf server on %s", self.key)
        finally:
            with self._cond:
                self._queue.done(got)
                self._work.notify()

    def _run(self, piece: _Piece) -> None:
        """Answer one piece; the last piece of a request to finish sends the reply."""
        job, req = piece.job, piece.job.req
        msgs: list[bytes] = []
        if self.clock() < req.deadline_unix:  # else its caller has timed out already
            t0 = time.thread_time()  # CPU, not wall time: under load a piece's wall time is
            # mostly waiting for the GIL, which no estimate can predict (measured: wall-time
            # estimates were off 0.3-100x, p10-p90, at 16 clients; CPU time 0.6-1.6x)
            try:
                msgs = answer(self.runtime, req.dataset, piece.shards, req.op, req.params)
            except Exception as e:  # noqa: BLE001 - the request's other pieces still answer
                log.exception("leaf %s on %s/%s failed", req.op, req.dataset, piece.shards)
                msgs = [pack({"ok": False, "shard": piece.shards[0], "shards": list(piece.shards),
                              "error_type": "internal", "error": f"{type(e).__name__}: {e}"}, [])]  # fmt: skip
            spent = time.thread_time() - t0
            with self._cond:
                self.costs.observe(piece.key, piece.units, spent)
                job.cpu_s += spent
        with self._cond:
            job.parts[piece.index] = msgs
            job.left -= 1
            if job.left:
                return
            if len(job.parts) > 1 and job.cpu_s > 0:  # the whole request's shape: cut again?
                self.costs.observe(job.key, job.units, job.cpu_s)
            self._inflight.pop(job.token, None)
            out = [m for part in job.parts for m in part or ()]
            if out:
                self.served += 1
            else:
                self.dropped += 1
        if out:
            job.sink(req.reply, out)

    def lanes(self) -> dict[str, tuple[int, int, int, float]]:
        """Per lane (``cheap``, ``heavy``): pieces queued, running, taken so far and the seconds
        they waited in the queue."""
        with self._cond:
            q = self._queue
            return {
                "cheap": (
                    q.queued(False),
                    q.running_cheap,
                    self.taken[False],
                    self.waited_s[False],
                ),
                "heavy": (q.queued(True), q.running_heavy, self.taken[True], self.waited_s[True]),
            }

    def _receipt_loop(self) -> None:
        """Push the receipt of each request still running ``RECEIPT_AFTER_S`` after it was
        popped."""
        while not self._stop.is_set():
            with self._cond:
                now = time.monotonic()
                due = [(k, req, sink) for k, (t, req, sink) in self._inflight.items() if t <= now]
                for k, *_ in due:
                    del self._inflight[k]
                if not due:
                    nxt = min((t for t, *_ in self._inflight.values()),
                              default=now + POP_TIMEOUT_S)  # fmt: skip
                    wait = min(POP_TIMEOUT_S, max(0.001, nxt - now))
                    self._receipts_wake_at = now + wait
                    self._cond.wait(wait)
                    self._receipts_wake_at = 0.0  # awake: it looks at _inflight before waiting
                    continue
            for _, req, sink in due:
                try:
                    receipt = pack({"received": True, "shards": list(req.shards)}, [])
                    sink(req.reply, [receipt])
                    self.receipts += 1
                except redis.RedisError:  # the caller resends; its answer may still come
                    log.warning("leaf server on %s: receipt not sent", self.key, exc_info=True)


class LeafCollector(Collector):
    """The leaf server's queue and counters, read at scrape time (on the node's metrics port)."""

    def __init__(self, server: LeafServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        pieces = GaugeMetricFamily("filodb_worker_leaf_pieces",
                                   "Pieces of leaf requests queued or running, by lane",
                                   labels=["lane", "state"])  # fmt: skip
        wait = SummaryMetricFamily("filodb_worker_leaf_queue_wait_seconds",
                                   "Time pieces of leaf requests waited for a runner, by lane",
                                   labels=["lane"])  # fmt: skip
        for lane, (queued, running, taken, waited) in self.server.lanes().items():
            pieces.add_metric([lane, "queued"], queued)
            pieces.add_metric([lane, "running"], running)
            wait.add_metric([lane], taken, waited)
        reqs = CounterMetricFamily("filodb_worker_leaf_requests",
                                   "Leaf requests answered (served) or dropped (expired, malformed)",
                                   labels=["outcome"])  # fmt: skip
        reqs.add_metric(["served"], self.server.served)
        reqs.add_metric(["dropped"], self.server.dropped)
        direct = CounterMetricFamily("filodb_worker_leaf_direct_requests",
                                     "Leaf requests that came on a direct connection from the web "
                                     "tier (the others came through Redis lists)",
                                     value=self.server.direct)  # fmt: skip
        refused = CounterMetricFamily("filodb_worker_leaf_direct_refused",
                                      "Direct connections closed for a missing or wrong proof "
                                      "of the cluster secret", value=self.server.refused())  # fmt: skip
        yield from (pieces, wait, reqs, direct, refused)
