"""How much the embedded log holds, and the doors' wait while it holds too much.

The Redis Streams log keeps every record until a flush trims it, and a door appends as fast
as its senders send while the worker applies (then flushes) at its own pace: in a 6 h backfill
of 100 k series the doors acknowledged 5.6 M samples/s while the worker applied 2 M, and
Redis held ~300 MB at its peak, about every record of the run (``docs/architecture.md``,
"What a process holds besides its series"). ``log_max_mb`` bounds it: an append waits while the log holds
more than that, and after ``log_full_wait_s`` is refused with :class:`LogFullError` (HTTP 503
with ``Retry-After``, which Prometheus's remote write retries; the TCP doors retry it as a
log outage), having appended nothing.

What the log holds is estimated per partition as its length (entries, which the append script
returns with each append's offsets, and ``XLEN`` while waiting) times the mean size of the
records this process appended to it: no scan of the streams, and a running total kept as
the lengths change, so an append that is under the cap costs one comparison. A process
counts the partitions it appends to (a web process and a gateway writing different datasets
each see their own), so the cap bounds what a door is behind, not Redis as a whole.

A waiting append also tells the nodes (``signal``, at most every ``SIGNAL_S``): a node flushes
early for the log's size only past its own ``log_backlog_mb``, so a cluster of N nodes may keep
N of those below every node's threshold, more than the cap, and writes would wait for the
hourly flushes. Told that writers wait, each node flushes the shards keeping the most
(:meth:`filodb.node.runtime.NodeRuntime.log_flushes`), whatever its own budget says.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence

from filodb.errors import LogFullError
from filodb.ingest.base import Partition

REFRESH_S = 0.05  # while over the cap: the partitions' lengths asked again this often
SIGNAL_S = 0.5  # while over the cap: the nodes told again this often


class LogRoom:
    """The log's estimated bytes and the appends' wait for room (thread-safe).

    ``lengths_of`` asks the log for the current length of partitions (one round trip);
    ``signal`` tells the nodes that writers wait (see the module docstring)."""

    def __init__(self, max_bytes: int, wait_s: float,
                 lengths_of: Callable[[Sequence[Partition]], list[int]],
                 signal: Callable[[], None] | None = None) -> None:  # fmt: skip
        self.max_bytes = max(0, int(max_bytes))
        self.wait_s = max(0.0, float(wait_s))
        self._lengths_of = lengths_of
        self._signal = signal
        self._signalled = float("-inf")
        self._lock = threading.Lock()
        self._len: dict[Partition, int] = {}  # entries, as last seen
        self._mean: dict[Partition, float] = {}  # bytes a record this process appended
        self._total = 0.0  # sum of len x mean
        self._refresh = threading.Lock()  # one waiting thread asks Redis at a time
        self._asked = 0.0
        self.waits = 0  # appends that waited, and those refused (for metrics and tests)
        self.refused = 0

    @property
    def held_bytes(self) -> int:
        return int(self._total)

    def appended(self, rows: Iterable[tuple[Partition, int, int, int]]) -> None:
        """After an append: per partition (partition, records, their bytes, new length)."""
        with self._lock:
            for part, count, nbytes, n in rows:
                mean = nbytes / count
                old = self._mean.get(part)
                if old is not None:
                    mean = 0.8 * old + 0.2 * mean  # smoothed: record sizes vary body to body
                self._set(part, n, mean)

    def _set(self, part: Partition, n: int, mean: float) -> None:
        self._total += n * mean - self._len.get(part, 0) * self._mean.get(part, 0.0)
        self._len[part] = n
        self._mean[part] = mean

    def admit(self) -> None:
        """Return when the log holds at most ``max_bytes`` (at once when it does, or when
        there is no cap); raise :class:`LogFullError` after waiting ``wait_s`` in vain."""
        if not self.max_bytes or self._total <= self.max_bytes:
            return
        deadline = time.monotonic() + self.wait_s
        self.waits += 1
        while True:
            self._ask()
            if self._total <= self.max_bytes:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                self.refused += 1
                raise LogFullError(
                    f"the ingestion log holds {self._total / 2**20:.1f} MB not yet flushed, "
                    f"more than log_max_mb ({self.max_bytes / 2**20:g} MB): the workers are "
                    "behind; retry later", retry_after_s=1.0)  # fmt: skip
            time.sleep(min(REFRESH_S, left))

    def _ask(self) -> None:
        """The lengths of every partition seen, from the log (at most every ``REFRESH_S``,
        by one thread; the others use what it found), after telling the nodes that writers
        wait (at most every ``SIGNAL_S``)."""
        if not self._refresh.acquire(blocking=False):
            return
        try:
            now = time.monotonic()
            if self._signal is not None and now - self._signalled >= SIGNAL_S:
                self._signal()
                self._signalled = now
            if now - self._asked < REFRESH_S:
                return
            with self._lock:
                parts = list(self._len)
            got = self._lengths_of(parts)
            self._asked = time.monotonic()
            with self._lock:
                for part, n in zip(parts, got, strict=True):
                    self._set(part, int(n), self._mean.get(part, 0.0))
        finally:
            self._refresh.release()
