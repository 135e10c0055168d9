"""``filodb rules test FILE…``: rule unit tests in promtool's ``test rules`` format, run on the
project's own engine over an in-memory source.

As promtool 2.42 does: input series are loaded at the group's ``interval`` (promtool's
expanding notation, ``1+1x10``, ``_``, ``stale``); every rule group is evaluated at each
``evaluation_interval`` step from 0 to the last ``eval_time`` asked for, recorded series and
``ALERTS`` written back (after each group, as the cluster's log shows them; the group's later
rules read them at once through :mod:`filodb.rules.fresh`) so later steps read them; an ``alert_rule_test`` compares the *firing*
alerts (labels, annotations) of the evaluation at or just before its ``eval_time``; a
``promql_expr_test`` runs an instant query at its ``eval_time`` after all evaluations and
compares samples exactly. A newer promtool's ``start_timestamp`` of a test group (unix seconds
or RFC 3339) is taken: series, evaluations and ``eval_time`` count from it. Exit status 0 when every file passes, 1 otherwise; the differences
are printed as ``exp:``/``got:`` lines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import yaml

from filodb.errors import BadInputError, FiloError
from filodb.model.batch import SampleBatch
from filodb.model.labels import Labels, make_labels
from filodb.model.source import SeriesSource
from filodb.model.timeparse import parse_model_duration, parse_time_ms
from filodb.query import ast
from filodb.query.engine import Engine
from filodb.query.memsource import MemorySource
from filodb.query.parser import selector_matchers
from filodb.query.prettier import prom_duration
from filodb.query.promqltest import expand_points
from filodb.query.result import Result
from filodb.rules.alerting import TemplateContext
from filodb.rules.files import RuleGroup, load_files
from filodb.rules.fresh import OverlaySource, add_batch
from filodb.rules.group import GroupState, evaluate_group, vector


class _GroupAppender:
    """Holds a group's samples until the group's evaluation ends, as the cluster's log shows
    them only after a worker applies it; the group's later rules read them as fresh samples."""

    def __init__(self, source: MemorySource) -> None:
        self.source, self.held = source, []  # type: ignore[var-annotated]

    def append(self, batch: SampleBatch) -> None:
        self.held.append(batch)

    def flush(self) -> None:
        for b in self.held:
            add_batch(self.source, b)
        self.held.clear()


class EngineQuerier:
    """The in-process engine over an in-memory source, which can lay fresh samples over it."""

    def __init__(self, source: SeriesSource) -> None:
        self.source = source
        self.engine = Engine(source, timeout_s=100)

    def instant(self, expr: str | ast.Expr, t_ms: int) -> Result:
        return self.engine.instant(expr, t_ms)

    def overlaid(self, fresh: SeriesSource) -> EngineQuerier:
        return EngineQuerier(OverlaySource(self.source, fresh))


def series_labels(text: str) -> Labels:
    """``metric{a="b"}`` as a label set (only ``=`` matchers, as promtool's ParseMetric)."""
    if text.replace(" ", "") in ("", "{}"):
        return ()
    ms = selector_matchers(text)
    if any(m.op != "=" for m in ms):
        raise BadInputError(f"{text}: only = matchers name a series")
    return make_labels({m.name: m.value for m in ms if m.value != ""})


def _dur(v: Any, what: str) -> int:
    try:
        return parse_model_duration(str(v))
    except ValueError as e:
        raise BadInputError(f"{what}: {e}") from None


def _fmt_labels(lb: Labels) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in lb) + "}"


def _fmt_alerts(alerts: Sequence[tuple[Labels, Labels]]) -> str:
    return "[" + ", ".join(f"{{Labels:{_fmt_labels(a)} Annotations:{_fmt_labels(b)}}}"
                           for a, b in alerts) + "]"  # fmt: skip


def _fmt_samples(samples: Sequence[tuple[Labels, float]]) -> str:
    return "[" + ", ".join(f"{{Labels:{_fmt_labels(lb)} Value:{v!r}}}" for lb, v in samples) + "]"


@dataclass
class _Ctx:
    dir: Path
    eval_interval: int
    rule_files: list[str]
    order: list[str]


