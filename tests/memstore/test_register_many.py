"""New series registered a batch at a time (part keys decoded together, the tag index added to
per label name) leave a shard exactly as registering them one at a time does: the same series
ids, label sets, part keys, flush groups and tag index (value codes included), whether they
come as log records, as label sets or as the column store's part keys (recovery)."""

from __future__ import annotations

from typing import Any, NamedTuple

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filodb.errors import BadInputError
from filodb.memstore.index import TagIndex
from filodb.memstore.shard import TimeSeriesShard
from filodb.model.batch import SampleBatch
from filodb.model.labels import Labels, Matcher, intern_labels, make_labels
from filodb.model.partkey import labels_of, part_key
from filodb.model.record import RecordBatch, read_records

_name = st.sampled_from(["__name__", "job", "instance", "pod", "le", "é", "名"]) | st.text(
    min_size=1, max_size=6
)
_value = st.sampled_from(["a", "b", "api", "0.5", "+Inf", "🙂", "x" * 40, "y" * 300]) | st.text(
    max_size=8
)
_label_set = st.dictionaries(_name, _value, max_size=6).map(make_labels)
# batches of label sets; a later batch repeats some of the earlier ones' and adds new ones
_batches = st.lists(st.lists(_label_set, max_size=25), min_size=1, max_size=4)


class _BulkOnly(TimeSeriesShard):
    """A shard that must register its canonical part keys many at once."""

    def _series_ids(self, *args: Any, **kw: Any) -> Any:
        raise AssertionError("registered one at a time")


def _one_at_a_time(batches: list[list[Labels]]) -> tuple[TimeSeriesShard, list[list[int]]]:
    """The reference: every series registered by itself (label set by label set)."""
    ref = TimeSeriesShard("ds", 0, num_groups=5)
    ids = [[int(ref._series_ids([lb])[0][0]) for lb in batch] for batch in batches]
    return ref, ids


def _state(ms: TimeSeriesShard) -> dict[str, Any]:
    idx = ms._index
    n = ms.num_series
    return {
        "labels": list(ms._labels),
        "part_keys": [ms._part_key(i) for i in range(n)],
        "groups": ms._group.tolist(),
        "columns": {
            name: (col.sids().tolist(), col.codes().tolist(), list(col.values))
            for name, col in idx._columns.items()
        },  # fmt: skip
        "column_order": list(idx._columns),
        "indexed": len(idx),
        "per_series": [
            len(a)
            for a in (
                ms._chunks,
                ms._first,
                ms._last,
                ms._closed_end,
                ms._mem_start,
                ms._store_start,
                ms._touched,
                ms._pk_saved,
                ms._head.count,
            )
        ],  # fmt: skip
    }


def _answers(idx: TagIndex, sets: list[Labels]) -> list[Any]:
    """What queries see: postings of matchers built from the batch's own pairs, label names
    and values (all series and a subset), per-value counts."""
    out: list[Any] = [idx.label_names(), idx.label_names(np.arange(0, len(idx), 2, dtype=np.int32))]
    pairs = list(dict.fromkeys(p for lb in sets for p in lb))[:12]
    for name, value in pairs:
        out.append(idx.label_values(name))
        for op, v in (("=", value), ("!=", value), ("=~", ".*a.*"), ("!~", "a|b"), ("=", "")):
            out.append(idx.match([Matcher(name, op, v)]).tolist())
    if len(pairs) >= 2:
        out.append(idx.match([Matcher(*pairs[0][:1], "=", pairs[0][1]),
                              Matcher(pairs[1][0], "!=", pairs[1][1])]).tolist())  # fmt: skip
    out.append({k: (v, c.tolist()) for k, (v, c) in idx.label_counts().items()})
    return out


def _check_same(ms: TimeSeriesShard, ref: TimeSeriesShard, sets: list[Labels]) -> None:
    assert _state(ms) == _state(ref)
    assert _answers(ms._index, sets) == _answers(ref._index, sets)
    for lb in ms._labels:  # interned: the pairs every label set decoded since holds
        assert all(a is b for a, b in zip(lb, intern_labels(lb), strict=True))


