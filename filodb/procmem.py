"""Process memory: give freed memory back to the system.

glibc's malloc serves allocations above its mmap threshold with their own mapping, unmapped
when freed, and smaller ones from its heaps, which keep what is freed for reuse. The threshold
moves up (to 32 MB) each time a large block is freed, so after a first query the numpy
temporaries of later ones (hundreds of MB across a shard's series) come from the heaps and
stay resident. Two ways back were measured on the same queries (55 k series x 120 samples,
16 shards, 14 queries; whole tree in bytes a series; one run each, shared machine):

- glibc as it is (and without this session's other savings): query over every series
  425 ms, ``sum by (job) (rate(...))`` 142 ms; 25.8 k after the queries (the worker 17.5 k);
- a fixed 256 kB mmap threshold (every larger block its own mapping): 563-603 ms and
  197-226 ms (each query pays the page faults of fresh memory); 14.2-14.9 k;
- :func:`start_trimmer` (``malloc_trim`` every 5 s, which returns the free pages inside the
  heaps): 410 ms and 118 ms (a burst of queries reuses warm memory); 21.2 k right after the
  queries, 15.0 k once the trimmer ran. Kept: ``filodb worker`` and ``filodb web`` start it.

The trimmer also trims within half a second of busy work (:class:`TrimPace`): a tick of
``BUSY_TICK_S`` in which the process used ``BUSY_CPU_SHARE`` of a core or more trims, and so
does the quiet tick after it (what the busy work's end freed), so a burst of writes or a large
query leaves its free pages resident for under a second, not up to five. An idle process
(an idle node polls its shards: ~1 % of a core) keeps the 5 s pace. Measured on the 100 k
series live hour (``bench/ingest.py --shape live --series 100000 --samples 240 --shards
256``): the tree right after the run and its count queries 5 340 -> 4 546 bytes a series
(the worker 4 056 -> 3 116: a query over 20 M samples took it past 1 GB and the pages it freed
stayed until the next 5 s tick), the same samples/s. A trim walks the heaps' free chunks with
their lock held: ~2 ms on a worker's ~300 MB heap, ~27 ms on a fragmented 4.8 GB one.

And the cyclic garbage collector: a warm worker holds ~130 k objects the collector tracks
(numba's typing and target registries, the imports), and each full collection walked them all,
40-60 ms with the GIL held on a quiet machine. :func:`freeze_long_lived` (``gc.freeze`` once the
process has warmed: the worker, the web and the gateway) takes them out; :func:`refreeze_soon`
collects the frozen ones again when a node releases shards it may have frozen with them.

And the pages of LLVM's library: importing numba and loading the first kernels touches (with
the kernel's fault-around, maps) ~68 MB of ``libllvmlite.so``'s code and constants, resident in
every process that maps it (worker, web, gateway) and counted by each one's RSS, although a warm
process runs none of it until it compiles or loads another kernel. The trimmer also drops them
(:func:`drop_library_pages`: ``madvise(MADV_DONTNEED)`` on the library's mappings that are not
writable and hold no copy-on-write page, so only clean pages of the file go; the page cache
keeps them and a later compile maps them again by minor faults): 68 → 2 MB resident a process.
The same goes for libraries loaded at import and seldom run after: OpenSSL's libcrypto (loaded
by ``hashlib``/``ssl`` imports; the leaf connections' HMAC runs a few of its pages, mapped
again on use), numpy's OpenBLAS and its libgfortran (no query does linear algebra): ~5.5 MB
more a process, resident in the web and the worker alike.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
import time
from collections.abc import Sequence
from typing import Any

TRIM_EVERY_S = 5.0  # at least this often
BUSY_TICK_S = 0.5  # and at the end of such a tick after busy work (TrimPace)
BUSY_CPU_SHARE = 0.1  # busy: this share of a core or more over a tick
# loaded whole, used to compile or load kernels only (LLVM), or seldom after the imports
DROP_LIBRARIES = ("libllvmlite", "libcrypto", "openblas", "libgfortran")
_MADV_DONTNEED = 4


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.malloc_trim  # noqa: B018  (glibc only)
    except (OSError, AttributeError):
        return None
    return lib


class TrimPace:
    """When :func:`start_trimmer`'s thread trims, asked at the end of each tick of
    ``tick_s`` with the clock and the process's CPU time: after a tick in which the process
    used ``busy_share`` of a core or more, after the tick following such a tick (the busy
    work's last frees), and at least every ``every_s`` whatever the load."""

    def __init__(self, every_s: float, tick_s: float, busy_share: float, now: float,
                 cpu: float) -> None:  # fmt: skip
        self.every_s, self.busy_cpu = every_s, busy_share * tick_s
        self._last_trim, self._cpu, self._was_busy = now, cpu, False

    def due(self, now: float, cpu: float) -> bool:
        busy = cpu - self._cpu >= self.busy_cpu
        self._cpu = cpu
        trim = busy or self._was_busy or now - self._last_trim >= self.every_s
        self._was_busy = busy
        if trim:
            self._last_trim = now
        return trim


def start_trimmer(every_s: float = TRIM_EVERY_S, tick_s: float = BUSY_TICK_S
                  ) -> threading.Thread | None:  # fmt: skip
    """A daemon thread trimming the heaps every ``every_s`` seconds and after busy ticks of
    ``tick_s`` (:class:`TrimPace`; None without glibc)."""
    lib = _libc()
    if lib is None:
        return None
    tick = threading.Event()  # never set: a wait that sleeps
    ranges: list[tuple[int, int]] = []
    tick_s = min(tick_s, every_s)

    def loop() -> None:
        pace = TrimPace(every_s, tick_s, BUSY_CPU_SHARE, time.monotonic(), time.process_time())
        while not tick.wait(tick_s):
            if not pace.due(time.monotonic(), time.process_time()):
                continue
            lib.malloc_trim(0)
            if not ranges:  # once the libraries are mapped (numba imported): once
                ranges.extend(clean_library_ranges(DROP_LIBRARIES))
            drop_pages(lib, ranges)

    t = threading.Thread(target=loop, name="malloc-trim", daemon=True)
    t.start()
    return t


def clean_library_ranges(names: Sequence[str], smaps: str = "/proc/self/smaps"
                         ) -> list[tuple[int, int]]:  # fmt: skip
    """Address ranges ``[start, end)`` of the mappings of the shared libraries whose file name
    contains one of ``names``, that are neither writable nor hold an anonymous page (the
    relocated read-only data, copied on write, does): every resident page of such a range is
    the file's, so dropping it loses nothing. Empty when none is mapped (or no ``smaps``)."""
    out: list[tuple[int, int]] = []
    cur: tuple[int, int] | None = None
    try:
        with open(smaps) as f:
            for line in f:
                head, _, rest = line.partition(" ")
                if not head.endswith(":"):  # a mapping's line: range perms offset dev inode path
                    fields = rest.split()
                    path = fields[-1] if len(fields) >= 5 else ""
                    cur = None
                    if "w" not in fields[0] and any(n in path.rsplit("/", 1)[-1] for n in names):
                        a, _, b = head.partition("-")
                        cur = (int(a, 16), int(b, 16))
                elif cur is not None and head == "Anonymous:":
                    if int(rest.split()[0]) == 0:
                        out.append(cur)
                    cur = None
    except OSError:
        return []
    return out


def drop_pages(lib: Any, ranges: Sequence[tuple[int, int]]) -> None:
    """``madvise(MADV_DONTNEED)`` each of ``ranges`` (from :func:`clean_library_ranges`): their
    pages leave the process's resident set; touching them again maps them from the page cache."""
    for a, b in ranges:
        lib.madvise(ctypes.c_void_p(a), ctypes.c_size_t(b - a), _MADV_DONTNEED)


def drop_library_pages(names: Sequence[str] = DROP_LIBRARIES) -> int:
    """Drop the clean resident pages of the named libraries now; returns the bytes advised."""
    lib = _libc()
    if lib is None:
        return 0
    ranges = clean_library_ranges(names)
    drop_pages(lib, ranges)
    return sum(b - a for a, b in ranges)


def freeze_long_lived() -> None:
    """Collect once, then move every object alive now out of the cyclic collector's reach
    (``gc.freeze``): what a process imports and warms (numba's registries, types and
    dispatchers, the app) lives as long as the process, and each full collection walked all of
    it with the GIL held, in whichever request or ingest step triggered it. Frozen objects are
    still freed by reference counting; only a cycle among them that becomes garbage waits for
    :func:`refreeze_soon`."""
    global _frozen
    gc.collect()
    gc.freeze()
    _frozen = True


_frozen = False  # gc.get_freeze_count() walks the frozen objects: ~0.5 ms a call
_REFREEZE_DELAY_S = 1.0
_refreeze_lock = threading.Lock()
_refreeze_timer: threading.Timer | None = None


def refreeze() -> None:
    """Collect the frozen objects too (a cycle of them may be garbage now), then freeze what
    is left again: one full collection."""
    gc.unfreeze()
    freeze_long_lived()


def refreeze_soon(delay_s: float = _REFREEZE_DELAY_S) -> None:
    """:func:`refreeze` once, ``delay_s`` from the first call since the last one ran: a node
    releasing hundreds of shards (their objects frozen since start) pays one full collection,
    not one each. A no-op in a process that never froze."""
    global _refreeze_timer
    if not _frozen:
        return
    with _refreeze_lock:
        if _refreeze_timer is not None:
            return

        def run() -> None:
            global _refreeze_timer
            with _refreeze_lock:
                _refreeze_timer = None
            refreeze()

        _refreeze_timer = threading.Timer(delay_s, run)
        _refreeze_timer.daemon = True
        _refreeze_timer.start()
