"""Binary operators: scalar/vector arithmetic, comparisons, vector matching, set operators."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import cast

import numpy as np

from filodb.errors import ExecutionError
from filodb.model.cache import BoundedCache, SeenTable
from filodb.model.labels import METRIC_NAME, Labels, intern_pair
from filodb.query.ast import COMPARISON_OPS, VectorMatching
from filodb.query.values import ScalarSteps, StepVector


def _pow(a, b):  # type: ignore[no-untyped-def]
    return np.power(a, b)


def _mod(a, b):  # type: ignore[no-untyped-def]
    return np.fmod(a, b)


ARITH: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "%": _mod, "^": _pow,
    "atan2": np.arctan2,
    "==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
    ">": np.greater, ">=": np.greater_equal,
}  # fmt: skip


def apply(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return ARITH[op](a, b).astype(np.float64)


METADATA_LABELS = frozenset({"__type__", "__unit__"})
"""Labels that describe the metric name; they go with it, but only in the final answer (so
that, as with Prometheus's delayed name removal, they still take part in vector matching)."""


DROPPED_NAME = "\x00__name__"
"""The key a metric name moves to when an operation drops it: Prometheus 3 removes dropped
names only at the end of evaluation (delayed name removal), so until then the name still
tells series apart and ``label_replace``/``label_join``/``by (__name__)`` still see it. No
label name can start with NUL, and it sorts before every other key."""


def drop_name(lb: Labels) -> Labels:
    """The label set with its metric name marked as dropped (removed by :func:`final_labels`).
    The marked pair is the one every label set of that name shares (:func:`drop_names` keeps
    a result per series of a shard: a pair each would be ~60 bytes a series more)."""
    if lb and lb[0][0] == METRIC_NAME:  # first in most sorted label sets: 2.7x quicker
        return (intern_pair((DROPPED_NAME, lb[0][1])), *lb[1:])
    for i, (k, v) in enumerate(lb):
        if k == METRIC_NAME:
            return (intern_pair((DROPPED_NAME, v)), *lb[:i], *lb[i + 1 :])
    return lb


_DROPPED: BoundedCache[Labels, Labels] = BoundedCache(100_000)
_DROPPED_LOCK = threading.Lock()
# label sets computed once and not kept: a query over every series once (an ad-hoc look, a
# check of everything) filled the memos with 100 k label sets (~10 MB a node at 110 k series)
# and evicted what dashboards ask for again; a label set is kept the second time it is asked
_DROPPED_SEEN = SeenTable(17)
_FINAL_SEEN = SeenTable(17)


def drop_names(labels: Sequence[Labels]) -> list[Labels]:
    """:func:`drop_name` of each label set, through a memo: a shard's label sets are the same
    objects query after query, so a hit is one C-level dict lookup instead of a Python call
    that rebuilds the tuple (kept the second time a label set is asked for)."""
    return _DROPPED.map_through(labels, drop_name, _DROPPED_LOCK, _DROPPED_SEEN)


def final_labels(lb: Labels) -> Labels:
    """The label set as answered: dropped name removed, orphan metadata removed."""
    if lb and lb[0][0] == DROPPED_NAME:
        lb = lb[1:]
    return drop_orphan_metadata(lb)


_FINAL: BoundedCache[Labels, Labels] = BoundedCache(100_000)


def final_labels_many(labels: Sequence[Labels]) -> list[Labels]:
    """:func:`final_labels` of each label set, through a memo (as :func:`drop_names`)."""
    return _FINAL.map_through(labels, final_labels, _DROPPED_LOCK, _FINAL_SEEN)


def name_value(d: dict[str, str]) -> str:
    """The metric name of a label dict, dropped or not ("" when none)."""
    return d.get(METRIC_NAME, d.get(DROPPED_NAME, ""))


def drop_orphan_metadata(lb: Labels) -> Labels:
    """The final form of a label set: ``__type__``/``__unit__`` removed when the name is gone."""
    if any(k == METRIC_NAME for k, _ in lb) or not any(k in METADATA_LABELS for k, _ in lb):
        return lb
    return tuple((k, v) for k, v in lb if k not in METADATA_LABELS)


def scalar_scalar(op: str, a: ScalarSteps, b: ScalarSteps) -> ScalarSteps:
    return ScalarSteps(apply(op, a.values, b.values))


def vector_scalar(
    op: str, sv: StepVector, sc: ScalarSteps, scalar_left: bool, return_bool: bool
) -> StepVector:
    s = sc.values[None, :]
    res = apply(op, s, sv.values) if scalar_left else apply(op, sv.values, s)
    if op in COMPARISON_OPS:
        if return_bool:
            return StepVector(drop_names(sv.labels), res, sv.present.copy())
        keep = sv.present & (res == 1.0)
        return StepVector(sv.labels, sv.values, keep).compact()
    return StepVector(drop_names(sv.labels), res, sv.present.copy())


def go_labels(lb: Labels) -> str:
    """A label set as Go's ``labels.Labels.String()`` prints it: ``{a="1", b="2"}``."""
    return "{" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in lb) + "}"