def _records(batch: list[Labels], t: int) -> RecordBatch:
    """The batch as log records are read: distinct series per record, several records read
    together (so a series may come twice in one read)."""
    recs = []
    for part in (batch[: len(batch) // 2], batch[len(batch) // 2 :]):
        distinct = list(dict.fromkeys(part))
        if distinct:
            k = len(distinct)
            recs.append(SampleBatch(distinct, np.arange(k), np.full(k, t), np.ones(k)).to_bytes())
    return read_records(recs)[0] if recs else RecordBatch.empty()


@settings(max_examples=60, deadline=None)
@given(_batches)
def test_log_records_register_as_one_at_a_time(batches: list[list[Labels]]) -> None:
    ref, want = _one_at_a_time(batches)
    ms = _BulkOnly("ds", 0, num_groups=5)
    for i, batch in enumerate(batches):
        rb = _records(batch, 1000 * (i + 1))
        assert rb.series is None  # decoded from part keys
        ms.ingest(rb, i)
        ids, new = ms._resolve(rb)
        assert new == 0
        flat = [lb for part in (batch[: len(batch) // 2], batch[len(batch) // 2 :])
                for lb in dict.fromkeys(part)]  # fmt: skip
        assert ids.tolist() == [want[i][batch.index(lb)] for lb in flat]
    _check_same(ms, ref, [lb for b in batches for lb in b])


@settings(max_examples=40, deadline=None)
@given(_batches)
def test_label_sets_register_as_one_at_a_time(batches: list[list[Labels]]) -> None:
    ref, want = _one_at_a_time(batches)
    ms = _BulkOnly("ds", 0, num_groups=5)
    for i, batch in enumerate(batches):
        distinct = list(dict.fromkeys(batch))
        k = len(distinct)
        sb = SampleBatch(distinct, np.arange(k), np.full(k, 1000 * (i + 1)), np.ones(k))
        assert ms.ingest(sb).new_series == len(
            set(distinct) - {lb for b in batches[:i] for lb in b}
        )
        assert ms._resolve(sb)[0].tolist() == [want[i][batch.index(lb)] for lb in distinct]
    _check_same(ms, ref, [lb for b in batches for lb in b])


class _PartKeyRecord(NamedTuple):
    part_key: bytes
    start_ms: int
    end_ms: int


@settings(max_examples=40, deadline=None)
@given(_batches)
def test_recovered_part_keys_register_as_one_at_a_time(batches: list[list[Labels]]) -> None:
    ref, _ = _one_at_a_time(batches)
    ms = _BulkOnly("ds", 0, num_groups=5)
    for i, batch in enumerate(batches):
        ms.load_part_keys(_PartKeyRecord(part_key(lb), i, i + 10) for lb in batch)
    _check_same(ms, ref, [lb for b in batches for lb in b])
    firsts: dict[Labels, int] = {}
    lasts: dict[Labels, int] = {}
    for i, batch in enumerate(batches):
        for lb in batch:
            firsts.setdefault(lb, i)
            lasts[lb] = i + 10
    assert ms._first.tolist() == [firsts[lb] for lb in ms._labels]
    assert ms._last.tolist() == [lasts[lb] for lb in ms._labels]


def test_unusual_part_keys_go_one_at_a_time() -> None:
    """A record whose new part keys are not canonical registers their label sets under the
    canonical part key (as before); one that is not a part key changes nothing."""
    a, b = make_labels({"__name__": "up", "job": "x"}), make_labels({"__name__": "up", "job": "y"})
    long_header = b"\x92\xd9\x08__name__\xa2up"  # str8 where a fixstr does
    pks = [part_key(a), long_header, part_key(b)]
    data = np.frombuffer(b"".join(pks), np.uint8)
    ends = np.cumsum([len(p) for p in pks]).astype(np.int64)
    rb = RecordBatch(data, ends, np.arange(3, dtype=np.int32), np.full(3, 1000, np.int64),
                     np.ones(3))  # fmt: skip
    ms = TimeSeriesShard("ds", 0, num_groups=5)
    ms.ingest(rb, 1)
    ref, _ = _one_at_a_time([[a, labels_of(long_header), b]])
    _check_same(ms, ref, [a, b])
    assert ms._part_key(1) == part_key(make_labels({"__name__": "up"}))

    bad = b"\x92\xa1a\x01"
    data = np.frombuffer(part_key(make_labels({"job": "z"})) + bad, np.uint8)
    rb = RecordBatch(data, np.array([len(data) - len(bad), len(data)], np.int64),
                     np.arange(2, dtype=np.int32), np.full(2, 2000, np.int64), np.ones(2))  # fmt: skip
    before = _state(ms)
    with pytest.raises(BadInputError):
        ms.ingest(rb, 2)
    assert _state(ms) == before and ms.offset == 1


def test_long_lists_and_strings() -> None:
    """More than 15 labels (msgpack's array16 header) and values past 255 bytes (str16)."""
    many = make_labels({f"l{i:02d}": "v" * (i * 20) for i in range(1, 30)})
    ms = _BulkOnly("ds", 0, num_groups=5)
    ms.load_part_keys([_PartKeyRecord(part_key(many), 0, 1)])
    ref, _ = _one_at_a_time([[many]])
    _check_same(ms, ref, [many])
    assert msgpack.unpackb(ms._part_key(0)) == [x for p in many for x in p]


@settings(max_examples=60, deadline=None)
@given(st.lists(_label_set, max_size=40))
def test_index_add_many_is_add_one_at_a_time(sets: list[Labels]) -> None:
    one, many = TagIndex(), TagIndex()
    one.add(0, make_labels({"job": "a"}))
    many.add(0, make_labels({"job": "a"}))
    for i, lb in enumerate(sets):
        one.add(i + 1, lb)
    flat = [p for lb in sets for p in lb]
    pairs = list(dict.fromkeys(flat))
    names = list(dict.fromkeys(n for n, _ in pairs))
    many.add_many(
        1,
        np.array([len(lb) for lb in sets], np.int64),
        np.array([pairs.index(p) for p in flat], np.int64),
        names,
        np.array([names.index(n) for n, _ in pairs], np.int64),
        [v for _, v in pairs],
    )
    assert len(many) == len(one) == len(sets) + 1
    cols = [{k: (c.sids().tolist(), c.codes().tolist(), c.values) for k, c in x._columns.items()}
            for x in (one, many)]  # fmt: skip
    assert cols[0] == cols[1]
    assert _answers(one, sets) == _answers(many, sets)
