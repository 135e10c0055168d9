"""The leaf side of a query, served by a worker node: :class:`LeafServer`.

A small pool of threads ``BLPOP``s the node's request list (:mod:`filodb.tasks.rpc`); each
request names the shards of the query this node owns. The server evaluates a range ``eval`` or
``select`` of several shards once per shard, in parallel on a pool as large as the popping
threads (numpy releases the GIL: with 10 k series a single-threaded union evaluation made
``sum by (job) (rate(...))`` 2.7x slower), and other ops once over the union of the shards it
serves as Active (:class:`~filodb.model.source.UnionSource`: their series are disjoint, so
the answer over the union is the merge of the per-shard ones); it pushes the answers in one
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
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Protocol, cast

import numpy as np
import redis

from filodb.errors import BadInputError, FiloError
from filodb.model.cardinality import CardinalityStats
from filodb.model.labels import Labels, Matcher
from filodb.model.source import SeriesSource, UnionSource
from filodb.query.distributed import eval_local
from filodb.tasks.rpc import LeafRequest, request_key
from filodb.tasks.wire import flat_labels, matchers_from_wire, pack, pack_block, pack_steps

log = logging.getLogger(__name__)

REPLY_TTL_S = 60
POP_TIMEOUT_S = 1  # a server thread notices stop() within this; below the socket timeout
RECEIPT_AFTER_S = 0.1  # a request still running then gets a receipt (the caller resends at 2 s)


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


def answer(
    rt: NodeRuntime, dataset: str, shards: Sequence[int], op: str, params: dict[str, Any],
    pool: Executor | None = None,
) -> list[bytes]:  # fmt: skip
    """The reply messages of a request: the answer for the shards the node serves, one
    "unavailable" failure per shard it does not.

    With a ``pool`` and several served shards, a ``select`` or a range ``eval`` runs once per
    shard on the pool (one answer each: the heavy numpy work of the shards runs on every core);
    else the node evaluates once over the union of its shards (one answer)."""
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
    if pool is not None and len(served) > 1 and _heavy(op, params):
        futures = [pool.submit(_guarded, src, [s], op, params, dataset)
                   for src, s in zip(sources[1:], served[1:], strict=True)]  # fmt: skip
        first = _guarded(sources[0], served[:1], op, params, dataset)  # this thread works too
        return [*out, first, *(f.result() for f in futures)]
    source = sources[0] if len(sources) == 1 else UnionSource(sources)
    return [*out, _guarded(source, served, op, params, dataset)]


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


class LeafServer:
    """Serve the leaf requests addressed to ``node`` with ``threads`` popping threads;
    ``clock`` is the wall clock in seconds
    that request deadlines are read against."""

    def __init__(
        self, runtime: NodeRuntime, redis_url: str, node: str, threads: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.runtime = runtime
        self.key = request_key(node)
        self.clock = clock
        # blocking pops need a socket timeout above their own (shared/notes/celery-redis.md)
        self._r = redis.Redis.from_url(redis_url, socket_timeout=POP_TIMEOUT_S + 10)
        self._stop = threading.Event()
        # the shards of one request evaluate in parallel here (numpy releases the GIL)
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="leaf-shard")
        self._threads = [
            threading.Thread(target=self._loop, name=f"leaf-{i}", daemon=True)
            for i in range(max(1, threads))
        ]
        self.served = 0
        self.dropped = 0  # requests past their deadline when popped, or malformed
        self.receipts = 0
        # requests being answered: token -> (monotonic time their receipt is due, request)
        self._inflight: dict[object, tuple[float, LeafRequest]] = {}
        self._cond = threading.Condition()
        self._threads.append(threading.Thread(target=self._receipt_loop, name="leaf-receipts",
                                              daemon=True))  # fmt: skip

    def start(self) -> LeafServer:
        for t in self._threads:
            t.start()
        return self

    def stop(self, wait_s: float = POP_TIMEOUT_S + 1) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            if t.ident is not None:
                t.join(wait_s)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._r.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                got = self._r.blpop([self.key], timeout=POP_TIMEOUT_S)
                if got is not None:
                    self.handle(cast(bytes, got[1]))
            except redis.RedisError:  # Redis down: the callers resend or time out
                log.warning("leaf server on %s: Redis unreachable", self.key, exc_info=True)
                self._stop.wait(0.5)
            except Exception:  # noqa: BLE001 - one bad request never stops the server
                log.exception("leaf server on %s", self.key)

    def handle(self, raw: bytes) -> None:
        """Answer one request (see the module docstring)."""
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
        with self._cond:
            self._inflight[token] = (time.monotonic() + RECEIPT_AFTER_S, req)
            self._cond.notify()
        try:
            msgs = answer(self.runtime, req.dataset, req.shards, req.op, req.params,
                          self._pool)  # fmt: skip
        finally:
            with self._cond:
                self._inflight.pop(token, None)
                self.served += 1
        if msgs:
            _reply(self._r, req.reply, msgs)

    def _receipt_loop(self) -> None:
        """Push the receipt of each request still running ``RECEIPT_AFTER_S`` after it was
        popped."""
        while not self._stop.is_set():
            with self._cond:
                now = time.monotonic()
                due = [(k, req) for k, (t, req) in self._inflight.items() if t <= now]
                for k, _ in due:
                    del self._inflight[k]
                if not due:
                    nxt = min((t for t, _ in self._inflight.values()), default=now + POP_TIMEOUT_S)
                    self._cond.wait(min(POP_TIMEOUT_S, max(0.001, nxt - now)))
                    continue
            for _, req in due:
                try:
                    receipt = pack({"received": True, "shards": list(req.shards)}, [])
                    _reply(self._r, req.reply, [receipt])
                    self.receipts += 1
                except redis.RedisError:  # the caller resends; its answer may still come
                    log.warning("leaf server on %s: receipt not sent", self.key, exc_info=True)
