"""The fan-out's bookkeeping: feed events with a fake ``now``, assert the exact actions."""

from __future__ import annotations

import pytest

from filodb.errors import BadInputError, ExecutionError, QueryTimeoutError
from filodb.shards.state import ShardState, ShardStatus
from filodb.tasks.fanout_state import Done, Fail, FanoutResult, FanoutState, SendNode

S = ShardStatus


def _states(*nodes: str, status: ShardStatus = S.ACTIVE) -> dict[int, ShardState]:
    return {i: ShardState("ds", i, status, n) for i, n in enumerate(nodes)}


def _fan(shards: list[int], timeout_s: float = 30.0) -> FanoutState:
    """Shards 0-3 Active on nodes a-d."""
    return FanoutState("ds", shards, _states("a", "b", "c", "d"), timeout_s, resend_after_s=2.0)


def _answer(shard: int, **extra: object) -> dict:
    return {"shard": shard, "ok": True, **extra}


def test_sends_to_active_shards_and_reports_the_others() -> None:
    states = {**_states("a", "b"), 2: ShardState("ds", 2, S.RECOVERY, "c")}
    fan = FanoutState("ds", [0, 1, 2, 3], states, 10.0)
    assert fan.start(100.0) == [SendNode("a", (0,), 10.0), SendNode("b", (1,), 10.0)]
    assert fan.result.missing == {2: "shard 2 of ds is Recovery", 3: "shard 3 of ds is Unassigned"}
    assert fan.reply(_answer(1), ["x"]) == []
    assert fan.reply(_answer(0), []) == [Done(FanoutResult(
        answers={0: (_answer(0), []), 1: (_answer(1), ["x"])},
        missing={2: "shard 2 of ds is Recovery", 3: "shard 3 of ds is Unassigned"}))]  # fmt: skip


def test_nothing_to_send_is_done_at_once() -> None:
    fan = FanoutState("ds", [0], _states("a", status=S.DOWN), 10.0)
    assert fan.start(0.0) == [Done(FanoutResult(missing={0: "shard 0 of ds is Down"}))]


def test_one_request_per_node_with_its_shards() -> None:
    states = {
        **_states("b", "a", "b", "a", "c"), 5: ShardState("ds", 5, S.RECOVERY, "c"),
    }  # fmt: skip
    fan = FanoutState("ds", [4, 3, 2, 1, 0, 5], states, 10.0)
    assert fan.start(0.0) == [SendNode("a", (1, 3), 10.0), SendNode("b", (0, 2), 10.0),
                              SendNode("c", (4,), 10.0)]  # fmt: skip
    assert fan.result.missing == {5: "shard 5 of ds is Recovery"}


def test_resend_timers_double_until_a_receipt() -> None:
    fan = _fan([0, 1])
    assert fan.start(100.0) == [SendNode("a", (0,), 30.0), SendNode("b", (1,), 30.0)]
    assert fan.step(101.0) == []
    assert fan.reply({"shards": [1], "received": True}, []) == []  # 1 was picked up
    assert fan.step(102.0) == []  # not *more* than the 2 s yet
    assert fan.step(102.5) == [SendNode("a", (0,), 27.5)]  # expires with the query's deadline
    assert fan.step(106.0) == []  # now 4 s
    assert fan.step(106.75) == [SendNode("a", (0,), 23.25)]
    assert fan.step(114.0) == []  # now 8 s
    assert fan.reply({"shards": [0], "received": True}, []) == []
    assert fan.step(129.0) == []  # a receipt stops the resends


def test_a_resend_carries_only_the_shards_without_a_receipt() -> None:
    states = _states("a", "a", "a")
    fan = FanoutState("ds", [0, 1, 2], states, 30.0, resend_after_s=2.0)
    assert fan.start(0.0) == [SendNode("a", (0, 1, 2), 30.0)]
    assert fan.reply({"shard": 1, "ok": True}, []) == []  # answered: no receipt needed
    assert fan.step(2.5) == [SendNode("a", (0, 2), 27.5)]
    assert fan.reply({"shards": [0, 2], "received": True}, []) == []
    assert fan.step(10.0) == []


def test_duplicate_answer_of_a_resent_task_is_ignored() -> None:
    fan = _fan([0, 1])
    fan.start(0.0)
    assert fan.step(2.5) == [SendNode("a", (0,), 27.5), SendNode("b", (1,), 27.5)]
    assert fan.reply(_answer(0, n=1), ["first"]) == []
    assert fan.reply(_answer(0, n=2), ["second"]) == []
    assert fan.reply(_answer(1), []) == [Done(fan.result)]
    assert fan.result.answers[0] == (_answer(0, n=1), ["first"])


def test_shard_that_moves_before_its_receipt_is_missing() -> None:
    fan = _fan([0, 1, 2, 3])
    fan.start(0.0)
    fan.reply({"shards": [3], "received": True}, [])
    assert fan.unreceived(1.0) == [0, 1, 2]
    now = {**_states("a", "x", "c", "gone"), 2: ShardState("ds", 2, S.DOWN, "c")}
    del now[0]  # the map lost it: Unassigned
    assert fan.step(1.0, now) == []  # 3 has its receipt: its node answers whatever the map says
    assert fan.result.missing == {0: "shard 0 of ds is Unassigned (moving)",
                                  1: "shard 1 of ds is Active (moving)",  # on another node
                                  2: "shard 2 of ds is Down (moving)"}  # fmt: skip
    assert fan.reply(_answer(3), []) == [Done(fan.result)]


