"""The query limits of a dataset at the web tier: its per-query limits (``max_samples``,
``max_series_per_query``, ``query_timeout``) and ``max_query_concurrency``.

Concurrency is counted per web process (``filodb up`` runs one, with many threads): a
query past the limit waits for a slot up to its timeout, then answers 503 (Prometheus's
``unavailable``), counted on ``/metrics`` (``filodb_queries_refused{reason=...}``) and
cluster-wide (``filodb:refused:<dataset>``, shown by ``filodb status``). Queries being
answered are the gauge ``filodb_queries_running{dataset=...}``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import current_app

from filodb.errors import UnavailableError, UnknownDatasetError
from filodb.model.limits import DatasetLimits
from filodb.web.metrics import EXTENSION as METRICS
from filodb.web.services import services

F = TypeVar("F", bound=Callable[..., Any])
_EXTENSION = "filodb_query_slots"


class QuerySlots:
    """One semaphore per (dataset, limit); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sems: dict[tuple[str, int], threading.BoundedSemaphore] = {}

    def semaphore(self, dataset: str, limit: int) -> threading.BoundedSemaphore:
        with self._lock:
            sem = self._sems.get((dataset, limit))
            if sem is None:
                sem = self._sems[(dataset, limit)] = threading.BoundedSemaphore(limit)
            return sem


def dataset_limits(dataset: str) -> DatasetLimits:
    """The dataset's limits with the config's defaults filled in; for an unknown dataset the
    config's defaults (the read that follows answers its 404)."""
    svc = services()
    try:
        return svc.router.dataset(dataset).limits.resolved(svc.cfg)
    except UnknownDatasetError:
        return DatasetLimits().resolved(svc.cfg)


def _slots() -> QuerySlots:
    slots = current_app.extensions.get(_EXTENSION)
    if slots is None:  # setdefault: threads racing here share the first one
        slots = current_app.extensions.setdefault(_EXTENSION, QuerySlots())
    return cast(QuerySlots, slots)


def limit_concurrency(timeout_s: Callable[[DatasetLimits], float]) -> Callable[[F], F]:
    """Decorate a query view (its ``dataset`` argument, None for the default one) so it runs
    holding a slot of its dataset; ``timeout_s`` gives how long it may wait for one."""

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def view(*args: Any, dataset: str | None = None, **kw: Any) -> Any:
            ds = dataset or services().cfg.dataset
            lim = dataset_limits(ds)
            limit = int(lim.max_query_concurrency or 0)
            metrics = current_app.extensions.get(METRICS)
            sem = _slots().semaphore(ds, limit) if limit > 0 else None
            if sem is not None and not sem.acquire(timeout=timeout_s(lim)):
                if metrics is not None:
                    metrics.queries_refused.labels(ds, "max_query_concurrency").inc()
                services().limits.count_refused(ds, "max_query_concurrency", 1)
                raise UnavailableError(
                    f"query concurrency limit of dataset {ds} reached: max_query_concurrency="
                    f"{limit}; no query slot freed within {timeout_s(lim):g} s"
                )
            running = metrics.queries_running.labels(ds) if metrics is not None else None
            if running is not None:
                running.inc()
            try:
                return fn(*args, dataset=dataset, **kw)
            finally:
                if running is not None:
                    running.dec()
                if sem is not None:
                    sem.release()

        return cast(F, view)

    return deco
