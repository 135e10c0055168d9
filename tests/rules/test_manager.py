"""The evaluating process's core on a real Redis, with an injected clock: group slots, the
rules lease and its handover, alert state carried across it, reloads (good and refused)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import redis

from filodb.errors import NotFoundError
from filodb.model.batch import SampleBatch
from filodb.query.engine import Engine
from filodb.query.memsource import MemorySource
from filodb.rules.manager import RuleManager, current_slot, group_offset_ms
from filodb.rules.state import LEASE_KEY, RuleStateStore
from filodb.shards.nodes import Lease
from filodb.testing.wait import wait_for

RULES = """
groups:
  - name: g
    interval: 1m
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: Down
        expr: up == 0
        for: 10m
        annotations: {summary: "{{ $labels.instance }} down"}
"""
T0 = 1_700_000_000.0


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Sink:
    def __init__(self, source: MemorySource) -> None:
        self.source, self.batches = source, []  # type: ignore[var-annotated]

    def append(self, batch: SampleBatch) -> None:
        self.batches.append(batch)
        for i, lb in enumerate(batch.series):
            rows = batch.sidx == i
            self.source.add(lb, batch.ts[rows], batch.vals[rows])


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    p = tmp_path / "rules.yml"
    p.write_text(RULES)
    return p


@pytest.fixture
def source() -> MemorySource:
    src = MemorySource()
    ts = np.arange(int(T0 - 3600) * 1000, int(T0 + 7200) * 1000, 15_000, dtype=np.int64)
    src.add((("__name__", "up"), ("instance", "a"), ("job", "api")), ts, np.zeros(len(ts)))
    src.add((("__name__", "up"), ("instance", "b"), ("job", "api")), ts, np.ones(len(ts)))
    return src


def manager(name: str, rules_file: Path, source: MemorySource, url: str, clock: Clock,
            ttl: float = 5.0) -> tuple[RuleManager, Sink]:  # fmt: skip
    store = RuleStateStore(url)
    sink = Sink(source)
    mgr = RuleManager([str(rules_file)], Engine(source), sink, store=store,
                      lease=Lease(store.r, LEASE_KEY, ttl), name=name, clock=clock)  # fmt: skip
    mgr.load()
    return mgr, sink


def test_groups_are_evaluated_at_their_slots(
    rules_file: Path, source: MemorySource, redis_url: str
) -> None:
    clock = Clock(T0)
    mgr, sink = manager("a", rules_file, source, redis_url, clock)
    g = mgr.groups[0]
    off = group_offset_ms(g)
    assert 0 <= off < 60_000 and current_slot(g, int(T0 * 1000)) % 60_000 == off
    evals = []
    for step in range(0, 300, 7):  # ticks every 7 s over 5 minutes
        clock.t = T0 + step
        mgr.tick()
        evals.append(mgr.states[g.key].last_eval_ms)
    slots = sorted(set(evals))
    first, last = current_slot(g, int(T0 * 1000)), current_slot(g, int(clock.t * 1000))
    assert slots == list(range(first, last + 1, 60_000))
    # each slot once: one batch per rule with output per slot (recording + ALERTS), but for the
    # first: the alerting rule, with no state in Redis, writes no ALERTS until its for state is
    # restored from ALERTS_FOR_STATE (as Prometheus at start)
    assert len(sink.batches) == 2 * len(slots) - 1
    rec = [b for b in sink.batches if b.series[0][0] == ("__name__", "job:up:sum")]
    assert [int(b.ts[0]) for b in rec] == slots and rec[0].vals.tolist() == [1.0]


def test_one_evaluator_and_handover_keeps_alert_state(rules_file: Path, source: MemorySource,
                                                       redis_url: str) -> None:  # fmt: skip
    clock = Clock(T0)
    a, sink_a = manager("a", rules_file, source, redis_url, clock, ttl=0.5)
    b, sink_b = manager("b", rules_file, source, redis_url, clock, ttl=0.5)
    a.tick()
    b.tick()
    assert (a.leader, b.leader) == (True, False) and sink_b.batches == []
    key = a.groups[0].key
    (alert,) = a.states[key].rules[1].alerts.values()
    assert alert.state == "pending"
    first_active = alert.active_at
    # a stops renewing (killed): b takes the lease once it expires, and carries the alert on
    clock.t = T0 + 300
    wait_for(lambda: b.tick() is not None and b.leader, 5, "b takes the rules lease over")
    (carried,) = b.states[key].rules[1].alerts.values()
    assert (carried.state, carried.active_at) == ("pending", first_active)
    clock.t = T0 + 660
    b.tick()
    (fired,) = b.states[key].rules[1].alerts.values()
    assert fired.state == "firing" and fired.active_at == first_active
    a.tick()  # a is back: it does not hold the lease, so it does not evaluate
    assert not a.leader
    groups = RuleStateStore(redis_url).groups()
    rule = groups[0]["rules"][1]
    assert (rule["state"], rule["health"], rule["alerts"][0]["state"]) == ("firing", "ok", "firing")
    assert rule["alerts"][0]["annotations"] == {"summary": "a down"}


def test_reload_refuses_a_bad_file_and_keeps_the_old_rules(rules_file: Path, source: MemorySource,
                                                            redis_url: str) -> None:  # fmt: skip
    clock = Clock(T0)
    mgr, _ = manager("a", rules_file, source, redis_url, clock)
    mgr.tick()
    store = RuleStateStore(redis_url)
    rules_file.write_text(RULES.replace("sum by (job) (up)", "sum by (job) (up"))
    assert "could not parse expression" in mgr.reload()
    assert [r.name for r in mgr.groups[0].rules] == ["job:up:sum", "Down"]
    # the same through Redis, as POST /-/reload asks: the web side gets the reason
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            mgr.tick()
            stop.wait(0.05)

    t = threading.Thread(target=serve)
    t.start()
    try:
        with pytest.raises(Exception, match='group "g": rule 1 .*could not parse expression'):
            store.request_reload(timeout_s=5)
        rules_file.write_text(RULES.replace("job:up:sum", "job:up:total"))
        store.request_reload(timeout_s=5)
    finally:
        stop.set()
        t.join()
    assert [r.name for r in mgr.groups[0].rules] == ["job:up:total", "Down"]
    # the series of the rule that is gone ends at once (a stale marker), as in Prometheus
    eng = Engine(source)
    assert eng.instant("job:up:sum", int(T0 * 1000) + 1000).series == []
    slot = current_slot(mgr.groups[0], int(T0 * 1000))
    assert slot < int(T0 * 1000) and eng.instant("job:up:sum", slot).series  # it was there
    assert len(mgr.states[mgr.groups[0].key].rules[1].alerts) == 1
    assert [r["name"] for r in store.groups()[0]["rules"]] == ["job:up:total", "Down"]


def test_reload_without_evaluator_is_unavailable(redis_url: str) -> None:
    redis.Redis.from_url(redis_url).delete(LEASE_KEY)
    with pytest.raises(NotFoundError, match="no rule evaluator is running"):
        RuleStateStore(redis_url).request_reload(timeout_s=1)


def test_graceful_stop_releases_the_lease_and_clears_the_status(rules_file: Path, source: MemorySource,
                                                                 redis_url: str) -> None:  # fmt: skip
    clock = Clock(T0)
    a, _ = manager("a", rules_file, source, redis_url, clock)
    b, _ = manager("b", rules_file, source, redis_url, clock)
    stop = threading.Event()
    stop.set()  # run() ticks nothing more and stops as a SIGTERM would make it
    a.tick()
    assert a.leader and RuleStateStore(redis_url).groups()
    a.run(stop)
    assert (
        RuleStateStore(redis_url).groups() == [] and RuleStateStore(redis_url).evaluator() is None
    )
    b.tick()  # the standby takes over at once, no TTL to wait for
    assert b.leader and [g["name"] for g in RuleStateStore(redis_url).groups()] == ["g"]


STALE_RULES = """
groups:
  - name: s
    interval: 1m
    rules:
      - record: up:positive
        expr: up > 0
