"""``encode_many``: many chunks' vectors in one numba call equal the one-chunk encoders' and
decode back bit for bit (stale-marker NaN, -0.0, ±Inf, mixed decimals and XOR-shaped values)."""

from __future__ import annotations

import numpy as np

from filodb.encoding import (
    decode_doubles_many,
    decode_timestamps_many,
    encode_doubles,
    encode_many,
    encode_timestamps,
)


def test_groups_encode_as_each_alone_and_decode_back() -> None:
    rng = np.random.default_rng(7)
    sizes = [1, 480, 0, 37, 2, 300]
    offsets = np.r_[0, np.cumsum(sizes)]
    n = int(offsets[-1])
    ts = 1_700_000_000_000 + np.cumsum(rng.integers(1, 30_000, n))
    vals = np.round(rng.random(n) * 1000, 2)
    vals[500:537] = rng.random(37)  # no short decimal form: XOR or raw
    stale = np.array([0x7FF0000000000002], np.uint64).view(np.float64)[0]
    vals[[3, 40, 600]] = [stale, -0.0, np.inf]
    tvecs, vvecs = encode_many(ts, vals, offsets)
    assert len(tvecs) == len(vvecs) == len(sizes)
    for i in range(len(sizes)):
        a, b = offsets[i], offsets[i + 1]
        assert tvecs[i] == encode_timestamps(ts[a:b])
        assert vvecs[i] == encode_doubles(vals[a:b])
    t2, toffs = decode_timestamps_many(tvecs)
    v2, _ = decode_doubles_many(vvecs)
    assert toffs.tolist() == offsets.tolist()
    assert t2.tolist() == ts.tolist()
    assert v2.view(np.uint64).tolist() == vals.view(np.uint64).tolist()
