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

The TCP doors (:mod:`filodb.gateway.tcp`) retry and count lines themselves, in their own
process, and do not use this class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from filodb.errors import FiloError, RateLimitedError
from filodb.gateway.limits import IngestLimiter, Refusal, refusal_error
from filodb.gateway.router import IngestRouter
from filodb.model.batch import SampleBatch
from filodb.model.dataset import Dataset
from filodb.shards.metadata import MetadataStore, TypesKept

# A write's error type -> the reason its samples are counted as rejected.
_REASONS = {
    "not_found": "unknown_dataset",
    "unavailable": "log_unavailable",
    "bad_data": "bad_data",
}


class IngestCounter(Protocol):
    """Where doors count samples and requests (the ``door`` argument is the door's name)."""

    def samples_accepted(self, door: str, n: int) -> None: ...

    def samples_rejected(self, door: str, reason: str, n: int) -> None: ...

    def request_rejected(self, door: str, reason: str) -> None: ...


class IngestDoor:
    """One HTTP ingestion door; thread-safe when its router, store and counter are."""

    def __init__(self, name: str, router: IngestRouter, metadata: MetadataStore,
                 counter: IngestCounter, limiter: IngestLimiter | None = None) -> None:  # fmt: skip
        self.name = name
        self.limiter = limiter
        self.router = router
        self.metadata = metadata
        self.counter = counter
        self.types = TypesKept(metadata)

    def write(self, dataset: str, batch: SampleBatch,
              metadata: Sequence[dict[str, str]] = ()) -> dict[int, int]:  # fmt: skip
        """Append ``batch`` to ``dataset``'s log, then keep its ``metadata`` entries; returns
        samples per shard. Durable when it returns. The batch's samples are counted accepted,
        or rejected (``unknown_dataset``, ``log_unavailable``, ...) when the append raises;
        the error is raised again and the metadata is then not kept. Past a limit of the
        dataset, see the module docstring."""
        refusals: list[Refusal] = []
        desc = None
        try:
            if self.limiter is not None and len(batch):
                desc = self.router.dataset(dataset)
                batch, refusals = self._limit(desc, batch)
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
        self.counter.samples_accepted(self.name, len(batch))
        if metadata:
            self.metadata.put(dataset, metadata)
        elif batch.types:
            self.types.keep(dataset, batch.types)
        if refusals:
            raise refusal_error(dataset, refusals, len(batch))
        return out

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
        assert self.limiter is not None
        self.counter.samples_rejected(self.name, reason, n)
        self.limiter.store.count_refused(dataset, reason, n)

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
