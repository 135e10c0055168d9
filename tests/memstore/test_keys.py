"""Series ids from the 64-bit keys a batch may carry (``SampleBatch.keys``): the same ids and
answers as by label set, for new, known, recovered and colliding series."""

from __future__ import annotations

import hashlib

import numpy as np

from filodb.memstore.shard import TimeSeriesShard
from filodb.model.batch import SampleBatch
from filodb.model.labels import Matcher, make_labels
from filodb.model.partkey import part_key

M = [Matcher("__name__", "=", "k")]
SERIES = [make_labels({"__name__": "k", "i": str(i)}) for i in range(50)]


def _key(lb) -> int:  # type: ignore[no-untyped-def]
    return int.from_bytes(hashlib.blake2b(part_key(lb), digest_size=8).digest(), "little")


def _batch(idx: list[int], t: int, keys: list[int] | None) -> SampleBatch:
    b = SampleBatch([SERIES[i] for i in idx], np.arange(len(idx)), np.full(len(idx), t),
                    np.array(idx, float) + t)  # fmt: skip
    if keys is not None:
        b.keys = np.array(keys, np.uint64)  # type: ignore[attr-defined]
    return b


def _answer(ms: TimeSeriesShard) -> dict:
    b = ms.select(M, 0, 10**9)
    return {b.labels[i]: (b.ts[b.offsets[i] : b.offsets[i + 1]].tolist(),
                          b.vals[b.offsets[i] : b.offsets[i + 1]].tolist())
            for i in range(len(b.labels))}  # fmt: skip


def test_keyed_batches_answer_as_label_sets_do_with_collisions_and_recovery() -> None:
    rng = np.random.default_rng(3)
    keyed = TimeSeriesShard("ds", 0, max_chunk_samples=5)
    plain = TimeSeriesShard("ds", 0, max_chunk_samples=5)
    recovered = TimeSeriesShard("ds", 0, max_chunk_samples=5)  # series known from part keys
    # registered from part keys (other objects, keys of their own: xxh64 of the part key)
    recovered._series_ids([make_labels(dict(lb)) for lb in SERIES[:20]])
    keys = [_key(lb) for lb in SERIES]
    keys[7] = keys[3]  # a collision: series 3 and 7 share a key
    keys[40] = keys[3]
    for t in range(1, 30):
        idx = sorted(rng.choice(50, size=int(rng.integers(1, 50)), replace=False).tolist())
        ks = [keys[i] for i in idx]
        for ms, k in ((keyed, ks), (plain, None), (recovered, ks)):
            st = ms.ingest(_batch(idx, t * 1000, k))
            assert st.accepted == len(idx)
        # a batch of new label set objects (a decode cache turned over): equal, not identical
        fresh = SampleBatch([make_labels(dict(SERIES[i])) for i in idx], np.arange(len(idx)),
                            np.full(len(idx), t * 1000 + 1), np.zeros(len(idx)))  # fmt: skip
        fresh.keys = np.array(ks, np.uint64)  # type: ignore[attr-defined]
        for ms in (keyed, recovered):
            ms.ingest(fresh)
        plain.ingest(SampleBatch(fresh.series, fresh.sidx, fresh.ts, fresh.vals))
        assert _answer(keyed) == _answer(plain) == _answer(recovered)
    assert keyed.num_series == plain.num_series == recovered.num_series == 50
