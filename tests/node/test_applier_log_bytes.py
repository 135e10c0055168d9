"""The applier counts the bytes of the log past a checkpoint: what ``flush_log_mb`` bounds."""

from __future__ import annotations

import numpy as np

from filodb.memstore.shard import TimeSeriesShard
from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.node.applier import LogApplier


def _record(k: int, n: int) -> bytes:
    lb = [make_labels({"__name__": "m", "i": str(i)}) for i in range(n)]
    return SampleBatch(lb, np.arange(n), np.full(n, 1000 * (k + 1)), np.arange(n) + 0.5).to_bytes()


def test_log_bytes_after_a_checkpoint() -> None:
    ms = TimeSeriesShard("ds", 0, num_groups=2)
    app = LogApplier.without_store(ms, None)  # type: ignore[arg-type]  # replay not used
    recs = [(off, _record(off, 1 + 7 * off)) for off in range(1, 11)]
    sizes = {off: len(r) for off, r in recs}
    app.apply(recs[:4])
    app.apply(recs[4:])
    assert app.offset == 10 and ms.stats()["samples"] == sum(1 + 7 * o for o in range(1, 11))
    assert app.log_bytes_after(0) == sum(sizes.values())
    assert app.log_bytes_after(3) == sum(sizes[o] for o in range(4, 11))
    assert app.log_bytes_after(7) == sum(sizes[o] for o in range(8, 11))  # forgets below 7
    app.apply([(11, _record(11, 3))])
    assert app.log_bytes_after(7) == sum(sizes[o] for o in range(8, 11)) + len(_record(11, 3))
    assert app.log_bytes_after(11) == 0