def signature(lb: Labels, vm: VectorMatching | None) -> Labels:
    if vm is not None and vm.on:
        keep = set(vm.labels)
        return tuple((k, v) for k, v in lb if k in keep)
    drop = set(vm.labels if vm else ()) | {METRIC_NAME, DROPPED_NAME}
    return tuple((k, v) for k, v in lb if k not in drop)


_SIG_MEMOS: BoundedCache[tuple[bool, tuple[str, ...]], BoundedCache[Labels, Labels]]
_SIG_MEMOS = BoundedCache(8)
_SIG_LOCK = threading.Lock()
_SIG_SEEN = SeenTable(17)  # one for every matching's memos: kept the second time (as above)


def signatures(labels: Sequence[Labels], vm: VectorMatching | None) -> list[Labels]:
    """:func:`signature` of each label set through a memo per matching (the same label sets
    come query after query, as for ``drop_names``: a hit is one C-level dict lookup, not a
    Python walk of the labels; kept the second time a label set is asked for)."""
    key = (vm.on, tuple(vm.labels)) if vm is not None else (False, ())
    memo = _SIG_MEMOS.get(key)
    if memo is None:
        with _SIG_LOCK:
            memo = BoundedCache(100_000)
            _SIG_MEMOS.put(key, memo)
    return memo.map_through(labels, lambda lb: signature(lb, vm), _SIG_LOCK, _SIG_SEEN)


def _index(sv: StepVector, vm: VectorMatching | None) -> dict[Labels, list[int]]:
    out: dict[Labels, list[int]] = {}
    for i, sig in enumerate(signatures(sv.labels, vm)):
        out.setdefault(sig, []).append(i)
    return out


def _merge_unique(
    sv: StepVector, rows: list[int], side: str, sig: Labels
) -> tuple[np.ndarray, np.ndarray]:
    """Values/presence of the one series per step among ``rows``; error if two overlap."""
    if len(rows) == 1:
        return sv.values[rows[0]], sv.present[rows[0]]
    pres = sv.present[rows]
    clash = pres.sum(axis=0) > 1
    if clash.any():
        s = int(np.flatnonzero(clash)[0])
        a, b = sorted(sv.labels[rows[i]] for i in np.flatnonzero(pres[:, s])[:2].tolist())
        raise ExecutionError(
            f"found duplicate series for the match group {go_labels(sig)} on the {side} hand-side of the "
            f"operation: [{go_labels(a)}, {go_labels(b)}];many-to-many matching not allowed: "
            "matching labels must be unique on one side"
        )
    idx = np.argmax(pres, axis=0)
    vals = sv.values[rows][idx, np.arange(pres.shape[1])]
    return vals, cast(np.ndarray, pres.any(axis=0))


def _result_labels(
    lb: Labels, other: Labels, vm: VectorMatching | None, op: str, return_bool: bool
) -> Labels:
    out = dict(lb)
    if (op not in COMPARISON_OPS or return_bool) and METRIC_NAME in out:
        out[DROPPED_NAME] = out.pop(METRIC_NAME)
    card = vm.card if vm else "one-to-one"
    if card == "one-to-one":
        if vm is not None and vm.on:
            out = {k: v for k, v in out.items() if k in set(vm.labels)}
        elif vm is not None:
            for k in vm.labels:
                out.pop(k, None)
    else:
        od = dict(other)
        for k in vm.include if vm else ():
            if k in od:
                out[k] = od[k]
            else:
                out.pop(k, None)
    return tuple(sorted(out.items()))


_RESULT_MEMOS: BoundedCache[
    tuple[VectorMatching | None, bool], BoundedCache[tuple[Labels, Labels], Labels]
]
_RESULT_MEMOS = BoundedCache(8)


