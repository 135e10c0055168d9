"""Which leaf work runs next on a node: :class:`FairQueue` (pure) and :class:`CostModel`.

A node's leaf server (:mod:`filodb.tasks.leaf`) cuts each request into pieces (one per shard
for a select or a range eval, else one over the union of its shards) and runs them on a few
threads. In first-in-first-out order a dashboard's small queries waited behind every heavy
piece popped before them (57x their single-client time at 16 clients). Here each piece gets

- an estimated cost in seconds (:class:`CostModel`: what pieces of the same query shape cost
  per step and shard, learned from the CPU time of the pieces run, per shard for a request cut
  into one piece per shard; dashboards repeat their queries);
- a virtual deadline ``arrival + AGING * cost``: the queue runs the smallest first, so a cheap
  piece overtakes the expensive ones queued before it, and an expensive piece is overtaken
  only by work that arrives within ``AGING * cost`` of it (aging: nothing starves);
- a lane: a piece estimated at ``HEAVY_S`` or more is heavy, and at most ``slots - 1`` heavy
  pieces run at once, so one runner is always there for cheap work: a cheap piece waits behind
  at most the cheap pieces ahead of it, never for a heavy one to finish;
- borrowing: while the heavy lane is full and no cheap piece waits, that runner also takes the
  next heavy piece if it is estimated at ``1 / BORROW_RATIO`` of the cheapest heavy piece
  running or less. A fixed threshold alone made a cliff: a dashboard query whose pieces cost
  about ``HEAVY_S`` (its estimate, a moving average, straddles it) went to the heavy lane on
  some refreshes and then waited seconds for a heavy piece to finish (6.4 s once, against 12 ms
  idle, beside 8 heavy queries). A borrowed piece delays cheap work by a bounded share of what
  the heavy runners are doing, and the bound scales with it: no cliff at any fixed cost.

The queue knows no clock and no threads (``now`` is passed in), so its order is tested exactly.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

T = TypeVar("T")

AGING = 4.0  # a piece of cost c is overtaken by work arriving up to AGING * c after it
HEAVY_S = 0.002  # pieces estimated at this or more share slots - 1 runners
# the cheap runner also takes a heavy piece this many times cheaper than every heavy one running
BORROW_RATIO = 16.0
SPLIT_S = 0.005  # a range eval or select estimated below this runs as one piece
PRIOR_S_PER_UNIT = 20e-6  # a query shape never run yet: 20 us per step and shard
COST_KEYS = 16384  # query shapes (and shapes x shard, for pieces of one shard) per node
EWMA = 0.3  # weight of the newest measurement
# The GIL's switch interval in the web and worker processes (Python's default: 5 ms). A thread
# back from I/O waits up to that long for the GIL while another thread runs Python code; with 16
# queries at once each of a cheap query's many I/O round trips paid it (a third of its latency).
SWITCH_INTERVAL_S = 0.0005


@dataclass(order=True)
class _Entry(Generic[T]):
    key: float
    seq: int
    heavy: bool = field(compare=False)
    item: T = field(compare=False)
    cost: float = field(compare=False, default=0.0)


class Taken(NamedTuple, Generic[T]):
    """A piece :meth:`FairQueue.pop` gave: run it, then hand it back to :meth:`FairQueue.done`."""

    item: T
    heavy: bool  # it holds a heavy runner (a borrowed piece holds the cheap one)
    seq: int


class FairQueue(Generic[T]):
    """Pieces of work ordered by virtual deadline, with a lane limit for heavy ones.

    Not thread-safe: the leaf server holds its lock around every call."""

    def __init__(self, slots: int, aging: float = AGING, heavy_s: float = HEAVY_S,
                 borrow_ratio: float = BORROW_RATIO) -> None:  # fmt: skip
        self.heavy_slots = max(1, slots - 1)
        self.aging = aging
        self.heavy_s = heavy_s
        self.borrow_ratio = borrow_ratio
        self._running: dict[int, float] = {}  # seq of each heavy piece running -> its cost
        self._cheap: list[_Entry[T]] = []
        self._heavy: list[_Entry[T]] = []
        self._seq = itertools.count()
        self.running_heavy = 0
        self.running_cheap = 0

    def __len__(self) -> int:
        return len(self._cheap) + len(self._heavy)

    def queued(self, heavy: bool) -> int:
        """Pieces waiting in a lane."""
        return len(self._heavy if heavy else self._cheap)

    def push(self, item: T, cost_s: float, now: float) -> None:
        heavy = cost_s >= self.heavy_s
        e = _Entry(now + self.aging * cost_s, next(self._seq), heavy, item, cost_s)
        heapq.heappush(self._heavy if heavy else self._cheap, e)

    def pop(self) -> Taken[T] | None:
        """The next piece to run (hand it back to :meth:`done`), or None: nothing queued, or
        only heavy pieces while their lane is full and none is cheap enough to borrow."""
        heavy_ok = bool(self._heavy) and self.running_heavy < self.heavy_slots
        if self._cheap and not (heavy_ok and self._heavy[0] < self._cheap[0]):
            return self.take_cheap(heapq.heappop(self._cheap).item)
        if heavy_ok:
            e = heapq.heappop(self._heavy)
            self.running_heavy += 1
            self._running[e.seq] = e.cost
            return Taken(e.item, True, e.seq)
        running = min(self._running.values(), default=0.0)
        if self._heavy and self._heavy[0].cost * self.borrow_ratio <= running:  # borrowed
            return self.take_cheap(heapq.heappop(self._heavy).item)
        return None

    def take_cheap(self, item: T) -> Taken[T]:
        """Run ``item`` on the cheap lane's runner (a piece the caller runs without queueing
        it, or one :meth:`pop` takes)."""
        self.running_cheap += 1
        return Taken(item, False, -1)

    def done(self, taken: Taken[T]) -> None:
        """A piece :meth:`pop` (or :meth:`take_cheap`) gave has finished."""
        if taken.heavy:
            self.running_heavy -= 1
            self._running.pop(taken.seq, None)
        else:
            self.running_cheap -= 1


def cost_key(dataset: str, op: str, p: dict[str, Any]) -> tuple[Any, ...]:
    """The shape of a leaf op: what a dashboard's refresh repeats (the times move)."""
    what = p.get("query") if op == "eval" else repr(p.get("matchers"))
    return (dataset, op, what, p.get("partial"), p.get("name"))