def test_every_shard_moving_ends_the_fanout() -> None:
    fan = _fan([0])
    fan.start(0.0)
    assert fan.step(0.5, _states("a")) == []  # still where it was
    assert fan.step(1.0, {}) == [
        Done(FanoutResult(missing={0: "shard 0 of ds is Unassigned (moving)"}))
    ]


@pytest.mark.parametrize("kind,cls", [("execution", ExecutionError), ("bad_data", BadInputError),
                                      ("timeout", QueryTimeoutError)])  # fmt: skip
def test_errors_of_the_query_abort_it_as_themselves(kind: str, cls: type) -> None:
    fan = _fan([0, 1])
    fan.start(0.0)
    err = {"shard": 0, "ok": False, "error_type": kind, "error": "too many samples"}
    assert fan.reply(err, []) == [Fail(cls, "too many samples")]


def test_other_leaf_failures_make_the_shard_missing() -> None:
    fan = _fan([0, 1])
    fan.start(0.0)
    err = {"shard": 0, "ok": False, "error_type": "unavailable", "error": "shard 0 not active"}
    assert fan.reply(err, []) == []
    assert fan.reply({"shard": 1, "ok": False}, []) == [Done(fan.result)]
    assert fan.result.missing == {0: "shard 0 not active", 1: "shard 1 failed"}


def test_deadline_is_a_timeout_naming_the_late_shards() -> None:
    fan = _fan([0, 1, 2], timeout_s=5.0)
    fan.start(10.0)
    fan.reply(_answer(1), [])
    assert fan.poll_s(10.0) == 0.5 and fan.poll_s(14.8) == pytest.approx(0.2)
    assert fan.poll_s(15.5) == 0.01
    assert fan.unreceived(15.0) == []  # past the deadline the map is not wanted
    assert fan.step(15.0) == [Fail(QueryTimeoutError, "query timed out in expression evaluation "
                                                      "(shards 0, 2 of ds did not answer)")]  # fmt: skip


def test_a_node_answers_its_shards_at_once() -> None:
    fan = FanoutState("ds", [0, 1, 2], _states("a", "a", "b"), 30.0, resend_after_s=2.0)
    assert fan.start(0.0) == [SendNode("a", (0, 1), 30.0), SendNode("b", (2,), 30.0)]
    both = {"shard": 0, "shards": [0, 1], "ok": True}
    assert fan.reply(both, ["ab"]) == []
    err = {"shard": 2, "shards": [2], "ok": False, "error_type": "internal", "error": "boom"}
    assert fan.reply(err, []) == [Done(FanoutResult(answers={0: (both, ["ab"])},
                                                    missing={2: "boom"}))]  # fmt: skip


def test_an_answer_overlapping_one_taken_is_dropped_and_its_waiting_shards_sent_again() -> None:
    fan = FanoutState("ds", [0, 1], _states("a", "a"), 30.0, resend_after_s=2.0)
    fan.start(0.0)  # the first request (0, 1) is slow to be popped: no receipt
    assert fan.step(2.5) == [SendNode("a", (0, 1), 27.5)]
    assert fan.reply({"shards": [0, 1], "received": True}, []) == []
    assert fan.reply({"shards": [0], "shard": 0, "ok": True}, ["0"]) == []  # (say) a split
    assert fan.reply({"shards": [0, 1], "shard": 0, "ok": True}, ["01"]) == []  # overlaps
    assert fan.result.answers == {0: ({"shards": [0], "shard": 0, "ok": True}, ["0"])}
    assert fan.unreceived(3.0) == [1]
    assert fan.step(7.0) == [SendNode("a", (1,), 23.0)]  # after the doubled timer (4 s)
    assert fan.reply({"shards": [1], "shard": 1, "ok": True}, ["1"]) == [Done(fan.result)]


def test_a_broken_connection_sends_its_nodes_waiting_shards_again_at_once() -> None:
    states = _states("a", "a", "b")
    fan = FanoutState("ds", [0, 1, 2], states, 30.0, resend_after_s=2.0)
    assert fan.start(100.0) == [SendNode("a", (0, 1), 30.0), SendNode("b", (2,), 30.0)]
    assert fan.reply({"shards": [0, 1], "received": True}, []) == []
    assert fan.waiting_nodes() == {"a", "b"}
    assert fan.lost("a", 101.0) == [SendNode("a", (0, 1), 29.0)]  # its receipt counts no more
    assert fan.step(102.5) == [SendNode("b", (2,), 27.5)]  # b's own timer; a's restarted at 101
    assert fan.step(103.5) == [SendNode("a", (0, 1), 26.5)]
    assert fan.reply(_answer(2), []) == [] and fan.waiting_nodes() == {"a"}
    assert fan.lost("b", 104.0) == []  # b owes nothing
    assert fan.lost("a", 130.0) == []  # past the deadline: step() times out
    assert isinstance(fan.step(130.0)[0], Fail)
