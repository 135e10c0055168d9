"""The worker's flush executor: a shard's flush waits once, and spills asked for while one
runs are taken together by the next (one read, one fsync, one trim for all)."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from filodb.node.niceness import lower_this_thread
from filodb.node.runtime import SPILL
from filodb.node.worker import FlushExecutor


class FakeRuntime:
    def __init__(self) -> None:
        self.spills: list[list[tuple[str, int]]] = []
        self.flushes: list[tuple[str, int, int]] = []
        self.release = threading.Event()
        self.began = threading.Event()
        self.second = threading.Event()

    def spill(self, keys: list[tuple[str, int]]) -> int:
        self.spills.append(keys)
        self.began.set()
        if len(self.spills) == 2:
            self.second.set()
        self.release.wait(10)
        return 0

    def flush(self, dataset: str, shard: int, group: int) -> None:
        self.flushes.append((dataset, shard, group))


def test_spills_asked_for_while_one_runs_go_together_and_flushes_are_not_held_back() -> None:
    ex = FlushExecutor()
    rt = ex.rt = FakeRuntime()  # type: ignore[assignment]
    try:
        ex.send("ds", 0, SPILL)
        assert rt.began.wait(10)  # the first spill runs (and is held)
        for shard in (3, 1, 3, 2):
            ex.send("ds", shard, SPILL)
        ex.send("ds", 1, 5)  # a flush of a shard with a spill waiting: its own thread
        ex.send("ds", 1, 6)  # ...waiting once
        done = threading.Event()
        ex._pool.submit(done.set)
        assert done.wait(10)
        assert rt.flushes in ([("ds", 1, 5)], [("ds", 1, 5), ("ds", 1, 6)])
        rt.release.set()
        assert rt.second.wait(10)
    finally:
        rt.release.set()
        ex.shutdown()
    assert rt.spills == [[("ds", 0)], [("ds", 1), ("ds", 2), ("ds", 3)]]


class PriorityRuntime:
    """Notes the niceness of the thread each flush and spill runs on."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        self.done = threading.Barrier(3)

    def _note(self, what: str) -> None:
        self.seen[what] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        self.done.wait(10)

    def spill(self, keys: list[tuple[str, int]]) -> int:
        self._note("spill")
        return 0

    def flush(self, dataset: str, shard: int, group: int) -> None:
        self._note("flush")


def _niceness_of_flush_and_spill(nice: int) -> dict[str, int]:
    """The niceness a flush and a spill of ``FlushExecutor(nice)`` ran at."""
    ex = FlushExecutor(nice=nice)
    rt = ex.rt = PriorityRuntime()  # type: ignore[assignment]
    try:
        ex.send("ds", 0, SPILL)
        ex.send("ds", 0, 3)
        rt.done.wait(10)
    finally:
        ex.shutdown()
    return rt.seen


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="niceness per thread: Linux")
def test_flushes_and_spills_run_below_the_node_s_other_threads() -> None:
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    want = min(19, base + 7)  # the kernel's ceiling holds a process already run low
    assert _niceness_of_flush_and_spill(7) == {"spill": want, "flush": want}
    # the calling thread (as the applier's and the leaf server's) keeps its own
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base


def test_nice_zero_leaves_the_threads_as_they_are() -> None:
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert _niceness_of_flush_and_spill(0) == {"spill": base, "flush": base}


def test_a_niceness_past_the_kernel_s_range_is_refused() -> None:
    with pytest.raises(ValueError, match="not within 0..19"):
        lower_this_thread(20)


def test_an_executor_with_a_niceness_past_the_range_is_refused_before_any_thread() -> None:
    """Checked when the executor is made: an initializer that raised would leave a broken
    pool that runs no flush."""
    with pytest.raises(ValueError, match="not within 0..19"):
        FlushExecutor(nice=20)
