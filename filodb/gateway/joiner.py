"""A door's concurrent writes to the log joined: one shard split, one record a shard, one append.

A write to the log costs ~450 us a call whatever the body's size against ~0.15 us a line
(``docs/architecture.md``, "Data path"): with several senders, bodies wait for the process's
CPU turn while one is written, so they are written together. Each request thread queues its
batch and takes the writer's turn; the first to get it makes the records of every batch queued
then and queues them in the log
(:meth:`~filodb.gateway.router.IngestRouter.write_many_begin`, the log's ``append_begin``),
leaves the turn and waits for the append; the others find theirs taken and wait for that
group's append (a group commit at the door, as the log's own one at the append). The turn
keeps the groups' order in the log, and is not held over the log's round trip: the next
group's records are made while this one's travel, and the log's group commit sends them in
its next call. No thread waits for a group to fill: a body alone is written at once.

Each request keeps its own answer. The door checks a body (late samples, the dataset's
limits) before its batch is queued, and counts and notes it after; a failed group write fails
every request in it with the same error (the log's append is one call: a request is not told
204 for samples that did not reach the log). Only batches a door's series-key cache resolved
are joined (:func:`~filodb.model.joined.joinable`); others are written at once, alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TypeVar

from filodb.gateway.router import IngestRouter
from filodb.model.batch import SampleBatch
from filodb.model.dataset import Dataset

T = TypeVar("T")
# work that yields where it would wait, returning T; it yields QUEUED where it has only queued
# a write (see WriteJoiner.write_steps), None where it waits for the log
Steps = Generator[str | None, None, T]
QUEUED = "queued"


def run_steps(steps: Steps[T]) -> T:
    """Run ``steps`` through (each yield passed at once); its result."""
    while True:
        try:
            next(steps)
        except StopIteration as e:
            return e.value


@dataclass(eq=False)
class _Queued:
    dataset: str
    batch: SampleBatch
    desc: Dataset | None
    done: bool = False
    out: dict[int, int] | None = None
    error: BaseException | None = None
    written: threading.Event | None = None  # set by the leader that took it, when stored


class WriteJoiner:
    """Writes batches through ``router``, the concurrent ones joined; thread-safe."""

    def __init__(self, router: IngestRouter) -> None:
        self.router = router
        self._lock = threading.Lock()  # guards _queued
        self._turn = threading.Lock()  # one group's records made and queued at a time
        self._queued: list[_Queued] = []
        self.groups = 0  # group writes, and batches written in them (for tests and metrics)
        self.joined = 0

    def write(self, dataset: str, batch: SampleBatch, desc: Dataset | None = None
              ) -> dict[int, int]:  # fmt: skip
        """Append ``batch`` to ``dataset``'s log, with the batches queued meanwhile; samples
        per shard. Durable when it returns; raises what the append raised."""
        return run_steps(self.write_steps(dataset, batch, desc))

    def write_steps(self, dataset: str, batch: SampleBatch, desc: Dataset | None = None
                    ) -> Steps[dict[int, int]]:  # fmt: skip
        """:meth:`write` in steps: it yields :data:`QUEUED` once the batch is queued here,
        and None once its records are queued in the log (no lock held), before it waits for
        the append. A caller with several writes (the web server's ingestion loop, one
        thread) takes each to the first yield, then each to the second (the first of them
        makes one set of records of every batch queued: a record a shard for them all), then
        finishes them (the first to finish sends every one's records in one append, unless
        the caller sent it: :meth:`~filodb.ingest.base.Log.send_appends`)."""
        from filodb.model.joined import joinable  # numba (the series-key cache): doors only

        if not len(batch) or not joinable(batch):
            return self.router.write(dataset, batch, desc)
        me = _Queued(dataset, batch, desc)
        with self._lock:
            self._queued.append(me)
        yield QUEUED
        group: list[_Queued] = []
        with self._turn:
            if me.written is None:  # no leader took it: lead the queue
                with self._lock:
                    group, self._queued = self._queued, []
                written = threading.Event()
                for q in group:
                    q.written = written
                waits = self._begin(group)
        yield None  # the records are queued in the log
        if group:
            self._finish(group, waits)
        else:
            assert me.written is not None
            me.written.wait()
        if me.error is not None:
            raise me.error
        assert me.out is not None
        return me.out

    def _begin(self, group: list[_Queued]) -> list[tuple[list[_Queued], Callable[[], object]]]:
        """Make ``group``'s records and queue them in the log (one router call a dataset), in
        the turn: their place in the log follows every group before. Returns what to wait
        for; an entry that failed already has its error."""
        by: dict[tuple[str, int], list[_Queued]] = {}
        for q in group:
            by.setdefault((q.dataset, id(q.desc)), []).append(q)
        self.groups += 1
        self.joined += len(group)
        waits = []
        for (dataset, _), qs in by.items():
            try:
                outs, wait = self.router.write_many_begin(dataset, [q.batch for q in qs],
                                                          qs[0].desc)  # fmt: skip
                for q, out in zip(qs, outs, strict=True):
                    q.out = out
                waits.append((qs, wait))
            except BaseException as e:  # noqa: BLE001 - each waiting request raises it
                for q in qs:
                    q.error = e
        return waits

    def _finish(self, group: list[_Queued],
                waits: list[tuple[list[_Queued], Callable[[], object]]]) -> None:  # fmt: skip
        """Wait for ``group``'s appends, out of the turn (the next group's records are made
        meanwhile); every entry ends done, with its samples per shard or the error, and the
        group's requests are woken."""
        try:
            for qs, wait in waits:
                try:
                    wait()
                except BaseException as e:  # noqa: BLE001 - each waiting request raises it
                    for q in qs:
                        q.error = e
        finally:
            for q in group:
                q.done = True
            assert group[0].written is not None
            group[0].written.set()
