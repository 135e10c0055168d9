"""Prometheus rule files (YAML): groups of recording and alerting rules, validated.

Every error names the file, the group and the rule (``rules.yml: group "g": rule 2 (alert
"X"): ...``) and is a :class:`BadInputError`. Durations are Prometheus's model durations
(``1h30m``, ``0``; no bare numbers, no fractions). Templates are parsed here, so a bad template
is refused at load, not at the first alert.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from filodb.errors import BadInputError, FiloError
from filodb.model.dataset import check_dataset_name
from filodb.model.labels import METRIC_NAME, Labels, valid_label_name
from filodb.model.timeparse import parse_model_duration
from filodb.query import ast
from filodb.query.parser import parse
from filodb.rules.template import Template

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_GROUP_KEYS = {"name", "interval", "limit", "query_offset", "rules"}
_RULE_KEYS = {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
DEFAULT_INTERVAL_MS = 60_000


@dataclass(frozen=True)
class Rule:
    """One rule; ``record`` or ``alert`` is set, never both."""

    expr: str
    parsed: ast.Expr = field(compare=False, repr=False)
    record: str = ""
    alert: str = ""
    for_ms: int = 0
    keep_firing_for_ms: int = 0
    labels: Labels = ()
    annotations: Labels = ()
    templates: dict[str, Template] = field(default_factory=dict, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.record or self.alert

    @property
    def kind(self) -> str:
        return "recording" if self.record else "alerting"


@dataclass(frozen=True)
class RuleGroup:
    file: str
    name: str
    interval_ms: int
    rules: tuple[Rule, ...]
    limit: int = 0
    query_offset_ms: int = 0
    dataset: str = ""  # read and written; "" is the process's default dataset

    @property
    def key(self) -> str:
        """Unique across files: ``<file>;<group>`` (as Prometheus keys its groups), prefixed
        ``<dataset>=`` when the files were named for a dataset."""
        return (
            f"{self.dataset}={self.file};{self.name}"
            if self.dataset
            else f"{self.file};{self.name}"
        )


def split_pattern(p: str) -> tuple[str, str]:
    """``<dataset>=<glob>`` → ``(dataset, glob)`` (a filodb extension: the group evaluates
    against that dataset and writes to it); a plain glob → ``("", glob)``. The prefix counts
    only when it is a valid dataset name (no ``/``), so a path with ``=`` further on stays one."""
    ds, eq, rest = p.partition("=")
    if not eq:
        return "", p
    try:
        return check_dataset_name(ds), rest
    except BadInputError:
        return "", p


def expand_patterns(patterns: Iterable[str]) -> list[str]:
    """Rule files named by globs, sorted, each once; a pattern matching nothing is an error
    unless it has glob characters (Prometheus accepts an empty glob)."""
    out: list[str] = []
    for p in patterns:
        hits = sorted(glob.glob(p))
        if not hits and not glob.has_magic(p):
            raise BadInputError(f"rule file {p}: no such file")
        out.extend(h for h in hits if h not in out)
    return out


def load_files(patterns: Iterable[str], default_interval_ms: int = DEFAULT_INTERVAL_MS
               ) -> list[RuleGroup]:  # fmt: skip
    """Every group of every file (``<dataset>=<glob>``: :func:`split_pattern`); a
    :class:`BadInputError` naming file/group/rule if any is bad."""
    groups: list[RuleGroup] = []
    seen: set[tuple[str, str]] = set()
    for p in patterns:
        ds, pattern = split_pattern(p)
        for path in expand_patterns([pattern]):
            if (ds, path) in seen:
                continue
            seen.add((ds, path))
            try:
                text = Path(path).read_text()
            except OSError as e:
                raise BadInputError(f"rule file {path}: {e.strerror or e}") from e
            groups.extend(replace(g, dataset=ds) if ds else g
                          for g in parse_rules(text, path, default_interval_ms))  # fmt: skip
    return groups


def parse_rules(text: str, file: str = "<rules>", default_interval_ms: int = DEFAULT_INTERVAL_MS
                ) -> list[RuleGroup]:  # fmt: skip
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise BadInputError(f"{file}: not valid YAML: {e}") from e
    if doc is None:
        return []
    if not isinstance(doc, dict) or set(doc) - {"groups"}:
        raise BadInputError(f"{file}: a rule file is a mapping with one key, groups")
    raw_groups = doc.get("groups") or []
    if not isinstance(raw_groups, list):
        raise BadInputError(f"{file}: groups must be a list")
    seen: set[str] = set()
    out = []
    for i, g in enumerate(raw_groups):
        grp = _group(file, i, g, default_interval_ms)
        if grp.name in seen:
            raise BadInputError(f'{file}: group "{grp.name}": groupname: "{grp.name}" is repeated '
                                "in the same file")  # fmt: skip
        seen.add(grp.name)
        out.append(grp)
    return out


def _duration(where: str, key: str, v: Any) -> int:
    if v is None:
        return 0
    try:
        return parse_model_duration(str(v))
    except ValueError as e:
        raise BadInputError(f"{where}: {key}: {e}") from e


def _group(file: str, i: int, g: Any, default_interval_ms: int) -> RuleGroup:
    if not isinstance(g, dict):
        raise BadInputError(f"{file}: group {i + 1}: must be a mapping")
    name = g.get("name")
    if not isinstance(name, str) or not name:
        raise BadInputError(f"{file}: group {i + 1}: groupname must not be empty")
    where = f'{file}: group "{name}"'
    if unknown := set(g) - _GROUP_KEYS:
        raise BadInputError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    interval = _duration(where, "interval", g.get("interval")) or default_interval_ms
    limit = g.get("limit", 0) or 0
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise BadInputError(f"{where}: limit must be a non-negative integer, not {limit!r}")
    raw_rules = g.get("rules") or []
    if not isinstance(raw_rules, list):
        raise BadInputError(f"{where}: rules must be a list")
    rules = tuple(_rule(where, j, r) for j, r in enumerate(raw_rules))
    return RuleGroup(file, name, interval, rules, limit,
                     _duration(where, "query_offset", g.get("query_offset")))  # fmt: skip


def _str_map(where: str, key: str, v: Any) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise BadInputError(f"{where}: {key} must be a mapping")
    return {str(k): "" if x is None else str(x) for k, x in v.items()}


def _rule(group_where: str, j: int, r: Any) -> Rule:
    where = f"{group_where}: rule {j + 1}"
    if not isinstance(r, dict):
        raise BadInputError(f"{where}: must be a mapping")
    record, alert = r.get("record"), r.get("alert")
    if record is not None and alert is not None:
        raise BadInputError(f"{where}: only one of 'record' and 'alert' must be set")
    if record is None and alert is None:
        raise BadInputError(f"{where}: one of 'record' or 'alert' must be set")
    name = str(record if record is not None else alert)
    where = f'{where} ({"record" if record is not None else "alert"} "{name}")'
    if unknown := set(r) - _RULE_KEYS:
        raise BadInputError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    expr = r.get("expr")
    if expr is None or str(expr).strip() == "":
        raise BadInputError(f"{where}: field 'expr' must be set in rule")
    expr = str(expr)
    try:
        parsed = parse(expr)
    except FiloError as e:
        raise BadInputError(f"{where}: could not parse expression: {e}") from e
    labels = _str_map(where, "labels", r.get("labels"))
    annotations = _str_map(where, "annotations", r.get("annotations"))
    for k in labels:
        if not valid_label_name(k) or k == METRIC_NAME:
            raise BadInputError(f"{where}: invalid label name: {k}")
    templates: dict[str, Template] = {}
    if record is not None:
        if not _METRIC_NAME.match(name):
            raise BadInputError(f"{where}: invalid recording rule name: {name}")
        for key in ("for", "keep_firing_for", "annotations"):
            if r.get(key) is not None:
                raise BadInputError(f"{where}: invalid field '{key}' in recording rule")
    else:
        for k in annotations:
            if not valid_label_name(k):
                raise BadInputError(f"{where}: invalid annotation name: {k}")
        for kind, values in (("label", labels), ("annotation", annotations)):
            for k, text in values.items():
                try:
                    templates[f"{kind}:{k}"] = Template(text, f"__alert_{name}")
                except BadInputError as e:
                    raise BadInputError(f"{where}: {kind} {k!r}: {e}") from e
    return Rule(expr=expr, parsed=parsed, record=str(record or ""), alert=str(alert or ""),
                for_ms=_duration(where, "for", r.get("for")),
                keep_firing_for_ms=_duration(where, "keep_firing_for", r.get("keep_firing_for")),
                labels=tuple(sorted(labels.items())),  # empty values kept: they remove a label
        annotations=tuple(sorted(annotations.items())),
                templates=templates)  # fmt: skip