def result_labels_many(pairs: Sequence[tuple[Labels, Labels]], vm: VectorMatching | None, op: str,
                       return_bool: bool) -> list[Labels]:  # fmt: skip
    """:func:`_result_labels` of each ``(many-side labels, one-side labels)`` pair through a
    memo per matching and kind of operator (a join's rows are the same label sets query after
    query: a hit is a dict lookup instead of a dict built and sorted per row)."""
    key = (vm, op in COMPARISON_OPS and not return_bool)
    memo = _RESULT_MEMOS.get(key)
    if memo is None:
        with _SIG_LOCK:
            memo = BoundedCache(100_000)
            _RESULT_MEMOS.put(key, memo)
    return memo.map_through(
        pairs, lambda p: _result_labels(p[0], p[1], vm, op, return_bool), _SIG_LOCK, _SIG_SEEN
    )


def vector_vector(
    op: str, lhs: StepVector, rhs: StepVector, vm: VectorMatching | None, return_bool: bool
) -> StepVector:
    if op in ("and", "or", "unless"):
        return _set_op(op, lhs, rhs, vm)
    card = vm.card if vm else "one-to-one"
    if card == "one-to-many":  # swap sides: the "many" side drives the result labels
        flipped = replace(vm, card="many-to-one")  # type: ignore[type-var]
        return _match(op, rhs, lhs, flipped, return_bool, swapped=True)
    return _match(op, lhs, rhs, vm, return_bool, swapped=False)


def _match(op: str, many: StepVector, one: StepVector, vm: VectorMatching | None,
           return_bool: bool, swapped: bool) -> StepVector:  # fmt: skip
    """Match ``many`` rows to ``one`` rows by signature and apply ``op`` (sides already
    swapped for group_right). ``fill_right`` stands in for a missing "one" side, ``fill_left``
    makes a row (labelled by the match group) where a group has no "many" side."""
    card = vm.card if vm else "one-to-one"
    fill_one = vm.fill_right if vm else None
    fill_many = vm.fill_left if vm else None
    one_idx = _index(one, vm)
    one_side = "left" if swapped else "right"
    one_rows = {sig: _merge_unique(one, rows, one_side, sig) for sig, rows in one_idx.items()}
    S = many.values.shape[1]
    if card == "one-to-one":
        for sig, rows in _index(many, vm).items():
            if len(rows) > 1 and (many.present[rows].sum(axis=0) > 1).any():
                raise ExecutionError(
                    f"found duplicate series for the match group {dict(sig)} on the left hand-side of the "
                    "operation; many-to-many matching not allowed: matching labels must be unique on one side"
                )
    if fill_one is None and fill_many is None:
        fast = _match_all(op, many, one, vm, return_bool, swapped, one_idx, one_rows)
        if fast is not None:
            return fast
    out = _Rows(S, card)
    many_present: dict[Labels, np.ndarray] = {}
    none = np.zeros(S, bool)
    for i, lb in enumerate(many.labels):
        sig = signature(lb, vm)
        many_present[sig] = many_present.get(sig, none) | many.present[i]
        hit = one_rows.get(sig)
        if hit is None and fill_one is None:
            continue
        ov, o_pres = hit if hit is not None else (np.zeros(S), none)
        if fill_one is not None:
            ov = np.where(o_pres, ov, fill_one)
            o_pres = np.ones(S, bool)
        p = many.present[i] & o_pres
        if not p.any():
            continue
        a, b = (ov, many.values[i]) if swapped else (many.values[i], ov)
        other = _one_labels(one, one_idx[sig]) if hit is not None else ()
        out.add(
            _result_labels(lb, other, vm, op, return_bool), *_apply_op(op, a, b, p, return_bool)
        )
    if fill_many is not None:
        for sig, (ov, o_pres) in one_rows.items():
            p = o_pres & ~many_present.get(sig, none)
            if not p.any():
                continue
            fill = np.full(S, fill_many)
            a, b = (ov, fill) if swapped else (fill, ov)
            out.add(sig, *_apply_op(op, a, b, p, return_bool))
    return out.vector()


