"""The ingest limits of a dataset, checked by the doors (HTTP and TCP) before a batch is
appended.

:class:`IngestLimiter` answers, for one batch: may it be written now (the ingest rate, a
token bucket per dataset in Redis shared by every process), and which of its series may
(``max_series``, ``max_series_per_metric``, counted cluster-wide in Redis by the doors).

Series counting: each process keeps the series it saw admitted, as a sorted int64 array of
their keys per dataset (the xxh64 of the part key, which a door's batch carries: 8 bytes a
series; the label sets themselves are not kept alive, nor decoded from a door's part keys for
the series seen before). A batch's keys are looked up with one ``searchsorted``; only the
unseen series are hashed again, stably (xxh3-64 of the part key),
and sent to Redis in one script call, which admits them in order while the limits allow and
refreshes the known ones. So a steady workload costs no Redis round trip at all. The local
array is dropped every ``REFRESH_S`` (or a quarter of the retention), which re-sends the live
series and refreshes their last-seen time: series silent for longer than the dataset's
retention leave the count, as they leave memory. The count is exact up to hash collisions
(64 bits: none expected below billions of series) and to series admitted whose write then
failed or whose samples a shard rejected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xxhash

from filodb.config import Config
from filodb.errors import LimitExceededError, RateLimitedError
from filodb.model.batch import SampleBatch
from filodb.model.dataset import Dataset
from filodb.model.labels import metric_name
from filodb.model.limits import DatasetLimits
from filodb.model.shardkey import part_key_bytes
from filodb.shards.limits import ADMITTED, OVER_PER_METRIC, LimitsStore

REFRESH_S = 600.0
MAX_KNOWN = 10_000_000  # series kept per dataset and process (80 MB); past it, start again
SCRIPT_SERIES = 10_000  # new series per script call


@dataclass(frozen=True)
class Refusal:
    """Samples of a batch refused by a limit: ``reason`` is the limit's key."""

    reason: str
    limit: int
    series: int
    samples: int


class IngestLimiter:
    """Checks batches against their dataset's limits; thread-safe (a race only re-asks Redis)."""

    def __init__(self, store: LimitsStore, cfg: Config,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.store = store
        self.cfg = cfg
        self.clock = clock
        # dataset -> (monotonic time the array was started, sorted hashes of admitted series)
        self._known: dict[str, tuple[float, np.ndarray]] = {}
        self._resolved: dict[DatasetLimits, DatasetLimits] = {}  # a dataset's -> every key set

    def limits(self, desc: Dataset) -> DatasetLimits:
        """The dataset's limits with the config's defaults filled in (kept: a body asks twice)."""
        got = self._resolved.get(desc.limits)
        if got is None:
            if len(self._resolved) > 1000:
                self._resolved.clear()
            got = self._resolved[desc.limits] = desc.limits.resolved(self.cfg)
        return got

    def take_rate(self, desc: Dataset, n: int) -> None:
        """Take ``n`` samples from the dataset's ingest rate, or raise
        :class:`RateLimitedError` with the seconds to wait."""
        rate = self.limits(desc).ingest_samples_per_s or 0.0
        if rate <= 0 or n == 0:
            return
        wait = self.store.take_tokens(desc.name, rate, n)
        if wait > 0:
            raise RateLimitedError(
                f"ingest rate limit of dataset {desc.name} reached: ingest_samples_per_s="
                f"{rate:g}; {n} samples refused, retry in {wait:.3g} s", wait,
            )  # fmt: skip

    def admit(self, desc: Dataset, batch: SampleBatch) -> tuple[np.ndarray | None, list[Refusal]]:
        """Which series of ``batch`` may be written: None (all of them, no series limit), or
        a boolean mask per series and the refusals (one per limit that refused any)."""
        lim = self.limits(desc)
        max_series, per_metric = int(lim.max_series or 0), int(lim.max_series_per_metric or 0)
        if (max_series <= 0 and per_metric <= 0) or not batch.series:
            return None, []
        known = self._known_array(desc)
        series = batch.series
        # the part keys' xxh64 (a door's batch has them): a door's label sets are decoded
        # only for the series this process has not seen admitted
        hashes = batch.series_keys().view(np.int64)
        pos = np.minimum(np.searchsorted(known, hashes), max(0, len(known) - 1))
        ok = known[pos] == hashes if len(known) else np.zeros(len(series), bool)
        todo = np.flatnonzero(~ok).tolist()
        if not todo:
            return ok, []
        retention = desc.retention(self.cfg.retention)
        now = self.clock()
        cutoff = now - retention if retention > 0 else 0.0
        codes = np.empty(len(todo), np.int8)
        for a in range(0, len(todo), SCRIPT_SERIES):
            part = todo[a : a + SCRIPT_SERIES]
            got = self.store.admit_series(
                desc.name, [xxhash.xxh3_64_digest(part_key_bytes(series[i])) for i in part],
                [metric_name(series[i]) for i in part], now, cutoff, max_series, per_metric,
            )  # fmt: skip
            codes[a : a + len(part)] = got
        idx = np.asarray(todo, np.int64)
        admitted = idx[codes == ADMITTED]
        ok[admitted] = True
        if len(admitted):
            self._known[desc.name] = (self._known[desc.name][0],
                                      np.union1d(self._known[desc.name][1], hashes[admitted]))  # fmt: skip
        if len(admitted) == len(idx):
            return ok, []
        per_series = np.bincount(batch.sidx, minlength=len(series))
        refusals = []
        for code, reason, limit in ((0, "max_series", max_series),
                                    (OVER_PER_METRIC, "max_series_per_metric", per_metric)):  # fmt: skip
            hit = idx[codes == code]
            if len(hit):
                refusals.append(Refusal(reason, limit, len(hit), int(per_series[hit].sum())))
        return ok, refusals

    def _known_array(self, desc: Dataset) -> np.ndarray:
        now = time.monotonic()
        retention = desc.retention(self.cfg.retention)
        refresh = min(REFRESH_S, retention / 4) if retention > 0 else REFRESH_S
        hit = self._known.get(desc.name)
        if hit is None or now - hit[0] > refresh or len(hit[1]) > MAX_KNOWN:
            hit = self._known[desc.name] = (now, np.zeros(0, np.int64))
        return hit[1]


def refusal_error(dataset: str, refusals: list[Refusal], written: int) -> LimitExceededError:
    """The 400 a writer gets: which limits, how many samples of how many new series."""
    parts = [f"{r.reason}={r.limit} refused {r.samples} samples of {r.series} new series"
             for r in refusals]  # fmt: skip
    total = sum(r.samples for r in refusals)
    return LimitExceededError(
        f"series limit of dataset {dataset} reached: {'; '.join(parts)} ({total} samples "
        f"refused; the other {written} samples were written)"
    )
