"""The HTTP ingestion doors: where a route hands the batch it decoded.

An :class:`IngestDoor` has a name (``remote_write``, ``influx_http``: the ``door`` label of the
self-metrics). Its :meth:`~IngestDoor.write` appends a batch durably through the
:class:`~filodb.gateway.router.IngestRouter` (the acknowledgement), keeps the metric metadata
that came with it (or the types its protocol implies, :meth:`MetadataStore.put_types`), and counts the batch's samples as accepted, or as rejected with the reason
when the write fails. The counts go to an :class:`IngestCounter`, which the web tier's
self-metrics implement (:class:`filodb.web.metrics.WebMetrics`); the door knows no Flask.

The TCP doors (:mod:`filodb.gateway.tcp`) retry and count lines themselves, in their own
process, and do not use this class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from filodb.errors import FiloError
from filodb.gateway.router import IngestRouter
from filodb.model.batch import SampleBatch
from filodb.shards.metadata import MetadataStore

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
                 counter: IngestCounter) -> None:  # fmt: skip
        self.name = name
        self.router = router
        self.metadata = metadata
        self.counter = counter
        self._typed: set[tuple[str, str, str]] = set()  # (dataset, family, type) kept already

    def write(self, dataset: str, batch: SampleBatch,
              metadata: Sequence[dict[str, str]] = ()) -> dict[int, int]:  # fmt: skip
        """Append ``batch`` to ``dataset``'s log, then keep its ``metadata`` entries; returns
        samples per shard. Durable when it returns. The batch's samples are counted accepted,
        or rejected (``unknown_dataset``, ``log_unavailable``, ...) when the append raises;
        the error is raised again and the metadata is then not kept."""
        try:
            out = self.router.write(dataset, batch)
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
            self._keep_types(dataset, batch.types)
        return out

    def _keep_types(self, dataset: str, types: dict[str, str]) -> None:
        """Metric types a protocol implies (Influx ``counter`` fields, histogram lines) become
        metadata entries where a family has none; each is sent to Redis once per process."""
        new = {n: t for n, t in types.items() if (dataset, n, t) not in self._typed}
        if not new:
            return
        self.metadata.put_types(dataset, new)
        if len(self._typed) > 100_000:
            self._typed.clear()
        self._typed.update((dataset, n, t) for n, t in new.items())

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
