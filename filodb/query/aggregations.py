"""Aggregation operators over a :class:`StepVector`, vectorised over steps.

Rows are sorted by group once; ``reduceat`` then aggregates every step of every group at once.
``topk``/``bottomk``/``quantile``/``count_values``/``limitk`` loop over steps (each step
vectorised over series).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numba as nb
import numpy as np

from filodb.errors import ExecutionError
from filodb.model.cache import BoundedCache
from filodb.model.labels import METRIC_NAME, Labels
from filodb.query.binops import DROPPED_NAME, drop_name
from filodb.query.rangefns import imprecise, kahan_pair
from filodb.query.values import ScalarSteps, StepVector, StringValue


def group_labels(labels: Labels, grouping: Sequence[str], without: bool) -> Labels:
    if without:
        drop = set(grouping) | {METRIC_NAME, DROPPED_NAME}
        return tuple((k, v) for k, v in labels if k not in drop)
    keep = set(grouping)
    if METRIC_NAME in keep:  # a name to be dropped still groups (Prometheus's delayed removal)
        keep.add(DROPPED_NAME)
    return tuple((k, v) for k, v in labels if k in keep)


_GROUP_MEMOS: BoundedCache[tuple[tuple[str, ...], bool], BoundedCache[Labels, Labels]]
_GROUP_MEMOS = BoundedCache(8)
_GROUP_LOCK = threading.Lock()


def group_keys(labels: list[Labels], grouping: Sequence[str], without: bool) -> list[Labels]:
    """:func:`group_labels` of each label set through a memo per grouping (the same label sets
    come query after query: a hit is one C-level dict lookup, not a Python walk of the labels);
    equal groups are one shared tuple."""
    if not grouping and not without:  # sum(x), by (): one group, nothing to look up
        return [()] * len(labels)
    key = (tuple(grouping), without)
    memo = _GROUP_MEMOS.get(key)
    if memo is None:
        with _GROUP_LOCK:
            memo = BoundedCache(50_000)
            _GROUP_MEMOS.put(key, memo)
    got = list(map(memo.get, labels))
    if None in got:
        with _GROUP_LOCK:
            shared: dict[Labels, Labels] = {}
            for i, g in enumerate(got):
                if g is None:
                    g = group_labels(labels[i], grouping, without)
                    got[i] = g = shared.setdefault(g, g)
                    memo.put(labels[i], g)
    return got


def _groups(
    sv: StepVector, grouping: Sequence[str], without: bool
) -> tuple[list[Labels], np.ndarray]:
    """Group label sets and each row's group. A name kept by ``by (__name__)`` groups dropped
    and kept alike; the group's name is dropped when any member's was."""
    keys = group_keys(sv.labels, grouping, without)
    index: dict[Labels, int] = {}
    dropped: set[int] = set()
    to_index = {}
    for g in dict.fromkeys(keys):  # per distinct group, in order of first row
        marked = bool(g) and g[0][0] == DROPPED_NAME
        f = tuple(sorted(((METRIC_NAME, g[0][1]), *g[1:]))) if marked else g
        j = to_index[g] = index.setdefault(f, len(index))
        if marked:
            dropped.add(j)
    gid = np.fromiter(map(to_index.__getitem__, keys), np.int64, len(keys))
    labels = list(index)
    for j in dropped:
        labels[j] = drop_name(labels[j])
    return labels, gid


def aggregate(op: str, sv: StepVector, param: ScalarSteps | StringValue | None,
              grouping: Sequence[str], without: bool) -> StepVector:  # fmt: skip
    n_steps = sv.values.shape[1]
    if (
        op in ("topk", "bottomk", "limitk", "limit_ratio")
        and isinstance(param, ScalarSteps)
        and np.isnan(param.values).any()
    ):
        raise ExecutionError(
            "Ratio value is NaN" if op == "limit_ratio" else "Parameter value is NaN"
        )
    if len(sv) == 0:
        return StepVector.empty(n_steps)
    if op in _PER_STEP:
        return _PER_STEP[op](sv, param, grouping, without)
    glabels, vals, pres, starts = _sorted_groups(sv, grouping, without)
    count = np.add.reduceat(pres.astype(np.float64), starts, axis=0)
    present = count > 0
    if op == "count":
        out = count
    elif op == "group":
        out = np.ones_like(count)
    elif op in ("sum", "avg", "stddev", "stdvar"):
        s, comp = _sum(np.where(pres, vals, 0.0), starts)
        s = np.where(comp == 0, s, s + comp)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s / np.maximum(count, 1)
            if op == "sum":
                out = s
            elif op == "avg":
                out = _avg(vals, pres, starts, mean)
            else:
                dev = np.where(
                    pres, vals - np.repeat(mean, np.diff(np.r_[starts, len(vals)]), axis=0), 0.0
                )
                var = np.add.reduceat(dev * dev, starts, axis=0) / np.maximum(count, 1)
                out = var if op == "stdvar" else np.sqrt(var)
    elif op in ("min", "max"):
        fn = np.fmin if op == "min" else np.fmax
        out = fn.reduceat(np.where(pres, vals, np.nan), starts, axis=0)
    else:
        raise ExecutionError(f"unknown aggregation {op!r}")
    return StepVector(glabels, out, present)


def _sorted_groups(sv: StepVector, grouping: Sequence[str], without: bool
                   ) -> tuple[list[Labels], np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Each group's labels, the values and presence with rows sorted by group, and the first
    row of each group."""
    glabels, gid = _groups(sv, grouping, without)
    order = np.argsort(gid, kind="stable")
    g_sorted = gid[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    return (
        [glabels[g] for g in g_sorted[starts].tolist()],
        sv.values[order],
        sv.present[order],
        starts,
    )


def _sum(x: np.ndarray, starts: np.ndarray, partial: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Group sums over rows and their Kahan compensations: ill-conditioned cells are re-summed
    like Prometheus does, the others have compensation 0.

    ``partial``: the sums will be added to other shards' sums, where a large value may cancel;
    so cells where a value is dwarfed by another (by 1e10: most of its digits are absorbed)
    are re-summed too."""
    with np.errstate(all="ignore"):
        s = np.add.reduceat(x, starts, axis=0)
        big = np.fmax.reduceat(np.abs(x), starts, axis=0)
        bad = imprecise(big, s, x)
        if partial:
            small = np.fmin.reduceat(np.where(x != 0, np.abs(x), np.nan), starts, axis=0)
            bad |= imprecise(big, 1e4 * small, x)
    comp = np.zeros_like(s)
    ends = np.r_[starts[1:], len(x)]
    for g, col in zip(*np.nonzero(bad), strict=True):  # rare: only ill-conditioned cells
        s[g, col], comp[g, col] = kahan_pair(x[starts[g] : ends[g], col])
    return s, comp


SCALE = 2.0**-970
"""Scaled partial sums (of ``x * SCALE``) cannot overflow, and scaling by a power of two is
exact for every value large enough to matter next to one that overflowed."""


def sum_partials(
    sv: StepVector, grouping: Sequence[str], without: bool, scaled: bool
) -> StepVector:
    """The map step of a distributed ``sum`` or ``avg``: per group, its Kahan sum, then (a
    second block of rows, same labels and order) the compensations; with ``scaled`` (``avg``),
    two more blocks: the same of the values times :data:`SCALE`, and a fifth: the count of
    present series per step (so ``avg`` needs one answer per shard, not a second one for
    ``count``). Summing the blocks of every shard with :func:`aggregate` gives the sum
    Prometheus computes over all the series at once. The group reductions are one numba pass
    over the rows in their order (no copy of the rows sorted by group first): the same
    sequential sums as ``reduceat`` over sorted rows."""
    n_steps = sv.values.shape[1]
    if len(sv) == 0:
        return StepVector.empty(n_steps)
    glabels, gid = _groups(sv, grouping, without)
    vals = np.ascontiguousarray(sv.values, np.float64)
    pres = np.ascontiguousarray(sv.present)
    total, comp, count, present = _partial_sum(vals, pres, gid, len(glabels), 1.0)
    blocks = [total, comp]
    if scaled:
        blocks += [*_partial_sum(vals, pres, gid, len(glabels), SCALE)[:2], count]
    return StepVector(
        glabels * len(blocks), np.concatenate(blocks), np.tile(present, (len(blocks), 1))
    )


@nb.njit(cache=True, nogil=True)
def _group_reduce(vals, pres, gid, n_groups, scale):  # type: ignore[no-untyped-def]
    """Per group and step, over ``x = where(pres, vals, 0) * scale`` row by row in row order
    (``reduceat``'s order over rows stably sorted by group, first row as the start): the sum,
    fmax of ``|x|``, fmin of the nonzero ``|x|`` (NaN if none), the present count, any."""
    n, S = vals.shape
    s = np.zeros((n_groups, S))
    big = np.zeros((n_groups, S))
    small = np.zeros((n_groups, S))
    cnt = np.zeros((n_groups, S))
    anyp = np.zeros((n_groups, S), np.bool_)
    started = np.zeros(n_groups, np.bool_)
    for i in range(n):
        g = gid[i]
        first = not started[g]
        started[g] = True
        for k in range(S):
            p = pres[i, k]
            x = vals[i, k] if p else 0.0
            if scale != 1.0:
                x = x * scale
            a = abs(x)
            m = a if x != 0 else np.nan
            c = 1.0 if p else 0.0
            if first:
                s[g, k] = x
                big[g, k] = a
                small[g, k] = m
                cnt[g, k] = c
                anyp[g, k] = p
            else:
                s[g, k] = s[g, k] + x
                b = big[g, k]
                if b != b or a > b:  # fmax: NaN loses
                    big[g, k] = a if a == a else b
                sm = small[g, k]
                if sm != sm or m < sm:  # fmin: NaN loses
                    small[g, k] = m if m == m else sm
                cnt[g, k] = cnt[g, k] + c
                anyp[g, k] = anyp[g, k] or p
    return s, big, small, cnt, anyp


def _partial_sum(vals: np.ndarray, pres: np.ndarray, gid: np.ndarray, n_groups: int,
                 scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """:func:`_sum` with ``partial`` of ``where(pres, vals, 0) * scale`` grouped by ``gid``,
    without sorting the rows: the sums and their compensations; and the count of present
    rows and whether any is, per group and step."""
    s, big, small, cnt, anyp = _group_reduce(vals, pres, gid, n_groups, scale)
    with np.errstate(all="ignore"):
        suspect = (big > 1e6 * np.abs(s)) | (big > 1e6 * np.abs(1e4 * small))
    comp = np.zeros_like(s)
    if not suspect.any():
        return s, comp, cnt, anyp
    x = np.where(pres, vals, 0.0)
    if scale != 1.0:
        x = x * scale
    with np.errstate(all="ignore"):
        bad = imprecise(big, s, x) | imprecise(big, 1e4 * small, x)
    for g, col in zip(*np.nonzero(bad), strict=True):  # rare: only ill-conditioned cells
        s[g, col], comp[g, col] = kahan_pair(x[gid == g, col])
    return s, comp, cnt, anyp


def _avg(vals: np.ndarray, pres: np.ndarray, starts: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Mean that stays finite for large values (sum may overflow to Inf where the mean does not)."""
    if np.isfinite(mean).all():
        return mean
    scaled = np.add.reduceat(np.where(pres, vals / 1e300, 0.0), starts, axis=0)
    cnt = np.add.reduceat(pres.astype(np.float64), starts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        alt = scaled / np.maximum(cnt, 1) * 1e300
    return np.where(np.isinf(mean) & np.isfinite(alt), alt, mean)


def _k_param(param: ScalarSteps | StringValue | None, s: int) -> float:
    assert isinstance(param, ScalarSteps)
    return float(param.values[s])


_TOPK_KERNEL_MAX = 64  # steps with a larger k sort the column instead


def _topk(sv: StepVector, param, grouping, without, bottom: bool = False) -> StepVector:  # type: ignore[no-untyped-def]
    """The k best rows per group and step: by value (NaN last), then row order. Steps with
    ``k <= 64`` in one numba pass (a small sorted buffer per group); larger ``k`` by lexsort."""
    _, gid = _groups(sv, grouping, without)
    assert isinstance(param, ScalarSteps)
    kf = param.values
    if np.isnan(kf).any():
        raise ExecutionError("Parameter value is NaN")
    ks = np.where(kf >= 1, np.minimum(kf, 2.0**62), 0).astype(np.int64)
    nan = np.isnan(sv.values)
    key = np.where(nan, -np.inf if not bottom else np.inf, sv.values)
    key = key if bottom else -key
    keep = np.zeros_like(sv.present)
    gid = np.asarray(gid, np.int64)
    n_groups = int(gid.max()) + 1 if len(gid) else 0
    _topk_kernel(np.ascontiguousarray(key), np.ascontiguousarray(nan), np.ascontiguousarray(sv.present),
                 gid, n_groups, ks, _TOPK_KERNEL_MAX, keep)  # fmt: skip
    for s in np.flatnonzero(ks > _TOPK_KERNEL_MAX).tolist():
        pres = sv.present[:, s]
        order = np.lexsort((nan[:, s], key[:, s], gid))
        order = order[pres[order]]
        g = gid[order]
        first = np.r_[True, g[1:] != g[:-1]]
        start_idx = np.maximum.accumulate(np.where(first, np.arange(len(g)), 0))
        rank = np.arange(len(g)) - start_idx
        keep[order[rank < ks[s]], s] = True
    return StepVector(sv.labels, sv.values, keep).compact()


@nb.njit(cache=True, nogil=True)
def _topk_kernel(key, nan, present, gid, n_groups, ks, kmax, keep):  # type: ignore[no-untyped-def]
    n, S = key.shape
    size = np.zeros(n_groups, np.int64)
    for i in range(n):
        size[gid[i]] += 1
    cnt = np.zeros(n_groups, np.int64)
    off = np.zeros(n_groups + 1, np.int64)
    buf = np.empty(max(n, 1), np.int64)
    for s in range(S):
        k = ks[s]
        if k <= 0 or k > kmax:
            continue
        for g in range(n_groups):
            off[g + 1] = off[g] + min(k, size[g])
            cnt[g] = 0
        for i in range(n):
            if not present[i, s]:
                continue
            g = gid[i]
            base = off[g]
            c = cnt[g]
            kv = key[i, s]
            nv = nan[i, s]
            if c == off[g + 1] - base:  # full: replace the worst if better
                o = buf[base + c - 1]
                if not (kv < key[o, s] or (kv == key[o, s] and nv < nan[o, s])):
                    continue
                c -= 1
            j = c
            while j > 0:
                o = buf[base + j - 1]
                if kv < key[o, s] or (kv == key[o, s] and nv < nan[o, s]):
                    buf[base + j] = o
                    j -= 1
                else:
                    break
            buf[base + j] = i
            cnt[g] = c + 1
        for g in range(n_groups):
            for j in range(cnt[g]):
                keep[buf[off[g] + j], s] = True


def _bottomk(sv, param, grouping, without):  # type: ignore[no-untyped-def]
    return _topk(sv, param, grouping, without, bottom=True)


def _limitk(sv, param, grouping, without):  # type: ignore[no-untyped-def]
    _, gid = _groups(sv, grouping, without)
    keep = np.zeros_like(sv.present)
    for s in range(sv.values.shape[1]):
        k = _k_param(param, s)
        seen: dict[int, int] = {}
        for i in np.flatnonzero(sv.present[:, s]).tolist():
            if seen.get(gid[i], 0) < k:
                seen[gid[i]] = seen.get(gid[i], 0) + 1
                keep[i, s] = True
    return StepVector(sv.labels, sv.values, keep).compact()


@nb.njit(cache=True, nogil=True)
def _quantile_kernel(vals, present, order, starts, q, out, has):  # type: ignore[no-untyped-def]
    """:func:`~filodb.query.rangefns._quantile` of every group (rows ``order[starts[g]:
    starts[g+1]]``) at every step: the same operations, NaN sorted first as Go does, the
    two ranks found by selection instead of a sort."""
    n_groups = len(starts) - 1
    buf = np.empty(len(order))
    for g in range(n_groups):
        a, b = starts[g], starts[g + 1]
        for s in range(vals.shape[1]):
            n = 0
            nan = 0
            for r in range(a, b):
                i = order[r]
                if present[i, s]:
                    v = vals[i, s]
                    if v != v:
                        nan += 1
                    else:
                        buf[n] = v
                        n += 1
            if n + nan == 0:
                continue
            has[g, s] = True
            qs = q[s]
            if qs != qs:
                out[g, s] = np.nan
                continue
            if qs < 0:
                out[g, s] = -np.inf
                continue
            if qs > 1:
                out[g, s] = np.inf
                continue
            total = n + nan
            rank = qs * (total - 1)
            lo = int(np.floor(rank))
            hi = min(lo + 1, total - 1)
            weight = rank - lo
            x = y = np.nan
            if hi >= nan:  # the two ranks among the sorted non-NaN values: a selection
                k = max(lo - nan, 0)
                part = np.partition(buf[:n], k)
                if lo >= nan:
                    x = part[k]
                y = part[k] if hi - nan == k else part[k + 1 : n].min()
            out[g, s] = x * (1 - weight) + y * weight


def _quantile_agg(sv, param, grouping, without):  # type: ignore[no-untyped-def]
    glabels, gid = _groups(sv, grouping, without)
    S = sv.values.shape[1]
    out = np.full((len(glabels), S), np.nan)
    present = np.zeros((len(glabels), S), bool)
    order = np.argsort(gid, kind="stable")
    starts = np.searchsorted(gid[order], np.arange(len(glabels) + 1))
    assert isinstance(param, ScalarSteps)
    _quantile_kernel(np.ascontiguousarray(sv.values, np.float64), np.ascontiguousarray(sv.present),
                     order.astype(np.int64), starts.astype(np.int64),
                     np.ascontiguousarray(param.values, np.float64), out, present)  # fmt: skip
    return StepVector(glabels, out, present)


def _count_values(sv, param, grouping, without):  # type: ignore[no-untyped-def]
    from filodb.model.numfmt import format_value

    assert isinstance(param, StringValue)
    label = param.value
    S = sv.values.shape[1]
    rows: dict[Labels, np.ndarray] = {}
    for i, lb in enumerate(sv.labels):
        base = group_labels(lb, grouping, without)
        for s in np.flatnonzero(sv.present[i]).tolist():
            key = tuple(
                sorted(
                    [
                        *((k, v) for k, v in base if k != label),
                        (label, format_value(float(sv.values[i, s]))),
                    ]
                )
            )
            arr = rows.setdefault(key, np.zeros(S))
            arr[s] += 1
    labels = list(rows)
    vals = np.array([rows[k] for k in labels]) if labels else np.zeros((0, S))
    return StepVector(labels, vals, vals > 0)


_PER_STEP: dict[str, Callable[..., StepVector]] = {"topk": _topk, "bottomk": _bottomk, "quantile": _quantile_agg,
             "count_values": _count_values, "limitk": _limitk}  # fmt: skip
