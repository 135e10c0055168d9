"""The query limits of a dataset at the web tier: its per-query limits (``max_samples``,
``max_series_per_query``, ``query_timeout``) and ``max_query_concurrency``.

Concurrency is counted per web process, or across the web processes of one ``filodb up``
(``--web-processes N``): slot ``i`` of a dataset is then an ``flock`` on a file of the run's
directory the processes share (:class:`FileSlots`; the kernel frees a dead process's slots).
A query past the limit waits for a slot up to its timeout, then answers 503 (Prometheus's
``unavailable``), counted on ``/metrics`` (``filodb_queries_refused{reason=...}``) and
cluster-wide (``filodb:refused:<dataset>``, shown by ``filodb status``). Queries being
answered are the gauge ``filodb_queries_running{dataset=...}``.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from flask import Flask, current_app

from filodb.errors import UnavailableError, UnknownDatasetError
from filodb.model.limits import DatasetLimits
from filodb.web.metrics import EXTENSION as METRICS
from filodb.web.services import services

F = TypeVar("F", bound=Callable[..., Any])
_EXTENSION = "filodb_query_slots"


Release = Callable[[], None]


class QuerySlots:
    """One semaphore per (dataset, limit) in this process; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sems: dict[tuple[str, int], threading.BoundedSemaphore] = {}

    def take(self, dataset: str, limit: int, timeout_s: float) -> Release | None:
        """A slot of ``dataset`` (its release), or None when none freed within ``timeout_s``."""
        with self._lock:
            sem = self._sems.get((dataset, limit))
            if sem is None:
                sem = self._sems[(dataset, limit)] = threading.BoundedSemaphore(limit)
        return sem.release if sem.acquire(timeout=timeout_s) else None


class FileSlots:
    """Slots shared by the processes using ``directory``: slot ``i`` of (dataset, limit) is an
    exclusive ``flock`` on a file of its own, held through a descriptor opened for the query
    (so threads of one process exclude each other too) and freed by the kernel when the
    process dies. A query finding every slot taken polls, 1 ms growing to 20 ms."""

    def __init__(self, directory: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.clock = clock

    def take(self, dataset: str, limit: int, timeout_s: float) -> Release | None:
        stem = hashlib.sha1(dataset.encode()).hexdigest()[:16]  # any URL text: no path
        paths = [self.dir / f"{stem}.{limit}.{i}" for i in range(limit)]
        deadline, pause = self.clock() + timeout_s, 0.001
        while True:
            for p in paths:
                fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                return functools.partial(os.close, fd)  # closing it unlocks
            if self.clock() >= deadline:
                return None
            time.sleep(min(pause, max(0.0, deadline - self.clock())))
            pause = min(pause * 2, 0.02)


def dataset_limits(dataset: str) -> DatasetLimits:
    """The dataset's limits with the config's defaults filled in; for an unknown dataset the
    config's defaults (the read that follows answers its 404)."""
    svc = services()
    try:
        return svc.router.dataset(dataset).limits.resolved(svc.cfg)
    except UnknownDatasetError:
        return DatasetLimits().resolved(svc.cfg)


def init_app(app: Flask, shared_dir: Path | None = None) -> None:
    """The app's query slots: in this process, or shared through ``shared_dir``."""
    app.extensions[_EXTENSION] = QuerySlots() if shared_dir is None else FileSlots(shared_dir)


def _slots() -> QuerySlots | FileSlots:
    slots = current_app.extensions.get(_EXTENSION)
    if slots is None:  # an app built without init_app; threads racing share the first one
        slots = current_app.extensions.setdefault(_EXTENSION, QuerySlots())
    return cast(QuerySlots | FileSlots, slots)


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
            release = _slots().take(ds, limit, timeout_s(lim)) if limit > 0 else None
            if limit > 0 and release is None:
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
                if release is not None:
                    release()

        return cast(F, view)

    return deco
