"""The node's background threads (flushes, log spills) at a lower CPU priority than its
others: on a machine whose cores the node shares with the web tier and Redis, what a sender
waits for (the door, the log's append, the applier behind queries) runs first, and chunk
encoding, column-store writes and spills take the CPU left over (RocksDB lowers its
compaction threads so). Linux sets a niceness per thread (``setpriority`` on its id)."""

from __future__ import annotations

import logging
import os
import sys
import threading

log = logging.getLogger("filodb.node")

MAX_NICE = 19


def check_nice(nice: int) -> int:
    """``nice``, or ValueError when it is not within 0..19 (a thread pool's initializer that
    raises breaks the pool: its callers check first)."""
    if not 0 <= nice <= MAX_NICE:
        raise ValueError(f"niceness {nice} is not within 0..{MAX_NICE}")
    return nice


def lower_this_thread(nice: int) -> bool:
    """Add ``nice`` (0..19) to the calling thread's niceness; False where the platform sets it
    per process only (nothing is changed then), ``nice`` is 0, or the system refuses (raising
    a niceness needs no privilege, but a seccomp profile may forbid the call)."""
    check_nice(nice)
    if not nice or not sys.platform.startswith("linux"):
        return False
    tid = threading.get_native_id()
    try:
        now = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(MAX_NICE, now + nice))
    except OSError as e:  # e.g. a seccomp profile refusing it: the thread runs as it was
        log.warning("background thread priority not lowered: %s", e)
        return False
    return True