"""


def test_stale_markers_before_and_after_a_failover(tmp_path: Path, redis_url: str) -> None:
    """A recorded series that vanishes is ended by a stale marker: by the same holder, and by
    a new holder after a failover (the set of series the rule wrote is saved in Redis)."""
    f = tmp_path / "stale.yml"
    f.write_text(STALE_RULES)
    redis.Redis.from_url(redis_url).delete("filodb:rules:returned")
    src = MemorySource()
    clock = Clock(T0)
    a, _ = manager("a", f, src, redis_url, clock, ttl=0.5)
    b, _ = manager("b", f, src, redis_url, clock, ttl=0.5)
    s0 = current_slot(a.groups[0], int(T0 * 1000))
    ts = np.arange(s0 - 600_000, s0 + 600_000, 15_000, dtype=np.int64)
    # instance x drops to 0 after s0 + 30 s, instance y after s0 + 90 s
    for inst, end in (("x", s0 + 30_000), ("y", s0 + 90_000)):
        src.add((("__name__", "up"), ("instance", inst)), ts, (ts <= end).astype(np.float64))
    eng = Engine(src)

    def recorded(t_ms: int) -> set[str]:
        res = eng.instant("up:positive", t_ms)
        return {dict(lb)["instance"] for lb, _, _ in res.series}

    a.tick()
    b.tick()
    assert a.leader and not b.leader and recorded(s0 + 1000) == {"x", "y"}
    clock.t = (s0 + 60_000) / 1000
    a.tick()  # x vanished: the holder ends it at once, not 5 minutes later
    assert recorded(s0 + 61_000) == {"y"}
    # a dies; b takes over at the next slot, where y has vanished too
    clock.t = (s0 + 120_000) / 1000
    wait_for(lambda: b.tick() is not None and b.leader, 5, "b takes the rules lease over")
    assert b.states[b.groups[0].key].last_eval_ms == s0 + 120_000
    assert recorded(s0 + 121_000) == set()  # without b's stale marker y would still show


RESTORE_RULES = """
groups:
  - name: r
    interval: 1m
    rules:
      - alert: Down30
        expr: up == 0
        for: 30m
      - alert: Down12
        expr: up == 0
        for: 12m
      - alert: Down5
        expr: up == 0
        for: 5m
