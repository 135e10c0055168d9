"""Per-series arrays grown with room to spare read as the arrays concatenation would give,
whatever was written to them in between, and a purge's fresh array starts a buffer of its own."""

from __future__ import annotations

import numpy as np

from filodb.memstore.rows import extend_rows, held_nbytes


def test_extend_rows_reads_as_concatenate() -> None:
    rng = np.random.default_rng(0)
    a = np.zeros(0, np.int64)
    pages = np.full((0, 3), -1, np.int32)
    want, want_pages = a.copy(), pages.copy()
    copies = purges = 0
    for _ in range(200):
        k = int(rng.integers(0, 40))
        before = a.ctypes.data if len(a) else None
        a, pages = extend_rows(a, k, 7), extend_rows(pages, k, -1)
        want = np.concatenate([want, np.full(k, 7, np.int64)])
        want_pages = np.concatenate([want_pages, np.full((k, 3), -1, np.int32)])
        copies += before is not None and a.ctypes.data != before
        # writes to the rows held so far stay theirs
        at = rng.integers(0, len(a), 3) if len(a) else np.zeros(0, np.int64)
        a[at] = want[at] = rng.integers(0, 100, len(at))
        pages[at, 1] = want_pages[at, 1] = 5
        assert np.array_equal(a, want) and np.array_equal(pages, want_pages)
        assert a.flags.c_contiguous and pages.flags.c_contiguous
        if rng.random() < 0.05:  # a purge: a fresh array, then growth into a buffer of its own
            purges += 1
            keep = rng.random(len(a)) < 0.5
            old = a
            a, want = a[keep], want[keep]
            pages, want_pages = pages[keep], want_pages[keep]
            a, pages = extend_rows(a, 1, 1), extend_rows(pages, 1, -1)
            want = np.concatenate([want, [1]])
            want_pages = np.concatenate([want_pages, np.full((1, 3), -1, np.int32)])
            assert not np.shares_memory(a, old)
    # the buffer grows by half as much again (from 16 rows), not at every batch
    assert copies <= np.log(len(want) / 16) / np.log(1.5) + 2 * (purges + 1)
    assert a.nbytes <= held_nbytes(a) <= 2 * a.nbytes + 16 * 8
