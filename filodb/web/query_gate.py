"""How many queries a web process evaluates at once: ``query_slots``, the waiting ones let in
cheapest first (:class:`~filodb.tasks.scheduler.FairGate`).

Under many clients the web process's query threads share one GIL: each of a cheap query's
many wake-ups waited behind the Python work of every heavy query being merged at the same
time. A query waits here for a slot in the order of its virtual deadline ``arrival + 4 x
estimated cost`` (the cost of its text per step, learned from its past evaluations in this
process), heavy queries (estimated at 2 ms or more) hold at most ``query_slots - 1`` slots,
and a query waits at most its timeout (then 503 ``timeout``). Writing the answer happens
after the slot is given back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from filodb.errors import QueryTimeoutError
from filodb.tasks.scheduler import CostModel, FairGate

WEB_PRIOR_S_PER_STEP = 50e-6  # a query text never evaluated here yet


class QueryGate:
    def __init__(self, slots: int) -> None:
        self.gate = FairGate(slots)
        self.costs = CostModel(WEB_PRIOR_S_PER_STEP)
        self._lock = threading.Lock()  # the cost model's

    @contextmanager
    def slot(self, dataset: str, query: str, steps: int, timeout_s: float) -> Iterator[None]:
        key = (dataset, query)
        with self._lock:
            cost = self.costs.estimate(key, steps)
        ticket = self.gate.enter(cost, timeout_s)
        if ticket is None:
            raise QueryTimeoutError("query timed out waiting for a query slot")
        t0 = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - t0
            self.gate.leave(ticket)
            with self._lock:
                self.costs.observe(key, steps, spent)
