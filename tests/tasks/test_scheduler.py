"""The leaf server's queue: exact order of pieces by estimated cost, aging, the heavy lane and
borrowing."""

from __future__ import annotations

from filodb.tasks.scheduler import CostModel, FairQueue, cost_key, cost_units


def _drain(q: FairQueue[str]) -> list[str]:
    out = []
    while (got := q.pop()) is not None:
        out.append(got.item)
        q.done(got)
    return out


def _popped(q: FairQueue[str]) -> tuple[str, bool] | None:
    got = q.pop()
    return None if got is None else (got.item, got.heavy)


def test_cheap_pieces_overtake_heavy_ones_queued_before_them() -> None:
    q: FairQueue[str] = FairQueue(slots=4, aging=4.0, heavy_s=0.02)
    q.push("heavy-1", 0.5, now=0.0)
    q.push("heavy-2", 0.5, now=0.0)
    q.push("cheap-1", 0.001, now=0.1)
    q.push("cheap-2", 0.002, now=0.1)
    assert _drain(q) == ["cheap-1", "cheap-2", "heavy-1", "heavy-2"]


def test_aging_a_heavy_piece_is_not_overtaken_by_work_arriving_long_after_it() -> None:
    q: FairQueue[str] = FairQueue(slots=4, aging=4.0, heavy_s=0.02)
    q.push("heavy", 0.5, now=0.0)  # virtual deadline 2.0
    q.push("cheap-early", 0.01, now=1.0)  # 1.04: overtakes
    q.push("cheap-late", 0.01, now=1.99)  # 2.03: after the heavy piece
    q.push("heavier", 1.0, now=0.0)  # 4.0
    assert _drain(q) == ["cheap-early", "heavy", "cheap-late", "heavier"]


def test_one_runner_is_kept_for_cheap_work() -> None:
    q: FairQueue[str] = FairQueue(slots=3, aging=4.0, heavy_s=0.02)
    for i in range(4):
        q.push(f"heavy-{i}", 0.5, now=0.0)
    a, b = q.pop(), q.pop()
    assert a is not None and b is not None
    assert [(a.item, a.heavy), (b.item, b.heavy)] == [("heavy-0", True), ("heavy-1", True)]
    assert q.pop() is None  # two of three runners busy with heavy work: the third waits
    q.push("cheap", 0.001, now=0.5)
    c = q.pop()
    assert c is not None and (c.item, c.heavy) == ("cheap", False)
    assert (q.running_cheap, q.running_heavy, q.queued(True), q.queued(False)) == (1, 2, 2, 0)
    q.done(c)
    q.done(a)  # a heavy piece finished: the next may run
    assert _popped(q) == ("heavy-2", True)
    assert q.pop() is None and len(q) == 1


def test_a_single_runner_runs_heavy_work_too() -> None:
    q: FairQueue[str] = FairQueue(slots=1)
    q.push("heavy", 1.0, now=0.0)
    assert _popped(q) == ("heavy", True)


def test_the_cheap_runner_borrows_a_heavy_piece_far_cheaper_than_those_running() -> None:
    # a dashboard query's pieces estimated just over heavy_s went to the heavy lane and waited
    # seconds for a heavy piece to finish (6.4 s against 12 ms idle)
    q: FairQueue[str] = FairQueue(slots=2, aging=4.0, heavy_s=0.002, borrow_ratio=16.0)
    q.push("heavy-0", 1.0, now=0.0)
    q.push("heavy-1", 1.0, now=0.0)
    running = q.pop()
    assert running is not None and running.heavy
    assert q.pop() is None  # the other heavy piece waits for the heavy runner
    q.push("medium", 0.07, now=0.1)  # more than 1/16 of the running piece's second
    assert q.pop() is None  # it waits too (first in its lane: its deadline is the earliest)
    assert (q.queued(True), q.running_cheap) == (2, 0)


def test_a_borrowed_piece_runs_on_the_cheap_runner_and_the_bound_follows_what_runs() -> None:
    q: FairQueue[str] = FairQueue(slots=2, aging=4.0, heavy_s=0.002, borrow_ratio=16.0)
    q.push("heavy-0", 1.0, now=0.0)
    q.push("heavy-1", 1.0, now=0.0)
    heavy = q.pop()
    assert heavy is not None and heavy.item == "heavy-0"
    q.push("just-heavy", 0.0025, now=0.1)  # over heavy_s, 1/400 of the running piece
    borrowed = q.pop()
    assert borrowed is not None and (borrowed.item, borrowed.heavy) == ("just-heavy", False)
    assert (q.running_cheap, q.running_heavy) == (1, 1)
    q.push("cheap", 0.001, now=0.2)  # the cheap lane waits for the borrowed piece's runner
    q.done(borrowed)
    cheap = q.pop()
    assert cheap is not None and (cheap.item, cheap.heavy) == ("cheap", False)
    q.done(cheap)
    q.push("medium", 0.05, now=0.3)  # 1/20 of the running heavy piece: borrowed as well
    assert _popped(q) == ("medium", False)
    q.done(heavy)  # nothing heavy runs: the heavy lane's own runner takes the next
    assert _popped(q) == ("heavy-1", True)
    assert q.pop() is None and len(q) == 0


def test_costs_are_learned_per_query_shape_and_scale_with_steps_and_shards() -> None:
    p = {"query": "sum(rate(x[5m]))", "start": 0, "end": 3_600_000, "step": 60_000}
    k = cost_key("ds", "eval", p)
    assert cost_units("eval", p, 1) == 61 and cost_units("eval", p, 4) == 244
    assert cost_units("eval", {**p, "end": 0}, 2) == 2  # an instant eval: one step
    assert cost_units("select", {"start": 0, "end": 600_000}, 1) == 11  # minutes of range
    # the times move with a dashboard's refresh; the shape stays
    assert cost_key("ds", "eval", {**p, "start": 15_000, "end": 3_615_000}) == k
    assert cost_key("ds", "eval", {**p, "query": "x"}) != k
    m = CostModel(prior_s_per_unit=1e-5)
    assert m.estimate(k, 100) == 1e-5 * 100
    m.observe(k, 61, 0.061)
    assert m.estimate(k, 122) == 0.122
    m.observe(k, 61, 0.0)  # a moving average: one fast run does not reset it
    assert abs(m.estimate(k, 1) - 0.7e-3) < 1e-12
