"""Queries over a dataset with downsample levels: the long-time-range planner's pieces
(:mod:`filodb.query.longrange`), each evaluated on its tier's dataset, stitched into one answer
that says which resolutions answered (``infos`` and the ``X-Filodb-Resolution`` header).

``query_range`` sends each piece through the results cache (when given) as a range query of
its own tier's dataset: the key holds that dataset and the piece's rewritten expression (so
which resolution answered, and how), and its generation; the downsampler bumps a ds dataset's
generation whenever its data moves (the run wrote, a node reloaded the part keys). A raw piece
shares the raw dataset's entries. ``query_instant`` plans one step (:func:`plan_instant`)."""

from __future__ import annotations

from collections.abc import Callable

from filodb.model.labels import Labels
from filodb.model.resolution import ds_dataset_name
from filodb.query import ast
from filodb.query.distributed import DistributedEngine
from filodb.query.longrange import (
    COL_LABEL,
    Piece,
    Tier,
    describe,
    plan_instant,
    plan_range,
    stitch,
)
from filodb.query.result import Result
from filodb.tasks.fanout import ClusterSource
from filodb.web.results_cache import ResultsCache
from filodb.web.services import services

EngineFactory = Callable[[str, int], tuple[DistributedEngine, ClusterSource]]


def tiers(dataset: str, now_ms: int) -> list[Tier]:
    """Raw first, then the levels finest first; empty when ``dataset`` has no levels."""
    svc = services()
    desc = svc.router.dataset(dataset)
    if not desc.downsample:
        return []
    ret = desc.retention(svc.cfg.retention)
    reached = svc.shard_map.downsampled().get(dataset, 0)
    out = [Tier(dataset, 0, now_ms - int(ret * 1000) if ret else None)]
    for lv in desc.downsample:
        oldest = now_ms - int(lv.retention_s * 1000) if lv.retention_s else None
        out.append(
            Tier(ds_dataset_name(dataset, lv.resolution_ms), lv.resolution_ms, oldest, reached)
        )
    return out


def query_range(
    dataset: str, e: ast.Expr, start: int, end: int, step: int, now_ms: int,
    engine: EngineFactory, cache: ResultsCache | None = None,
) -> tuple[Result, str] | None:  # fmt: skip
    """The stitched answer (the sources' warnings in it) and which tiers answered; None when
    the dataset has no levels (the caller evaluates on the raw dataset as usual)."""
    ts = tiers(dataset, now_ms)
    if not ts:
        return None
    return answer_range(ts, e, start, end, step, services().cfg.lookback_ms, engine, cache)


def answer_range(
    ts: list[Tier], e: ast.Expr, start: int, end: int, step: int, lookback_ms: int,
    engine: EngineFactory, cache: ResultsCache | None,
) -> tuple[Result, str]:  # fmt: skip
    """:func:`query_range` over the tiers ``ts``."""
    pieces, warnings = plan_range(e, start, end, step, ts, lookback_ms)
    results = [_range_piece(p, engine, cache) for p in pieces]
    res = stitch(results)
    res.warnings = list(dict.fromkeys([*warnings, *res.warnings]))
    info = describe(pieces)
    res.infos.append(f"resolution: {info}")
    return res, info


def _range_piece(p: Piece, engine: EngineFactory, cache: ResultsCache | None) -> Result:
    def compute(lo: int, hi: int) -> tuple[Result, bool]:
        eng, source = engine(p.tier.dataset, p.lookback_ms)
        res = eng.range(p.expr, lo, hi, p.step_ms)
        res.warnings = [*source.warnings, *res.warnings]
        return res, not res.warnings

    if cache is None:
        return compute(p.start_ms, p.end_ms)[0]
    return cache.range(p.tier.dataset, p.expr, p.start_ms, p.end_ms, p.step_ms, p.lookback_ms,
                       compute)  # fmt: skip


def query_instant(
    dataset: str, e: ast.Expr, t: int, now_ms: int, engine: EngineFactory
) -> tuple[Result, str] | None:
    """The instant answer at ``t`` (the sources' warnings in it) and which tier answered; None
    when the dataset has no levels."""
    ts = tiers(dataset, now_ms)
    if not ts:
        return None
    p, warnings = plan_instant(e, t, ts, services().cfg.lookback_ms)
    eng, source = engine(p.tier.dataset, p.lookback_ms)
    res = eng.instant(p.expr, t)
    if p.tier.resolution_ms and res.result_type == "matrix":  # x[30d]: the samples as read
        res.series = [(_without_col(lb), t_, v) for lb, t_, v in res.series]
    res.warnings = list(dict.fromkeys([*warnings, *source.warnings, *res.warnings]))
    info = describe([p])
    res.infos.append(f"resolution: {info}")
    return res, info


def _without_col(lb: Labels) -> Labels:
    return tuple(kv for kv in lb if kv[0] != COL_LABEL)