def run_group(tg: dict[str, Any], ctx: _Ctx) -> list[str]:
    """The errors of one test group (empty: it passed)."""
    interval = _dur(tg.get("interval") or prom_duration(ctx.eval_interval), "interval")
    ext = make_labels({str(k): str(v) for k, v in (tg.get("external_labels") or {}).items()})
    tctx = TemplateContext(ext, str(tg.get("external_url") or ""))
    # a newer promtool's start_timestamp (unix seconds or RFC 3339): times are relative to it
    start = parse_time_ms(str(tg.get("start_timestamp") or 0), "start_timestamp")
    source = MemorySource()
    for s in tg.get("input_series") or []:
        lb = series_labels(str(s["series"]))
        raw = s.get("values")
        vals = expand_points(("" if raw is None else str(raw)).split())
        idx = [i for i, v in enumerate(vals) if v is not None]
        source.add(lb, start + np.array(idx, np.int64) * interval,
                   np.array([vals[i] for i in idx], np.float64))  # fmt: skip
    groups: list[RuleGroup] = load_files([str(ctx.dir / f) if not Path(f).is_absolute() else f
                                         for f in ctx.rule_files], ctx.eval_interval)  # fmt: skip
    if ctx.order:
        by_name = {g.name: g for g in groups}
        missing = [n for n in ctx.order if n not in by_name]
        if missing:
            raise BadInputError(f"group_eval_order: unknown group {missing[0]}")
        groups = [by_name[n] for n in ctx.order] + [g for g in groups if g.name not in ctx.order]
    states = [GroupState.new(g) for g in groups]
    appender = _GroupAppender(source)
    engine = EngineQuerier(source)
    alert_tests: dict[int, list[dict[str, Any]]] = {}
    for at in tg.get("alert_rule_test") or []:
        alert_tests.setdefault(_dur(at.get("eval_time", "0"), "eval_time"), []).append(at)
    expr_tests = tg.get("promql_expr_test") or []
    max_t = max(
        [*alert_tests, *(_dur(e.get("eval_time", "0"), "eval_time") for e in expr_tests), 0]
    )
    errs: list[str] = []
    pending = sorted(alert_tests)
    t = 0
    while t <= max_t:
        eval_errs = []
        for g, st in zip(groups, states, strict=True):
            evaluate_group(g, start + t, engine, appender, st, tctx)
            appender.flush()
            for r, rs in zip(g.rules, st.rules, strict=True):
                if rs.health == "err":
                    eval_errs.append(f"    rule: {r.name}, time: {prom_duration(t)}, "
                                     f"err: {rs.last_error}")  # fmt: skip
        if eval_errs:
            return errs + eval_errs
        while pending and t <= pending[0] < t + ctx.eval_interval:
            at_t = pending.pop(0)
            for case in alert_tests[at_t]:
                name = str(case.get("alertname", ""))
                got = sorted((a.labels, a.annotations) for g, st in zip(groups, states, strict=True)
                             for r, rs in zip(g.rules, st.rules, strict=True) if r.alert == name
                             for a in rs.alerts.values() if a.state == "firing")  # fmt: skip
                exp = sorted(
                    (make_labels({**{str(k): str(v) for k, v in (e.get("exp_labels") or {}).items()},
                                  "alertname": name}),
                     make_labels({str(k): str(v)
                                  for k, v in (e.get("exp_annotations") or {}).items()}))
                    for e in case.get("exp_alerts") or []
                )  # fmt: skip
                if exp != got:
                    errs.append(f"    alertname: {name}, time: {prom_duration(at_t)}, \n"
                                f"        exp:{_fmt_alerts(exp)}, \n        got:{_fmt_alerts(got)}")  # fmt: skip
        t += ctx.eval_interval
    for case in expr_tests:
        expr, at = str(case.get("expr", "")), _dur(case.get("eval_time", "0"), "eval_time")
        try:
            got_s = sorted(vector(Engine(source, timeout_s=100).instant(expr, start + at)))
        except FiloError as e:
            errs.append(f'    expr: "{expr}", time: {prom_duration(at)}, err: {e}')
            continue
        exp_s = sorted((series_labels(str(s.get("labels") or "{}")), float(s.get("value", 0)))
                       for s in case.get("exp_samples") or [])  # fmt: skip
        same = len(exp_s) == len(got_s) and all(
            a[0] == b[0] and a[1] == b[1] and not math.isnan(a[1])
            for a, b in zip(exp_s, got_s, strict=True)
        )
        if not same:
            errs.append(f'    expr: "{expr}", time: {prom_duration(at)},\n'
                        f"        exp: {_fmt_samples(exp_s)}\n        got: {_fmt_samples(got_s)}")  # fmt: skip
    return errs


def run_file(path: str | Path, out: TextIO) -> bool:
    """Run one test file; prints promtool's report; True when it passed."""
    path = Path(path)
    out.write(f"Unit Testing:  {path}\n")
    try:
        doc = yaml.safe_load(path.read_text())
        if not isinstance(doc, dict):
            raise BadInputError("a test file is a mapping")
        ctx = _Ctx(path.parent, _dur(doc.get("evaluation_interval") or "1m", "evaluation_interval"),
                   [str(f) for f in doc.get("rule_files") or []],
                   [str(n) for n in doc.get("group_eval_order") or []])  # fmt: skip
        errs: list[str] = []
        for tg in doc.get("tests") or []:
            group_errs = run_group(tg, ctx)
            if group_errs and tg.get("name"):
                errs.append(f"    name: {tg['name']},")
            errs.extend(group_errs)
    except (OSError, yaml.YAMLError, FiloError, KeyError, TypeError, ValueError) as e:
        out.write(f"  FAILED:\n{e}\n\n")
        return False
    if errs:
        out.write("  FAILED:\n" + "\n".join(errs) + "\n\n")
        return False
    out.write("  SUCCESS\n\n")
    return True


def main(files: Sequence[str], out: TextIO) -> int:
    ok = True
    for f in files:
        ok = run_file(f, out) and ok
    return 0 if ok else 1