def cost_units(op: str, p: dict[str, Any], shards: int) -> float:
    """Steps (a select: minutes of range) times shards: what a piece's cost scales with."""
    span = int(p.get("end", 0)) - int(p.get("start", 0))
    step = int(p.get("step", 0) or 0)
    if op == "eval":
        steps = span // step + 1 if step > 0 and span > 0 else 1
    else:
        steps = max(0, span) // 60_000 + 1
    return float(steps * max(1, shards))


class CostModel:
    """Seconds per unit (:func:`cost_units`) of each query shape, a moving average of the
    pieces run; bounded to ``COST_KEYS`` shapes (the least recently used goes). Not
    thread-safe."""

    def __init__(self, prior_s_per_unit: float = PRIOR_S_PER_UNIT) -> None:
        self.prior = prior_s_per_unit
        self._rate: OrderedDict[tuple[Any, ...], float] = OrderedDict()

    def estimate(self, key: tuple[Any, ...], units: float) -> float:
        rate = self._rate.get(key)
        if rate is None:
            return self.prior * units
        self._rate.move_to_end(key)
        return rate * units

    def known(self, key: tuple[Any, ...]) -> bool:
        """Whether pieces of this shape have run (the estimate is learned, not the prior)."""
        return key in self._rate

    def observe(self, key: tuple[Any, ...], units: float, seconds: float) -> None:
        rate = seconds / max(units, 1.0)
        old = self._rate.get(key)
        self._rate[key] = rate if old is None else old + EWMA * (rate - old)
        self._rate.move_to_end(key)
        while len(self._rate) > COST_KEYS:
            self._rate.popitem(last=False)