def _match_all(op: str, many: StepVector, one: StepVector, vm: VectorMatching | None,
               return_bool: bool, swapped: bool, one_idx: dict[Labels, list[int]],
               one_rows: dict[Labels, tuple[np.ndarray, np.ndarray]]) -> StepVector | None:  # fmt: skip
    """:func:`_match` without fills, as whole-matrix numpy operations (Python steps per row for
    labels only); None when two result rows share a label set (the row-by-row merge decides)."""
    S = many.values.shape[1]
    sigs = signatures(many.labels, vm)
    order = {sig: j for j, sig in enumerate(one_rows)}
    hit = np.array([order.get(sig, -1) for sig in sigs], np.int64)
    rows = np.flatnonzero(hit >= 0)
    if len(rows) == 0:
        return StepVector.empty(S)
    one_v = np.array([v for v, _ in one_rows.values()]).reshape(len(one_rows), S)
    one_p = np.array([p for _, p in one_rows.values()], bool).reshape(len(one_rows), S)
    ov, op_ = one_v[hit[rows]], one_p[hit[rows]]
    mv = many.values[rows]
    a, b = (ov, mv) if swapped else (mv, ov)
    both = many.present[rows] & op_
    res, p = _apply_op(op, a, b, both, return_bool)
    live = both.any(axis=1)  # as the row loop: a filter may leave a row with no point
    kept = rows[live].tolist()
    ml, card = many.labels, vm.card if vm else "one-to-one"
    pairs = [(ml[i], () if card == "one-to-one" else one.labels[one_idx[sigs[i]][0]]) for i in kept]
    labels = result_labels_many(pairs, vm, op, return_bool)
    if len(set(labels)) != len(labels):
        return None
    vals = np.broadcast_to(np.asarray(res, np.float64), p.shape)[live]
    return StepVector(labels, np.ascontiguousarray(vals), p[live])


def _apply_op(op: str, a: np.ndarray, b: np.ndarray, p: np.ndarray, return_bool: bool):  # type: ignore[no-untyped-def]
    res = apply(op, a, b)
    if op in COMPARISON_OPS and not return_bool:
        return np.asarray(a, np.float64), p & (res == 1.0)  # a filter keeps the left-hand value
    return res, p


class _Rows:
    """Result rows keyed by labels; rows with equal labels merge unless they overlap."""

    def __init__(self, n_steps: int, card: str) -> None:
        self.S, self.card = n_steps, card
        self.labels: list[Labels] = []
        self.vals: list[np.ndarray] = []
        self.pres: list[np.ndarray] = []
        self.seen: dict[Labels, int] = {}

    def add(self, lb: Labels, res: np.ndarray, p: np.ndarray) -> None:
        j = self.seen.get(lb)
        if j is not None:
            if (self.pres[j] & p).any():
                raise ExecutionError(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                    if self.card == "one-to-one"
                    else "vector cannot contain metrics with the same labelset"
                )
            self.vals[j] = np.where(p, res, self.vals[j])
            self.pres[j] = self.pres[j] | p
            return
        self.seen[lb] = len(self.labels)
        self.labels.append(lb)
        self.vals.append(np.broadcast_to(np.asarray(res, np.float64), (self.S,)).copy())
        self.pres.append(p)

    def vector(self) -> StepVector:
        if not self.labels:
            return StepVector.empty(self.S)
        return StepVector(self.labels, np.array(self.vals), np.array(self.pres))


def _one_labels(sv: StepVector, rows: list[int]) -> Labels:
    return sv.labels[rows[0]]


def _set_op(op: str, lhs: StepVector, rhs: StepVector, vm: VectorMatching | None) -> StepVector:
    S = lhs.values.shape[1] if len(lhs) else rhs.values.shape[1]
    rhs_idx = _index(rhs, vm)
    rhs_any = {sig: rhs.present[rows].any(axis=0) for sig, rows in rhs_idx.items()}
    none = np.zeros(S, bool)
    if op in ("and", "unless"):
        keep = (
            np.array([rhs_any.get(signature(lb, vm), none) for lb in lhs.labels])
            if len(lhs)
            else np.zeros((0, S), bool)
        )
        pres = lhs.present & keep if op == "and" else lhs.present & ~keep
        return StepVector(lhs.labels, lhs.values, pres).compact()
    lhs_idx = _index(lhs, vm)
    lhs_any = {sig: lhs.present[rows].any(axis=0) for sig, rows in lhs_idx.items()}
    extra = [i for i, lb in enumerate(rhs.labels)]
    r_pres = (
        np.array([rhs.present[i] & ~lhs_any.get(signature(rhs.labels[i], vm), none) for i in extra])
        if extra
        else np.zeros((0, S), bool)
    )
    labels = lhs.labels + [rhs.labels[i] for i in extra]
    values = np.concatenate([lhs.values, rhs.values[extra]]) if extra else lhs.values
    present = np.concatenate([lhs.present, r_pres]) if extra else lhs.present
    return StepVector(labels, values, present).compact()
