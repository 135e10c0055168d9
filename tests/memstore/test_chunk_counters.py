"""The shard's chunk counters (``chunk_count``, ``chunk_samples``, ``chunk_bytes``, which
``stats()`` and ``cardinality()`` report without walking every chunk) stay equal to a walk
over the chunks through every operation that adds, grows, flushes, evicts, trims or drops
them: random sequences of ingests (in and out of order), flushes, retention, deletes and
purges."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from filodb.memstore.shard import TimeSeriesShard
from filodb.model.batch import SampleBatch
from filodb.model.labels import Matcher, make_labels

SERIES = [make_labels({"__name__": "m", "i": str(i)}) for i in range(12)]
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("ingest"), st.integers(1, 12), st.integers(1, 300), st.booleans()),
        st.tuples(st.just("flush"), st.integers(0, 1), st.booleans()),
        st.tuples(st.just("retain"), st.integers(0, 400)),
        st.tuples(st.just("delete"), st.integers(0, 11), st.integers(0, 400), st.integers(0, 200)),
        st.tuples(st.just("purge")),
    ),
    min_size=1,
    max_size=25,
)


def _walk(shard: TimeSeriesShard) -> tuple[int, int, int]:
    chunks = [c for cs in shard._chunks for c in cs]
    return len(chunks), sum(c.count for c in chunks), sum(c.nbytes for c in chunks)


@settings(max_examples=60, deadline=None)
@given(OPS)
def test_counters_equal_a_walk_over_the_chunks(ops: list[tuple]) -> None:
    shard = TimeSeriesShard("ds", 0, max_chunk_samples=16, num_groups=2, memory_budget=2500,
                            head_samples=8, ooo_window_ms=10**9)  # fmt: skip
    clock = 0
    for op in ops:
        if op[0] == "ingest":
            _, n_series, n, late = op
            ts = np.arange(n, dtype=np.int64) * 1000 + (clock - 50_000 if late else clock)
            clock += n * 1000
            sidx = np.repeat(np.arange(n_series, dtype=np.int32), n)
            shard.ingest(SampleBatch(SERIES[:n_series], sidx, np.tile(ts, n_series),
                                     np.arange(n * n_series, dtype=np.float64)))  # fmt: skip
        elif op[0] == "flush":
            fd = shard.prepare_flush(op[1], close_heads=op[2])
            shard.commit_flush(fd)
        elif op[0] == "retain":
            shard.drop_before(op[1] * 1000)
        elif op[0] == "delete":
            _, i, start, span = op
            shard.delete_series([Matcher("i", "=", str(i))], start * 1000, (start + span) * 1000)
        else:
            shard.purge_empty()
        n_chunks, samples, nbytes = _walk(shard)
        stats = shard.stats()
        assert (stats["chunks"], stats["chunk_bytes"]) == (n_chunks, nbytes)
        assert stats["samples"] == samples + stats["buffer_samples"]
