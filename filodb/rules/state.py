"""Rule state in Redis: what ``/api/v1/rules`` and ``/api/v1/alerts`` show, the alerts that
survive a failover, and reload requests, shared by whichever process evaluates and the web tier.

- ``filodb:rules:status``: the rule groups as Prometheus's ``/api/v1/rules`` answers them
  (JSON), written by the evaluating process after each group evaluation;
- ``filodb:rules:alerts``: hash ``<group key>\\x00<rule index>\\x00<alert name>`` → the rule's
  active alerts (JSON), so a process that takes the lease over carries on their ``for`` and
  ``keep_firing_for`` clocks where the last holder left them;
- ``filodb:rules:returned``: hash ``<group key>\x00<rule index>\x00<rule name>`` → the series
  the rule wrote at its last evaluation (JSON label lists, at most :data:`MAX_RETURNED_SAVED`),
  rewritten only when that set changes, so a new holder writes the stale markers of series
  that vanish across the failover;
- ``filodb:rules:reload``: a list of reload requests (``POST /-/reload``); the answer goes to
  ``filodb:rules:reload:<id>`` (a list, popped with a timeout by the requester).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import orjson
import redis

from filodb.errors import BadInputError, NotFoundError, UnavailableError
from filodb.model.numfmt import format_rfc3339
from filodb.rules.alerting import Alert
from filodb.rules.files import Rule, RuleGroup
from filodb.rules.group import GroupState, RuleState

STATUS_KEY = "filodb:rules:status"
ALERTS_KEY = "filodb:rules:alerts"
RETURNED_KEY = "filodb:rules:returned"
RELOAD_KEY = "filodb:rules:reload"
LEASE_KEY = "filodb:rules:lease"
_ZERO_TIME = "0001-01-01T00:00:00Z"
# a rule returning more series than this keeps no saved set (no stale markers across a failover
# for it: its series end by the lookback instead); bounds the Redis hash and each rewrite
MAX_RETURNED_SAVED = 20_000
_ORDER = {"inactive": 0, "pending": 1, "firing": 2}


def rfc3339(ms: int) -> str:
    """Go's JSON of a time; never set (0) is Go's zero time, as Prometheus shows it."""
    return format_rfc3339(ms) if ms else _ZERO_TIME


def go_e(v: float) -> str:
    """Go's ``FormatFloat(v, 'e', -1, 64)``, how Prometheus prints an alert's value."""
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "0e+00"
    _, digits, exp = Decimal(repr(abs(float(v)))).normalize().as_tuple()
    ds = "".join(map(str, digits))
    ex = len(ds) + int(exp) - 1
    m = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
    return f"{'-' if v < 0 else ''}{m}e{'-' if ex < 0 else '+'}{abs(ex):02d}"


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def alert_json(a: Alert) -> dict[str, Any]:
    out: dict[str, Any] = {"labels": dict(a.labels), "annotations": dict(a.annotations),
                           "state": a.state, "activeAt": rfc3339(a.active_at),
                           "value": go_e(a.value)}  # fmt: skip
    if a.keep_firing_since:
        out["keepFiringSince"] = rfc3339(a.keep_firing_since)
    return out


def _rule_json(rule: Rule, rs: RuleState) -> dict[str, Any]:
    common: dict[str, Any] = {"name": rule.name, "query": rule.expr, "labels": dict(rule.labels),
                              "health": rs.health, "evaluationTime": rs.eval_seconds,
                              "lastEvaluation": rfc3339(rs.last_eval_ms)}  # fmt: skip
    if rs.last_error:
        common["lastError"] = rs.last_error
    if rule.record:
        return {**common, "type": "recording"}
    alerts = [a for a in rs.alerts.values() if not a.resolved_at]
    state = max((a.state for a in alerts), key=_ORDER.__getitem__, default="inactive")
    return {"state": state, **common, "duration": rule.for_ms / 1000,
            "keepFiringFor": rule.keep_firing_for_ms / 1000,
            "annotations": dict(rule.annotations), "alerts": [alert_json(a) for a in alerts],
            "type": "alerting"}  # fmt: skip


def group_json(g: RuleGroup, st: GroupState) -> dict[str, Any]:
    return {"name": g.name, "file": g.file, "interval": g.interval_ms / 1000, "limit": g.limit,
            "rules": [_rule_json(r, rs) for r, rs in zip(g.rules, st.rules, strict=True)],
            "evaluationTime": st.eval_seconds, "lastEvaluation": rfc3339(st.last_eval_ms)}  # fmt: skip


def _rule_field(g: RuleGroup, i: int, rule: Rule) -> str:
    return f"{g.key}\x00{i}\x00{rule.name}"


class RuleStateStore:
    """The Redis side of rule state; thread-safe (one connection pool)."""

    def __init__(self, url: str) -> None:
        self.r = redis.Redis.from_url(url, socket_timeout=10)

    # --- written by the evaluating process -------------------------------------------------
    def publish(self, groups: list[dict[str, Any]]) -> None:
        self.r.set(STATUS_KEY, orjson.dumps(groups))

    def save_alerts(self, g: RuleGroup, st: GroupState) -> None:
        fields = {_rule_field(g, i, r): orjson.dumps([a.to_json() for a in rs.alerts.values()])
                  for i, (r, rs) in enumerate(zip(g.rules, st.rules, strict=True)) if r.alert}  # fmt: skip
        if fields:
            self.r.hset(ALERTS_KEY, mapping=fields)  # type: ignore[arg-type]

    def load_alerts(self, g: RuleGroup, st: GroupState) -> int:
        """Fill ``st``'s alerts from Redis; returns how many were restored. A rule Redis holds
        nothing of is marked to restore its ``for`` state from ``ALERTS_FOR_STATE``."""
        keys = [(_rule_field(g, i, r), rs) for i, (r, rs)
                in enumerate(zip(g.rules, st.rules, strict=True)) if r.alert]  # fmt: skip
        if not keys:
            return 0
        n = 0
        for (_, rs), raw in zip(keys, self.r.hmget(ALERTS_KEY, [k for k, _ in keys]), strict=True):
            if raw:
                alerts = [Alert.from_json(d) for d in orjson.loads(raw)]
                rs.alerts = {a.labels: a for a in alerts}
                n += len(alerts)
            else:  # Redis holds nothing of it: restore from ALERTS_FOR_STATE (rules.restore)
                rs.alerts, rs.restoring = {}, True
        return n

    def forget_alerts(self, keep: list[RuleGroup]) -> None:
        """Drop saved alerts of rules no longer loaded."""
        live = {_rule_field(g, i, r) for g in keep for i, r in enumerate(g.rules) if r.alert}
        stale = [k for k in self.r.hkeys(ALERTS_KEY) if _text(k) not in live]
        if stale:
            self.r.hdel(ALERTS_KEY, *stale)

    def save_returned(self, g: RuleGroup, st: GroupState) -> None:
        """Save the series each rule wrote last, for the rules whose set changed."""
        put: dict[str, bytes] = {}
        drop: list[str] = []
        for i, (r, rs) in enumerate(zip(g.rules, st.rules, strict=True)):
            if not rs.returned_dirty:
                continue
            rs.returned_dirty = False
            if len(rs.returned) > MAX_RETURNED_SAVED or not rs.returned:
                drop.append(_rule_field(g, i, r))
            else:
                put[_rule_field(g, i, r)] = orjson.dumps(
                    [list(map(list, lb)) for lb in rs.returned]
                )
        pipe = self.r.pipeline()
        if put:
            pipe.hset(RETURNED_KEY, mapping=put)  # type: ignore[arg-type]
        if drop:
            pipe.hdel(RETURNED_KEY, *drop)
        if put or drop:
            pipe.execute()

    def load_returned(self, g: RuleGroup, st: GroupState) -> None:
        fields = [_rule_field(g, i, r) for i, r in enumerate(g.rules)]
        if not fields:
            return
        for rs, raw in zip(st.rules, self.r.hmget(RETURNED_KEY, fields), strict=True):
            rs.returned = (
                {tuple((k, v) for k, v in lb) for lb in orjson.loads(raw)} if raw else set()
            )
            rs.returned_dirty = False

    def forget_returned(self, keep: list[RuleGroup]) -> None:
        live = {_rule_field(g, i, r) for g in keep for i, r in enumerate(g.rules)}
        stale = [k for k in self.r.hkeys(RETURNED_KEY) if _text(k) not in live]
        if stale:
            self.r.hdel(RETURNED_KEY, *stale)

    def next_reload_request(self) -> str | None:
        v = self.r.lpop(RELOAD_KEY)
        return v.decode() if isinstance(v, bytes) else None

    def answer_reload(self, req: str, error: str) -> None:
        key = f"{RELOAD_KEY}:{req}"
        pipe = self.r.pipeline()
        pipe.rpush(key, error or "ok")
        pipe.expire(key, 60)
        pipe.execute()

    # --- read by the web tier --------------------------------------------------------------
    def groups(self) -> list[dict[str, Any]]:
        raw = self.r.get(STATUS_KEY)
        return orjson.loads(raw) if raw else []

    def alerts(self) -> list[dict[str, Any]]:
        return [a for g in self.groups() for r in g["rules"] if r["type"] == "alerting"
                for a in r["alerts"]]  # fmt: skip

    def evaluator(self) -> str | None:
        v = self.r.get(LEASE_KEY)
        return v.decode() if isinstance(v, bytes) else None

    def request_reload(self, timeout_s: float = 15.0) -> None:
        """Ask the evaluating process to reload its rule files; raises BadInputError with the
        reason when a file does not parse (the old rules keep running), NotFoundError when no
        process evaluates rules (nothing to reload: 404, as Prometheus refuses the route when its
        lifecycle API is off), UnavailableError when the evaluator does not answer in time."""
        if not self.evaluator():
            raise NotFoundError("no rule evaluator is running (filodb rules / filodb up --rules)")
        req = uuid.uuid4().hex
        self.r.rpush(RELOAD_KEY, req)
        got = self.r.blpop([f"{RELOAD_KEY}:{req}"], timeout=timeout_s)
        if got is None:
            self.r.lrem(RELOAD_KEY, 0, req)
            raise UnavailableError("the rule evaluator did not answer the reload in time")
        answer = _text(got[1])
        if answer != "ok":
            raise BadInputError(f"error reloading rules: {answer}")
