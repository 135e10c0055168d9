"""The HTTP ingestion doors: where a route hands the batch it decoded.

An :class:`IngestDoor` has a name (``remote_write``, ``influx_http``: the ``door`` label of the
self-metrics). Its :meth:`~IngestDoor.write` appends a batch durably through the
:class:`~filodb.gateway.router.IngestRouter` (the acknowledgement), keeps the metric metadata
that came with it (or the types its protocol implies, :meth:`MetadataStore.put_types`), and counts the batch's samples as accepted, or as rejected with the reason
when the write fails. The counts go to an :class:`IngestCounter`, which the web tier's
self-metrics implement (:class:`filodb.web.metrics.WebMetrics`); the door knows no Flask.

With an :class:`~filodb.gateway.limits.IngestLimiter` the door checks the dataset's limits
first: past the ingest rate the whole batch is refused (429), past a series limit the new
series' samples are refused, the rest is written, and the write then answers 400 naming the
limit (:func:`~filodb.gateway.limits.refusal_error`); refused samples are counted with the
limit's key as reason, here and cluster-wide (``filodb:refused:<dataset>``).

Out-of-order samples: a batch whose series a door's series-key cache resolved
(``SampleBatch.routed``) is checked against the newest timestamp that cache's doors in this
process routed per series and dataset (:func:`without_late`, one numba pass under the cache's
lock). A sample more than ``ooo_window_ms`` older than that newest is not written: the
workers would drop it (they refuse what is not newer than their series' newest, beyond the
window) after the door acknowledged it. The rest is written, and the write then answers 400,
``out of order sample`` (or ``too old sample`` with a window), saying how many were refused
and how many written (:class:`~filodb.errors.OutOfOrderError`); they are counted as rejected
with the worker's reasons, ``out_of_order`` (no window) or ``too_old``, here and (with the
limits' store) cluster-wide as the limits' refusals are. A sample equal to the
newest passes, and so does every sample of a series whose samples in the body reach its
newest: a resend of the body that set it stays 204 (the worker drops the duplicates, counted
there), as does a body overlapping it. Samples out of order within one body pass too (the
newest is the one before the body: the worker sorts them in or drops them, as before). The
newest is noted after the log took the samples (:func:`note_routed`), so two bodies racing may
miss a refusal, never refuse a sample older only than one not yet written. The newest holds
per dataset creation and epoch (:class:`Epochs`: a deletion of series bumps it, since the
workers' newest may then go back). Per web process only, and forgotten when the cache starts
from empty or the process restarts: the first body after that passes.

The TCP doors (:mod:`filodb.gateway.tcp`) retry and count lines themselves, in their own
process, and do not use this class (they use :func:`without_late` and :func:`note_routed`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import redis

from filodb.errors import FiloError, OutOfOrderError, RateLimitedError, SamplesRefusedError
from filodb.gateway.joiner import Steps, WriteJoiner, run_steps
from filodb.gateway.limits import IngestLimiter, Refusal, refusal_error
from filodb.gateway.router import IngestRouter
from filodb.model.batch import SampleBatch
from filodb.model.dataset import Dataset
from filodb.model.identity import Routed
from filodb.shards.cache_generation import generation_key
from filodb.shards.metadata import MetadataStore, TypesKept

log = logging.getLogger(__name__)

EPOCH_TTL_S = 1.0  # a dataset's epoch (deletions) is read again after this long

# A write's error type -> the reason its samples are counted as rejected.
_REASONS = {
    "not_found": "unknown_dataset",
    "unavailable": "log_unavailable",
    "bad_data": "bad_data",
}


def late_reason(window_ms: int) -> str:
    """The reason refused late samples are counted under (the workers' reasons)."""
    return "too_old" if window_ms > 0 else "out_of_order"


class Epochs:
    """What the late check's newest of a dataset holds under, besides its creation: the
    dataset's results-cache generation (:mod:`filodb.shards.cache_generation`), which a
    deletion bumps (the workers' newest may then go back), read from Redis at most every
    ``ttl_s`` per dataset; None when Redis does not answer (no check then).
    :meth:`expire` forgets one at once (the process that served the deletion)."""

    def __init__(self, client: redis.Redis, ttl_s: float = EPOCH_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.client = client
        self.ttl_s = ttl_s
        self.clock = clock
        self._got: dict[str, tuple[float, int]] = {}

    def __call__(self, dataset: str) -> int | None:
        now = self.clock()
        hit = self._got.get(dataset)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        try:
            raw = self.client.get(generation_key(dataset))
        except redis.RedisError:
            return None
        if len(self._got) > 10_000:
            self._got.clear()
        got = int(raw or 0)
        self._got[dataset] = (now, got)
        return got

    def expire(self, dataset: str) -> None:
        self._got.pop(dataset, None)


EpochOf = Callable[[str], "int | None"]


def _no_epochs(_dataset: str) -> int:
    return 0


def without_late(desc: Dataset, batch: SampleBatch, window_ms: int,
                 epoch: int | None = 0) -> tuple[SampleBatch, int]:  # fmt: skip
    """``batch`` without its samples more than ``window_ms`` older than their series' newest
    timestamp routed to ``desc`` (under ``epoch``, see :class:`Epochs`; None: no check)
    through the cache that resolved them (a batch not from a cache: as it is), and how many
    were taken out."""
    r = batch.routed
    if not isinstance(r, Routed) or epoch is None or not len(batch):
        return batch, 0
    got = r.cache.late(desc.name, (desc.created, epoch), r, batch.sidx, batch.ts, window_ms)
    if got is None or not got[1]:
        return batch, 0
    return batch.take_samples(~got[0]), got[1]


def note_routed(desc: Dataset, batch: SampleBatch, epoch: int | None = 0) -> None:
    """Note ``batch``'s samples as written to ``desc``'s log (call it once they are, with the
    ``epoch`` the batch was checked under)."""
    r = batch.routed
    if isinstance(r, Routed) and epoch is not None and len(batch):
        r.cache.routed(desc.name, (desc.created, epoch), r, batch.sidx, batch.ts)


def late_message(dataset: str, n: int, window_ms: int) -> str:
    """What a writer is told of ``n`` late samples refused (Prometheus's words first)."""
    if window_ms > 0:
        return (f"too old sample: {n} samples refused, older than their series' newest sample "
                f"already written to dataset {dataset} by more than ooo_window="
                f"{window_ms / 1000:g}s")  # fmt: skip
    return (f"out of order sample: {n} samples refused, older than their series' newest "
            f"sample already written to dataset {dataset}")  # fmt: skip


class IngestCounter(Protocol):
    """Where doors count samples and requests (the ``door`` argument is the door's name)."""

    def samples_accepted(self, door: str, n: int) -> None: ...

    def samples_rejected(self, door: str, reason: str, n: int) -> None: ...

    def request_rejected(self, door: str, reason: str) -> None: ...


class IngestDoor:
    """One HTTP ingestion door; thread-safe when its router, store and counter are."""

    def __init__(self, name: str, router: IngestRouter, metadata: MetadataStore,
                 counter: IngestCounter, limiter: IngestLimiter | None = None,
                 ooo_window_ms: int = 0, epochs: EpochOf = _no_epochs,
                 join_writes: bool = True) -> None:  # fmt: skip
        self.name = name
        self.epochs = epochs
        self.limiter = limiter
        self.ooo_window_ms = max(0, int(ooo_window_ms))
        self.router = router
        # concurrent bodies' writes joined (``join_writes``; else one router call a body)
        self.joiner = WriteJoiner(router) if join_writes else None
        self.metadata = metadata
        self.counter = counter
        self.types = TypesKept(metadata)

    def write(self, dataset: str, batch: SampleBatch,
              metadata: Sequence[dict[str, str]] = ()) -> dict[int, int]:  # fmt: skip
        """Append ``batch`` to ``dataset``'s log, then keep its ``metadata`` entries; returns
        samples per shard. Durable when it returns. The batch's samples are counted accepted,
        or rejected (``unknown_dataset``, ``log_unavailable``, ...) when the append raises;
        the error is raised again and the metadata is then not kept. Past a limit of the
        dataset, and for samples older than their series' newest, see the module
        docstring."""
        return run_steps(self.write_steps(dataset, batch, metadata))

    def write_steps(self, dataset: str, batch: SampleBatch,
                    metadata: Sequence[dict[str, str]] = ()) -> Steps[dict[int, int]]:  # fmt: skip
        """:meth:`write`, yielding where the log's append is waited for
        (:meth:`WriteJoiner.write_steps`)."""
        refusals: list[Refusal] = []
        late = 0
        desc = None
        epoch: int | None = None
        try:
            if batch.routed is not None and len(batch):
                desc = self.router.dataset(dataset)
                epoch = self.epochs(dataset)
                batch, late = without_late(desc, batch, self.ooo_window_ms, epoch)
                if late:
                    self._refused(dataset, late_reason(self.ooo_window_ms), late)
            if self.limiter is not None and len(batch):
                desc = desc or self.router.dataset(dataset)
                batch, refusals = self._limit(desc, batch)
            if self.joiner is not None:
                out = yield from self.joiner.write_steps(dataset, batch, desc)
            else:
                out = self.router.write(dataset, batch, desc)
        except RateLimitedError:  # counted by _limit
            raise
        except FiloError as e:
            self.counter.samples_rejected(self.name, _REASONS.get(e.error_type, e.error_type),
                                          len(batch))  # fmt: skip
            raise
        except Exception:
            self.counter.samples_rejected(self.name, "log_unavailable", len(batch))
            raise
        if desc is not None:
            note_routed(desc, batch, epoch)
        self.counter.samples_accepted(self.name, len(batch))
        if metadata:
            self.metadata.put(dataset, metadata)
        elif batch.types:
            self.types.keep(dataset, batch.types)
        if late or refusals:
            raise self._refused_error(dataset, late, refusals, len(batch))
        return out

    def _refused_error(self, dataset: str, late: int, refusals: list[Refusal],
                       written: int) -> SamplesRefusedError:  # fmt: skip
        """The 400 of a write of which ``late`` samples and ``refusals`` were refused."""
        if not late:
            return refusal_error(dataset, refusals, written)
        msg = late_message(dataset, late, self.ooo_window_ms)
        if refusals:
            return OutOfOrderError(f"{msg}; {refusal_error(dataset, refusals, written)}")
        return OutOfOrderError(f"{msg}; the other {written} samples were written")

    def _limit(self, desc: Dataset, batch: SampleBatch) -> tuple[SampleBatch, list[Refusal]]:
        """The part of ``batch`` the dataset's limits let through, and what they refused."""
        assert self.limiter is not None
        dataset = desc.name
        try:
            self.limiter.take_rate(desc, len(batch))
        except RateLimitedError:
            self._refused(dataset, "ingest_samples_per_s", len(batch))
            raise
        keep, refusals = self.limiter.admit(desc, batch)
        if not refusals or keep is None:
            return batch, []
        for r in refusals:
            self._refused(dataset, r.reason, r.samples)
        return batch.take_series(keep), refusals

    def _refused(self, dataset: str, reason: str, n: int) -> None:
        """Count ``n`` samples refused for ``reason`` (a limit's, or out of order): here, and
        cluster-wide (``filodb status``) when the door has the limits' store, best effort."""
        self.counter.samples_rejected(self.name, reason, n)
        if self.limiter is None:
            return
        try:
            self.limiter.store.count_refused(dataset, reason, n)
        except Exception:  # noqa: BLE001 - the process's count is kept
            log.warning("%s door: refusal not counted in Redis", self.name, exc_info=True)

    def reject_samples(self, reason: str, n: int) -> None:
        """Count ``n`` samples refused before the write for ``reason`` (``malformed_line``:
        one per Influx line that does not parse)."""
        self.counter.samples_rejected(self.name, reason, n)

    def reject_request(self, err: FiloError) -> None:
        """Count a request refused whole, before its samples could be counted: a body that
        does not decode (400: ``malformed``), one too large (413: ``too_large``)."""
        status = err.http_status
        reason = "too_large" if status == 413 else "malformed" if status == 400 else "error"
        self.counter.request_rejected(self.name, reason)
