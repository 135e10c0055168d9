"""``query_range`` over a dataset with downsample levels: the long-time-range planner's pieces
(:mod:`filodb.query.longrange`), each evaluated on its tier's dataset, stitched into one answer
that says which resolutions answered (``infos`` and the ``X-Filodb-Resolution`` header)."""

from __future__ import annotations

from collections.abc import Callable

from filodb.model.resolution import ds_dataset_name
from filodb.query import ast
from filodb.query.distributed import DistributedEngine
from filodb.query.longrange import Tier, describe, plan_range, stitch
from filodb.query.result import Result
from filodb.tasks.fanout import ClusterSource
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
    dataset: str, e: ast.Expr, start: int, end: int, step: int, now_ms: int, engine: EngineFactory
) -> tuple[Result, list[str], str] | None:
    """The stitched answer, the sources' warnings and which tiers answered; None when the
    dataset has no levels (the caller evaluates on the raw dataset as usual)."""
    ts = tiers(dataset, now_ms)
    if not ts:
        return None
    pieces, warnings = plan_range(e, start, end, step, ts, services().cfg.lookback_ms)
    results, source_warnings = [], []
    for p in pieces:
        eng, source = engine(p.tier.dataset, p.lookback_ms)
        results.append(eng.range(p.expr, p.start_ms, p.end_ms, p.step_ms))
        source_warnings += source.warnings
    res = stitch(results)
    res.warnings = [*warnings, *res.warnings]
    info = describe(pieces)
    res.infos.append(f"resolution: {info}")
    return res, source_warnings, info
