"""The evaluating side of rules: one process of the cluster at a time evaluates every group.

:class:`RuleManager` is driven by :meth:`~RuleManager.tick` (the process calls it in a loop;
tests call it with an injected clock). Each tick renews the rules lease (``filodb:rules:lease``,
a :class:`~filodb.shards.nodes.Lease`): only its holder evaluates. A process that takes the
lease reloads its files, restores the alerts the last holder saved in Redis (those of a rule
Redis holds nothing of from ``ALERTS_FOR_STATE``, :mod:`filodb.rules.restore`) and evaluates
from the current slot on. A group is evaluated at its slots ``k × interval + offset``, the offset
a hash of the group's file and name (as Prometheus spreads groups over their interval; a hash of
our own, so the offsets differ from Prometheus's); slots missed (a long evaluation, a failover)
are skipped, the latest one is evaluated. After each group the holder publishes the state
(:mod:`filodb.rules.state`) and hands due alerts to the :class:`~filodb.rules.notifier.Notifier`.

A reload (SIGHUP, ``POST /-/reload`` through Redis, a new lease) parses every file first; if one
is bad the reload is refused with the reason and the old groups keep running. A group whose
file and name are unchanged keeps the state (alerts, staleness) of each rule that is unchanged;
the series of a rule that is gone get stale markers at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import xxhash

from filodb.errors import FiloError
from filodb.model.labels import Labels
from filodb.rules.alerting import TemplateContext
from filodb.rules.files import RuleGroup, load_files
from filodb.rules.group import (
    STALE,
    Appender,
    GroupState,
    Querier,
    RuleState,
    evaluate_group,
    to_batch,
)
from filodb.rules.notifier import Notifier, am_alert
from filodb.rules.restore import restore_for_state
from filodb.rules.state import RuleStateStore, group_json
from filodb.shards.nodes import Lease

log = logging.getLogger(__name__)


@dataclass
class GroupCounters:
    """Prometheus's per-group rule metrics (``prometheus_rule_*``), kept across reloads."""

    iterations: int = 0
    missed: int = 0
    evaluations: int = 0
    failures: int = 0
    last_samples: int = 0

    def count(self, st: GroupState) -> None:
        self.iterations += 1
        self.evaluations += len(st.rules)
        self.failures += sum(rs.health == "err" for rs in st.rules)
        self.last_samples = st.last_samples


def group_offset_ms(g: RuleGroup) -> int:
    return int(xxhash.xxh64_intdigest(g.key.encode()) % max(1, g.interval_ms))


def current_slot(g: RuleGroup, now_ms: int) -> int:
    """The latest evaluation time of ``g`` at or before ``now_ms``."""
    off = group_offset_ms(g)
    return (now_ms - off) // g.interval_ms * g.interval_ms + off


