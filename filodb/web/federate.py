"""``GET /federate?match[]=…`` (and ``/promql/<dataset>/federate``): Prometheus federation.

The latest sample of each series any ``match[]`` selects, within the lookback window before now,
in the text exposition format (``text/plain; version=0.0.4``), as Prometheus's
``web/federate.go`` writes it: series sorted by metric name (then labels), one ``# TYPE <name>
untyped`` line per run of a name, an ``instance=""`` label on series without one (Prometheus's
external-label rule, with no external labels configured), values as Go's ``'g'`` format,
timestamps in milliseconds. Series whose latest sample is a stale marker and series without a
metric name are left out. No ``match[]`` is an empty answer, as in Prometheus; a ``match[]``
that does not parse is a 400.
"""

from __future__ import annotations

import numpy as np
from flask import Blueprint, Response

from filodb.model.labels import METRIC_NAME, Labels
from filodb.model.numfmt import format_values_g
from filodb.model.source import SeriesBlock
from filodb.prom.text import series_text
from filodb.query.values import STALE_NAN_BITS
from filodb.web.params import match_params, now_ms
from filodb.web.services import services

bp = Blueprint("federate", __name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def latest(block: SeriesBlock) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions (into ``block.labels``), timestamps and values of each series' last sample,
    for the series that have one that is not a stale marker."""
    counts = np.diff(block.offsets)
    has = np.flatnonzero(counts > 0)
    last = block.offsets[1:][has] - 1
    ts, vals = block.ts[last], block.vals[last]
    live = vals.view(np.uint64) != STALE_NAN_BITS
    return has[live], ts[live], vals[live]


def _with_instance(lb: Labels) -> Labels:
    if any(k == "instance" for k, _ in lb):
        return lb
    return (*lb, ("instance", ""))


def exposition(block: SeriesBlock) -> str:
    """The text exposition of the latest samples of ``block`` (see the module docstring)."""
    pos, ts, vals = latest(block)
    names = [dict(block.labels[i]).get(METRIC_NAME, "") for i in pos.tolist()]
    order = sorted(
        (k for k in range(len(pos)) if names[k]),
        key=lambda k: (names[k], block.labels[int(pos[k])]),
    )
    values = format_values_g(vals)
    out: list[str] = []
    last_name = None
    for k in order:
        name = names[k]
        if name != last_name:
            out.append(f"# TYPE {name} untyped\n")
            last_name = name
        text = series_text(_with_instance(block.labels[int(pos[k])]))
        out.append(f"{text} {values[k]} {int(ts[k])}\n")
    return "".join(out)


@bp.route("/federate", methods=["GET"])
@bp.route("/promql/<dataset>/federate", methods=["GET"])
def federate(dataset: str | None = None) -> Response:
    sets = match_params(required=False)
    svc = services()
    if not sets:
        return Response("", mimetype=CONTENT_TYPE)
    end = now_ms()
    start = end - svc.cfg.lookback_ms
    source = svc.source(dataset or svc.cfg.dataset, svc.cfg.query_timeout)
    seen: dict[Labels, int] = {}
    blocks = []
    for matchers in sets:
        block = source.select(matchers, start, end)
        keep = [i for i, lb in enumerate(block.labels) if lb not in seen]
        for i in keep:
            seen[block.labels[i]] = 1
        if keep:
            blocks.append(_take(block, np.array(keep, np.int64)))
    body = exposition(SeriesBlock.concat(blocks))
    return Response(body, mimetype=CONTENT_TYPE)


def _take(block: SeriesBlock, idx: np.ndarray) -> SeriesBlock:
    """The series ``idx`` of a block (their samples only)."""
    if len(idx) == len(block.labels):
        return block
    counts = np.diff(block.offsets)[idx]
    starts = block.offsets[:-1][idx]
    pos = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(
        int(counts.sum())
    )
    offsets = np.zeros(len(idx) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return SeriesBlock(
        [block.labels[i] for i in idx.tolist()], offsets, block.ts[pos], block.vals[pos]
    )
