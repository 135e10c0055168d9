"""Label sets decoded from bytes share their (name, value) pairs."""

from __future__ import annotations

import numpy as np

from filodb.model.batch import SampleBatch
from filodb.model.labels import intern_labels, make_labels
from filodb.model.partkey import labels_of, part_key
from filodb.prom import remote_write as rw


def test_labels_of_shares_pairs_between_series() -> None:
    a = make_labels({"__name__": "up", "job": "node", "instance": "h1"})
    b = make_labels({"__name__": "up", "job": "node", "instance": "h2"})
    la, lb = labels_of(part_key(a)), labels_of(part_key(b))
    assert la == a and lb == b  # equal to what was encoded
    assert la[0] is lb[0] and la[2] is lb[2]  # __name__ and job pairs: one object each
    assert la[1] is not lb[1]  # the instances differ
    assert labels_of(part_key(a))[1] is la[1]  # decoded again: the same pairs


def test_intern_labels_keeps_order_and_equality() -> None:
    pairs = [("a", "1"), ("b", "2")]
    got = intern_labels(iter(pairs))
    assert got == tuple(pairs) and hash(got) == hash(tuple(pairs))
    assert intern_labels([("a", "1"), ("c", "3")])[0] is got[0]


def test_remote_write_labels_are_interned() -> None:
    series = [make_labels({"__name__": "req", "job": "api", "code": str(c)}) for c in (200, 500)]
    body = rw.encode_write_request(
        SampleBatch(series, np.arange(2), np.full(2, 1_700_000_000_000), np.ones(2))
    )
    got = rw.decode_write_request(body).series
    assert got == series
    assert got[0][1] is not got[1][1]  # code=200, code=500
    assert got[0][0] is got[1][0] and got[0][2] is got[1][2]  # __name__ and job shared