class RuleManager:
    def __init__(self, patterns: Sequence[str], querier: Querier, appender: Appender,
                 store: RuleStateStore | None = None, lease: Lease | None = None,
                 notifier: Notifier | None = None, external_labels: Labels = (),
                 external_url: str = "", name: str = "",
                 clock: Callable[[], float] = time.time, for_grace_ms: int = 600_000,
                 outage_tolerance_ms: int = 3_600_000,
                 for_dataset: Callable[[str], tuple[Querier, Appender]] | None = None
                 ) -> None:  # fmt: skip
        self.patterns = list(patterns)
        self.querier, self.appender = querier, appender
        # a group named for a dataset (``<dataset>=<glob>``) reads and writes through these
        self.for_dataset = for_dataset
        self._by_dataset: dict[str, tuple[Querier, Appender]] = {}
        self.store, self.lease, self.notifier = store, lease, notifier
        self.ctx = TemplateContext(external_labels, external_url)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.clock = clock
        self.for_grace_ms, self.outage_tolerance_ms = for_grace_ms, outage_tolerance_ms
        self.groups: list[RuleGroup] = []
        self.states: dict[str, GroupState] = {}
        self.last_slot: dict[str, int] = {}
        self.counters: dict[str, GroupCounters] = {}  # by group key: what /metrics shows
        self.leader = False
        self.reload_wanted = threading.Event()
        self.last_reload_error = ""

    # --- files ---------------------------------------------------------------------------
    def load(self) -> None:
        """Load the files (raises :class:`BadInputError` naming file, group and rule)."""
        self._install(load_files(self.patterns))

    def reload(self) -> str:
        """Reload; returns ``""`` or the reason the files were refused (old rules kept)."""
        try:
            groups = load_files(self.patterns)
        except FiloError as e:
            self.last_reload_error = str(e)
            log.error("rule reload refused, old rules keep running: %s", e)
            return str(e)
        self._install(groups)
        self.last_reload_error = ""
        log.info(
            "rules loaded: %d groups, %d rules", len(groups), sum(len(g.rules) for g in groups)
        )
        return ""

    def _install(self, groups: list[RuleGroup]) -> None:
        old = {g.key: g for g in self.groups}
        states: dict[str, GroupState] = {}
        for g in groups:
            st = GroupState.new(g)
            if g.key in old and g.key in self.states:
                prev, pst = old[g.key], self.states[g.key]
                kept = {r: rs for r, rs in zip(prev.rules, pst.rules, strict=True)}
                st.rules = [kept.pop(r, rs) for r, rs in zip(g.rules, st.rules, strict=True)]
                for rs in st.rules:  # a kept rule's index may have moved: save under the new one
                    rs.returned_dirty = bool(rs.returned)
            states[g.key] = st
        carried = {id(rs) for st in states.values() for rs in st.rules}
        dropped = [(g, rs) for g in self.groups if g.key in self.states
                   for rs in self.states[g.key].rules if id(rs) not in carried and rs.returned]  # fmt: skip
        if dropped and self.leader:
            self._end_series(dropped)
        self.groups, self.states = groups, states
        self.last_slot = {k: v for k, v in self.last_slot.items() if k in states}
        self.counters = {g.key: self.counters.get(g.key) or GroupCounters() for g in groups}
        self._publish()

    def _publish(self) -> None:
        if self.store is not None and self.leader:
            self.store.publish([group_json(g, self.states[g.key]) for g in self.groups])

    # --- the loop ------------------------------------------------------------------------
    def tick(self) -> float:
        """Renew the lease, serve reloads, evaluate the groups that are due; returns the
        seconds until the next group is due (capped to a third of the lease's TTL)."""
        now_ms = int(self.clock() * 1000)
        held = self.lease.hold(self.name) if self.lease is not None else True
        if held and not self.leader:
            self._take_over(now_ms)
        elif not held and self.leader:
            log.warning("%s lost the rules lease; not evaluating", self.name)
            self.leader = False
        if not held:
            return self._cap(1.0)
        if self.reload_wanted.is_set():
            self.reload_wanted.clear()
            self.reload()
        self._serve_reload_requests()
        for i, g in enumerate(self.groups):
            slot = current_slot(g, now_ms)
            if slot > self.last_slot.get(g.key, -1):
                # a long evaluation may outlast the lease: renew it before each further group
                if i and self.lease is not None and not self.lease.hold(self.name):
                    log.warning("%s lost the rules lease while evaluating", self.name)
                    self.leader = False
                    return self._cap(1.0)
                prev = self.last_slot.get(g.key, -1)
                if prev >= 0 and slot - prev > g.interval_ms:  # a long evaluation, a pause
                    self.counters[g.key].missed += (slot - prev) // g.interval_ms - 1
                self.last_slot[g.key] = slot
                self._evaluate(g, slot)
        if not self.groups:
            return self._cap(1.0)
        now_ms = int(self.clock() * 1000)
        nxt = min(current_slot(g, now_ms) + g.interval_ms for g in self.groups)
        return self._cap(max(0.0, (nxt - now_ms) / 1000))

    def _cap(self, s: float) -> float:
        ttl = self.lease.ttl_ms / 1000 if self.lease is not None else 3.0
        return min(s, ttl / 3)

    def _take_over(self, now_ms: int) -> None:
        self.leader = True
        log.info("%s holds the rules lease: evaluating", self.name)
        self.reload()
        if self.store is not None:
            n = sum(self.store.load_alerts(g, self.states[g.key]) for g in self.groups)
            self.store.forget_alerts(self.groups)
            for g in self.groups:
                self.store.load_returned(g, self.states[g.key])
            self.store.forget_returned(self.groups)
            if n:
                log.info("restored %d alerts from the last evaluator", n)
        self.last_slot = {g.key: current_slot(g, now_ms) - 1 for g in self.groups}
        self._publish()

    def _serve_reload_requests(self) -> None:
        if self.store is None:
            return
        while (req := self.store.next_reload_request()) is not None:
            self.store.answer_reload(req, self.reload())

    def _evaluate(self, g: RuleGroup, t: int) -> None:
        st = self.states[g.key]
        querier, appender = self._io(g.dataset)
        to_send = evaluate_group(g, t, querier, appender, st, self.ctx)
        if any(rs.restoring for rs in st.rules):
            self._restore(g, st, t)
        self.counters[g.key].count(st)
        for r, rs in zip(g.rules, st.rules, strict=True):
            if rs.health == "err":
                log.warning("rule %s of group %s at %d: %s", r.name, g.name, t, rs.last_error)
        if self.store is not None:
            self.store.save_alerts(g, st)
            self.store.save_returned(g, st)
        self._publish()
        if self.notifier is not None and to_send:
            exprs = {r.alert: r.expr for r in g.rules if r.alert}
            self.notifier.send([am_alert(a, exprs.get(dict(a.labels).get("alertname", ""), ""),
                                         g.interval_ms, t, self.ctx.external_labels,
                                         self.ctx.external_url) for a in to_send])  # fmt: skip

    def _end_series(self, dropped: list[tuple[RuleGroup, RuleState]]) -> None:
        """Stale markers for the series of rules a reload removed, as Prometheus writes them
        when it stops a group or drops a rule."""
        now_ms = int(self.clock() * 1000)
        for g, rs in dropped:
            try:
                self._io(g.dataset)[1].append(to_batch([(lb, STALE) for lb in sorted(rs.returned)],
                                                       now_ms - g.query_offset_ms))  # fmt: skip
            except Exception as e:  # noqa: BLE001 - the reload goes on; the series end by lookback
                log.warning("stale markers for removed rules of group %s: %s", g.name, e)

    def _io(self, dataset: str) -> tuple[Querier, Appender]:
        if not dataset or self.for_dataset is None:
            return self.querier, self.appender
        if dataset not in self._by_dataset:
            self._by_dataset[dataset] = self.for_dataset(dataset)
        return self._by_dataset[dataset]

    def _restore(self, g: RuleGroup, st: GroupState, t: int) -> None:
        source = getattr(self._io(g.dataset)[0], "source", None)
        for r, rs in zip(g.rules, st.rules, strict=True):
            if not rs.restoring:
                continue
            if source is None:
                rs.restoring = False
                continue
            try:
                restore_for_state(r, rs, t - g.query_offset_ms, source, self.for_grace_ms,
                                  self.outage_tolerance_ms)  # fmt: skip
            except FiloError as e:
                rs.restoring = False
                log.warning("alert %s: restoring its for state failed: %s", r.alert, e)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                wait = self.tick()
            except Exception as e:  # noqa: BLE001 - Redis or a worker may be briefly away
                log.warning("rules tick failed: %s", e)
                wait = 1.0
            stop.wait(max(0.05, wait))
        if self.lease is not None and self.leader:
            # a graceful stop: no rules are shown until another evaluator (if any) takes over
            if self.store is not None:
                self.store.publish([])
            self.lease.release(self.name)

    def status(self) -> list[dict[str, Any]]:
        return [group_json(g, self.states[g.key]) for g in self.groups]
