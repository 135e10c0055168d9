"""Many part keys decoded at once give what :func:`labels_of` gives one at a time (the label
sets, their pairs interned), or None for anything that is not a canonical part key; the flush
groups of many part keys are :func:`group_of`'s."""

from __future__ import annotations

import msgpack
import numpy as np
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from filodb.model.labels import Labels, intern_labels, make_labels
from filodb.model.partkey import group_of, labels_of, part_key
from filodb.model.partkeyscan import decode_part_keys, groups_of, unique_spans
from filodb.model.xxh64 import arena, words

# short and long strings (msgpack's fixstr, str8 and str16 headers), unicode, repeats
_text = st.one_of(
    st.sampled_from(["", "a", "job", "é", "值", "🙂", "x" * 31, "y" * 32, "z" * 255, "w" * 256]),
    st.text(max_size=12),
    st.text(alphabet="ab", min_size=28, max_size=300),
)
_label_set = st.dictionaries(_text, _text, max_size=20).map(make_labels)


def _bounds(pks: list[bytes], gap: bytes = b"") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The part keys in one arena with ``gap`` between them: (arena, starts, ends)."""
    data, ends = arena([gap + pk for pk in pks])
    starts = ends - np.array([len(pk) for pk in pks], np.int64).reshape(-1)
    return data, starts, ends


@settings(max_examples=150, deadline=None)
@given(st.lists(_label_set, max_size=30))
def test_decoded_as_labels_of(sets: list[Labels]) -> None:
    batch = sets + sets[: len(sets) // 2]  # repeats
    pks = [part_key(lb) for lb in batch]
    data, starts, ends = _bounds(pks, b"\x00\x91")  # keys need not be back to back
    got = decode_part_keys(data, starts, ends)
    assert got is not None
    want = [labels_of(pk) for pk in pks]
    assert got.labels == want
    # interned: each pair is the object every other interned label set holds
    for lb in got.labels:
        assert all(a is b for a, b in zip(lb, intern_labels(lb), strict=True))
    # the pairs as the tag index takes them: per label, its distinct pair (first appearance)
    flat = [p for lb in want for p in lb]
    assert got.counts.tolist() == [len(lb) for lb in want]
    distinct = list(dict.fromkeys(flat))
    assert [distinct[j] for j in got.pair_of.tolist()] == flat
    assert list(zip([got.names[i] for i in got.name_of.tolist()], got.values, strict=True)) == (
        distinct
    )
    assert got.names == list(dict.fromkeys(n for n, _ in distinct))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=40))
def test_unique_spans_number_by_first_appearance(parts: list[bytes]) -> None:
    parts = parts + parts[::3]
    data, starts, ends = _bounds(parts, b"\x07")
    group, first, hashes = unique_spans(words(data), starts, ends)
    distinct = list(dict.fromkeys(parts))
    assert [distinct[g] for g in group.tolist()] == parts
    assert [parts[i] for i in first.tolist()] == distinct
    assert hashes.tolist() == [xxhash.xxh64_intdigest(p) for p in distinct]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=30), st.integers(1, 2**31))
def test_groups_of_is_group_of(parts: list[bytes], num_groups: int) -> None:
    data, starts, ends = _bounds(parts, b"\x01\x02\x03")
    got = groups_of(data, starts, ends, num_groups)
    assert got.tolist() == [group_of(p, num_groups) for p in parts]


_UNUSUAL = [
    b"",  # nothing
    b"\x92\xd9\x01a\xa1b",  # str8 header for a 1-byte string: not the shortest
    b"\xdc\x00\x02\xa1a\xa1b",  # array16 header for 2 items
    b"\x92\xa1a\xc4\x01b",  # a bin item
    b"\x91\xa1a",  # an odd number of items
    b"\x92\xa1a\xa1b\xc0",  # trailing bytes
    b"\x92\xa1a\xa2\xff\xfe",  # bad UTF-8
    b"\x92\xa1a\xa2\xed\xa0",  # a truncated sequence
    b"\x92\xa1a\x01",  # an int item
    b"\x81\xa1a\xa1b",  # a map
    b"\x92\xa1a\xa5b",  # a string longer than the key
]


def test_unusual_keys_are_left_to_labels_of() -> None:
    good = part_key(make_labels({"a": "b"}))
    for bad in _UNUSUAL:
        for pks in ([bad], [good, bad], [bad, good]):
            assert decode_part_keys(*_bounds(pks)) is None, bad
    # what msgpack itself writes for a long list or long strings is canonical
    flat = [x for i in range(40) for x in (f"n{i:02d}", "v" * (i * 9))]
    pk = msgpack.packb(flat, use_bin_type=True)
    got = decode_part_keys(*_bounds([pk]))
    assert got is not None and got.labels == [labels_of(pk)]
    assert decode_part_keys(*_bounds([])) is not None
    # labels_of takes the pairs as they come (unsorted, a name twice): so does the scan
    odd = msgpack.packb(["b", "1", "a", "2", "a", ""], use_bin_type=True)
    got = decode_part_keys(*_bounds([odd]))
    assert got is not None and got.labels == [labels_of(odd)] == [
        (("b", "1"), ("a", "2"), ("a", ""))
    ]
