"""Churn: 1 M series pass through a shard whose retention keeps one cycle of them. Series
whose data has all passed retention are purged (labels, index, buffers), so the shard's own
accounting is the same after every cycle and the process's RSS stays flat after the first
ones (the allocator settles); without the purge each cycle would add ~100 MB."""

from __future__ import annotations

import numpy as np
import xxhash

from filodb.memstore.shard import TimeSeriesShard
from filodb.model.batch import SampleBatch
from filodb.model.labels import Matcher, make_labels
from filodb.model.partkey import part_key

PER = 100_000
CYCLES = 10  # 1 M series in all
STEP_MS = 60_000


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


def test_a_million_series_churn_with_memory_flat() -> None:
    ms = TimeSeriesShard("ds", 0)
    seen = []
    for c in range(CYCLES):
        series = [make_labels({"__name__": "churn", "job": "j", "pod": f"p{c}-{i}"})
                  for i in range(PER)]  # fmt: skip
        # keys given: the batch's part keys are built without the process-wide cache of
        # SampleBatch.series_keys, which would hold the dead series
        keys = np.fromiter((xxhash.xxh64_intdigest(part_key(lb)) for lb in series), np.uint64,
                           PER)  # fmt: skip
        for k in range(2):
            ms.ingest(SampleBatch(series, np.arange(PER, dtype=np.int32),
                                  np.full(PER, c * STEP_MS + k * 1000, np.int64),
                                  np.full(PER, float(c)), keys=keys))  # fmt: skip
        del series
        ms.drop_before(c * STEP_MS)  # the retention cut: every earlier cycle has passed it
        purged = ms.purge_empty()
        assert purged == (PER if c else 0)
        st = ms.stats()
        seen.append((ms.num_series, st["memory_bytes"], len(ms._index), _rss()))
        # only this cycle's series are known, found and answered
        assert ms.num_series == PER and len(ms._index) == PER
        # one pattern for every cycle: each compiled regex remembers the values it saw
        got = ms.select([Matcher("pod", "=~", "p[0-9]+-1.*")], 0, 10**12)
        assert len(got.labels) == 11_111 and set(got.vals.tolist()) == {float(c)}
        assert ms.series([Matcher("pod", "=", f"p{c - 1}-0")], 0, 10**12) == []
        assert len(ms.label_values("pod", [], 0, 10**12)) == PER
    print("churn RSS MiB per cycle:", [s[3] >> 20 for s in seen])
    assert ms.series_purged == PER * (CYCLES - 1)
    # the shard's accounting: the same from the second cycle on (the head's page pool keeps the
    # pages of the cycle that overlapped the previous one, for reuse, and no more)
    assert len({s[1] for s in seen[1:]}) == 1 and seen[1][1] <= 2 * seen[0][1]
    settled = max(s[3] for s in seen[2:4])
    # RSS swings by ~10 % as the head's pool is reallocated; without the purge it would grow by
    # ~100 MB a cycle (600 MB over the last six)
    assert max(s[3] for s in seen[4:]) <= settled * 1.2, [s[3] >> 20 for s in seen]