"""


def test_for_state_restored_from_alerts_for_state_when_redis_lost_it(
    tmp_path: Path, source: MemorySource, redis_url: str
) -> None:
    """Redis restarted empty: the new evaluator restores each alert's activeAt from the
    ALERTS_FOR_STATE series the last one wrote, as Prometheus does at start (grace period
    10 m, outage tolerance 1 h)."""
    f = tmp_path / "restore.yml"
    f.write_text(RESTORE_RULES)
    r = redis.Redis.from_url(redis_url)
    r.delete("filodb:rules:alerts", LEASE_KEY)
    clock = Clock(T0)
    a, sink_a = manager("a", f, source, redis_url, clock)
    g = a.groups[0]
    s0 = current_slot(g, int(T0 * 1000))
    for k in range(5):  # a evaluates s0 … s0 + 4 m
        clock.t = (s0 + k * 60_000) / 1000
        a.tick()
    # no ALERTS at a's first evaluation (nothing to restore from yet), then every minute
    assert min(int(b.ts[0]) for b in sink_a.batches) == s0 + 60_000
    assert {a_.active_at for rs in a.states[g.key].rules for a_ in rs.alerts.values()} == {s0}
    # a dies and Redis comes back empty; b takes over at s0 + 5 m
    r.delete("filodb:rules:alerts", LEASE_KEY)
    b, sink_b = manager("b", f, source, redis_url, clock)
    clock.t = (s0 + 300_000) / 1000
    b.tick()
    assert b.leader and sink_b.batches == []  # nothing written until restored
    S, tb = s0 // 1000, (s0 + 300_000) // 1000
    down = (s0 + 240_000) // 1000
    active = {rs_alerts.alert: next(iter(rs.alerts.values())).active_at
              for rs_alerts, rs in zip(g.rules, b.states[g.key].rules, strict=True)}  # fmt: skip
    assert active == {
        "Down30": (S + (tb - down)) * 1000,  # 26 m left > grace: the outage is added
        "Down12": (tb + 600 - 720) * 1000,  # 8 m left < grace: fires a grace period from now
        "Down5": s0 + 300_000,  # for < grace: not restored, waits its 5 m
    }
    clock.t = (s0 + 360_000) / 1000
    b.tick()
    got = {(dict(lb)["alertname"], float(v)) for bt in sink_b.batches
           for lb, v in zip(bt.series, bt.vals, strict=True) if lb[0][1] == "ALERTS_FOR_STATE"}  # fmt: skip
    assert got == {
        ("Down30", S + tb - down),
        ("Down12", tb - 120.0),
        ("Down5", (s0 + 300_000) / 1000),
    }


def test_rule_files_named_for_a_dataset_read_and_write_it(
    rules_file: Path, source: MemorySource, redis_url: str
) -> None:
    """``<dataset>=<glob>``: the group evaluates against that dataset and writes there; a
    plain glob keeps the default dataset. The same file for two datasets is two groups."""
    other = MemorySource()
    ts = np.arange(int(T0 - 3600) * 1000, int(T0 + 3600) * 1000, 15_000, dtype=np.int64)
    for inst in "xyz":
        other.add((("__name__", "up"), ("instance", inst), ("job", "edge")), ts, np.ones(len(ts)))
    store = RuleStateStore(redis_url)
    sink, other_sink = Sink(source), Sink(other)
    asked: list[str] = []

    def for_dataset(ds: str) -> tuple[Engine, Sink]:
        asked.append(ds)
        return Engine(other), other_sink

    mgr = RuleManager([str(rules_file), f"edge={rules_file}"], Engine(source), sink, store=store,
                      lease=Lease(store.r, LEASE_KEY, 5.0), name="a", clock=Clock(T0),
                      for_dataset=for_dataset)  # fmt: skip
    mgr.load()
    assert [(g.dataset, g.key) for g in mgr.groups] == [("", f"{rules_file};g"),
                                                        ("edge", f"edge={rules_file};g")]  # fmt: skip
    mgr.tick()
    mgr.tick()
    assert asked == ["edge"]  # one querier and appender per dataset, kept

    def recorded(s: Sink) -> dict[str, float]:
        return {dict(b.series[0])["job"]: float(b.vals[0]) for b in s.batches
                if dict(b.series[0])["__name__"] == "job:up:sum"}  # fmt: skip

    assert recorded(sink) == {"api": 1.0} and recorded(other_sink) == {"edge": 3.0}
    assert Engine(other).instant("job:up:sum", int(T0 * 1000)).series[0][2][-1] == 3.0
