"""The tag index answers every matcher kind exactly as matching each series' labels would."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from filodb.memstore.index import TagIndex
from filodb.model.labels import Matcher, labels_match, make_labels

VALUES = ["", "a", "b", "ab", "ba", "c1", "c2"]


def _series(n: int, seed: int) -> list:  # type: ignore[type-arg]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        d = {"__name__": f"m{i % 3}"}
        for name in ("x", "y"):
            v = VALUES[int(rng.integers(0, len(VALUES)))]
            if v:
                d[name] = v
        out.append(make_labels(d))
    return out


matcher = st.builds(
    Matcher,
    st.sampled_from(["__name__", "x", "y", "z"]),
    st.sampled_from(["=", "!=", "=~", "!~"]),
    st.sampled_from(["", "a", "b", "m1", "a.*", ".*b", "c[12]", ".+", ".*", "m[02]"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(matcher, min_size=1, max_size=3), st.integers(0, 5))
def test_match_equals_brute_force(matchers, seed) -> None:  # type: ignore[no-untyped-def]
    series = _series(60, seed)
    idx = TagIndex()
    for sid, lb in enumerate(series):
        idx.add(sid, lb)
    want = [sid for sid, lb in enumerate(series) if labels_match(lb, matchers)]
    assert idx.match(matchers).tolist() == want
    for m in matchers:
        assert idx.match_one(m).tolist() == [
            sid for sid, lb in enumerate(series) if labels_match(lb, [m])
        ]


def test_every_pair_of_negations() -> None:
    series = _series(40, 9)
    idx = TagIndex()
    for sid, lb in enumerate(series):
        idx.add(sid, lb)
    ms = [
        Matcher("x", "!=", "a"),
        Matcher("y", "!~", "c.*"),
        Matcher("x", "=~", ""),
        Matcher("z", "!=", "q"),
    ]
    for a, b in itertools.combinations(ms, 2):
        want = [sid for sid, lb in enumerate(series) if labels_match(lb, [a, b])]
        assert idx.match([a, b]).tolist() == want


def _per_series(series, ids):  # type: ignore[no-untyped-def]
    """The answer the shard gave before metadata came from the index: walk each series."""
    names = sorted({k for i in ids for k, _ in series[i]})
    values = {n: sorted({v for i in ids for k, v in series[i] if k == n}) for n in names}
    return names, values


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 120),
    st.integers(0, 1000),
    st.lists(matcher, min_size=0, max_size=2),
    st.floats(0.0, 1.0),
)
def test_metadata_from_index_equals_per_series(n, seed, matchers, keep) -> None:  # type: ignore[no-untyped-def]
    """Label names and values of any subset of series (matched, then thinned as the time range
    would) equal the per-series walk, for dense labels (``__name__``) and sparse ones."""
    rng = np.random.default_rng(seed)
    series = _series(n, seed)
    for i in rng.choice(n, size=n // 4, replace=False).tolist():  # some labels only a few have
        series[i] = make_labels({**dict(series[i]), "rare": f"r{i % 5}"})
    idx = TagIndex()
    for sid, lb in enumerate(series):
        idx.add(sid, lb)
    ids = idx.match(matchers)
    ids = ids[rng.random(len(ids)) < keep] if keep < 1 else ids
    names, values = _per_series(series, ids.tolist())
    assert idx.label_names(ids) == names
    for name in ["__name__", "x", "y", "rare", "absent"]:
        assert idx.label_values(name, ids) == values.get(name, [])
    assert idx.label_names() == _per_series(series, range(n))[0]
    assert idx.label_values("rare") == _per_series(series, range(n))[1].get("rare", [])


@settings(max_examples=100, deadline=None)
@given(st.lists(matcher, min_size=1, max_size=3), st.integers(0, 5),
       st.lists(st.integers(1, 40), min_size=1, max_size=8), st.integers(0, 7))  # fmt: skip
def test_match_while_series_arrive(matchers, seed, steps, purge_at) -> None:  # type: ignore[no-untyped-def]
    """Postings read from a column sorted earlier plus the entries added since (and after a
    purge renumbered the series) answer as brute force at every step."""
    series = _series(sum(steps), seed)
    idx = TagIndex()
    held: list = []  # type: ignore[type-arg]
    for k, step in enumerate(steps):
        for lb in series[len(held) : len(held) + step]:
            idx.add(len(held), lb)
            held.append(lb)
        if k == purge_at:
            keep = np.arange(len(held)) % 3 != 1
            idx.compact(keep)
            held = [lb for lb, kept in zip(held, keep.tolist(), strict=True) if kept]
            series = held + series[len(held) + int((~keep).sum()) :]
        want = [sid for sid, lb in enumerate(held) if labels_match(lb, matchers)]
        assert idx.match(matchers).tolist() == want
