"""The malloc trimmer gives the free pages of the heaps back to the system."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from filodb.procmem import TrimPace, clean_library_ranges

# Free a 16 MB block (glibc then raises its dynamic mmap threshold), then allocate 1 MB arrays
# interleaved with small arrays that stay alive (so the heap's top cannot shrink) and free the
# large ones: MiB held after, and (with the trimmer) once it has run.
_SCRIPT = """
import sys
import numpy as np
from filodb.procmem import start_trimmer
from filodb.testing.wait import eventually
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
big = np.ones(16 << 20, np.uint8)
del big
if sys.argv[1] == "busy":  # only busy ticks trim: the 5 s pace is an hour here
    assert start_trimmer(3600, 0.05) is not None
base = rss()
large, small = [], []
for _ in range(150):
    large.append(np.ones(1 << 20, np.uint8))
    small.append(np.ones(512, np.uint8))
del large
held = (rss() - base) >> 20
def trimmed():
    now = (rss() - base) >> 20
    assert now < 20, now
    return now
if sys.argv[1] == "trim":
    assert start_trimmer(0.05) is not None
    print(held, eventually(trimmed, 10, 0.05))
elif sys.argv[1] == "busy":
    print(held, eventually(trimmed, 10, 0.05))
else:
    print(held, (rss() - base) >> 20)
"""


def _held_mb(mode: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", _SCRIPT, mode], capture_output=True, text=True,
                         check=True)  # fmt: skip
    before, after = out.stdout.split()
    return int(before), int(after)


def test_trimmer_returns_freed_heap_memory() -> None:
    held, still = _held_mb("default")
    assert held >= 100 and still >= 100  # the heaps keep what was freed
    held, trimmed = _held_mb("trim")
    assert held >= 100 and trimmed < 20


def test_busy_work_is_trimmed_after_at_once_not_at_the_slow_pace() -> None:
    """The allocations and frees are the busy tick; the tick after it trims, although the
    trimmer's own pace (an hour) never comes."""
    held, trimmed = _held_mb("busy")
    assert held >= 100 and trimmed < 20


def _ticks(pace: TrimPace, cpu_per_tick: list[float], tick_s: float = 0.5) -> list[bool]:
    now, cpu, out = 0.0, 0.0, []
    for used in cpu_per_tick:
        now, cpu = now + tick_s, cpu + used
        out.append(pace.due(now, cpu))
    return out


def test_trim_pace_trims_busy_ticks_the_one_after_and_else_at_its_slow_pace() -> None:
    pace = TrimPace(5.0, 0.5, 0.1, now=0.0, cpu=0.0)
    quiet, busy = 0.01, 0.2  # CPU seconds in a 0.5 s tick (0.05 is the line)
    got = _ticks(pace, [quiet] * 3 + [busy, busy] + [quiet] * 13)
    assert got[:3] == [False] * 3  # idle: nothing freed, no trim
    assert got[3:6] == [True, True, True]  # each busy tick, and the quiet one after
    assert got[6:] == [False] * 9 + [True, False, False]  # then 5 s after the last trim
    pace = TrimPace(5.0, 0.5, 0.1, now=0.0, cpu=0.0)
    assert _ticks(pace, [0.05, 0.049, 0.0]) == [True, True, False]  # the line itself is busy


def test_an_idle_process_trims_at_the_slow_pace() -> None:
    pace = TrimPace(5.0, 0.5, 0.1, now=0.0, cpu=0.0)
    got = _ticks(pace, [0.0] * 30)
    assert [i for i, t in enumerate(got) if t] == [9, 19, 29]  # 5 s, 10 s, 15 s


# gc.freeze is process-wide: each case runs in a fresh interpreter.
_FREEZE = """
import gc, sys, weakref
import numba, numpy as np
from filodb import procmem
from filodb.testing.wait import eventually

@numba.njit(cache=False)
def k(a):
    return a.sum()

k(np.ones(3))  # numba's typing and target registries: tens of thousands of objects
class Node:
    pass
a, b = Node(), Node()
a.other, b.other = b, a  # a cycle alive at the freeze, garbage after it
ref = weakref.ref(a)
before = len(gc.get_objects())
procmem.freeze_long_lived()
walked = len(gc.get_objects())  # what a full collection still walks
del a, b
gc.collect()
kept = ref() is not None  # frozen: the collector does not see the cycle
calls = []
real = procmem.refreeze
procmem.refreeze = lambda: (calls.append(1), real())
for _ in range(100):  # a node releasing many shards at once
    procmem.refreeze_soon(0.05)
def refrozen():
    assert ref() is None and gc.get_freeze_count() > 0  # the cycle freed, the rest frozen again
eventually(refrozen, 10, 0.02)
print(before, walked, kept, len(calls))
"""


def test_freeze_takes_startup_objects_out_of_full_collections_and_refreeze_frees_cycles() -> None:
    out = subprocess.run([sys.executable, "-c", _FREEZE], capture_output=True, text=True,
                         check=True)  # fmt: skip
    before, walked, kept, calls = out.stdout.split()
    assert int(before) > 20_000  # numba and numpy's objects
    assert int(walked) < int(before) // 20  # a full collection no longer walks them
    assert kept == "True"  # a frozen cycle waits for refreeze ...
    assert int(calls) == 1  # ... which a burst of releases runs once


def test_refreeze_soon_is_a_no_op_in_a_process_that_never_froze() -> None:
    script = (
        "from filodb import procmem\n"
        "procmem.refreeze_soon(0.0)\n"
        "print(procmem._refreeze_timer is None)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert out.stdout.strip() == "True"


# LLVM's library: resident KiB after numba compiled a kernel, after its clean pages were
# dropped, after a second kernel compiled (its pages mapped again) and once the trimmer thread
# dropped them again; then the two kernels' results. The first drop is synchronous, so no
# trim can land between the second compile and its measure.
_LLVM = """
import numba, numpy as np
from filodb import procmem
from filodb.testing.wait import eventually
def llvm_kb():
    kb, cur = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(" ", 1)[0]
            if not head.endswith(":"):
                cur = "libllvmlite" in line
            elif cur and head == "Rss:":
                kb += int(line.split()[1])
    return kb
@numba.njit(cache=False)
def total(a):
    return a.sum()
first = total(np.arange(10.0))
loaded = llvm_kb()
assert procmem.drop_library_pages() > 0
dropped = llvm_kb()
@numba.njit(cache=False)
def biggest(a):
    return a.max()
second = biggest(np.arange(10.0))
compiled = llvm_kb()
assert procmem.start_trimmer(0.2) is not None
def small():
    now = llvm_kb()
    assert now < 8 << 10, now
    return now
again = eventually(small, 10, 0.05)
print(loaded, dropped, compiled, again, first, second)
"""


def test_trimmer_drops_llvm_library_pages_and_kernels_still_compile_and_run() -> None:
    out = subprocess.run([sys.executable, "-c", _LLVM], capture_output=True, text=True,
                         check=True)  # fmt: skip
    fields = out.stdout.split()
    loaded, dropped, compiled, again = (int(f) for f in fields[:4])
    assert loaded > 30 << 10  # numba's import and first compile map tens of MB of it
    assert dropped < 8 << 10 and again < 8 << 10
    assert compiled > dropped + 256  # compiling maps what it runs again, from the file
    assert float(fields[4]) == 45.0 and float(fields[5]) == 9.0


_SMAPS = """\
7f0000000000-7f0000001000 r--p 00000000 fd:01 11 /lib/libllvmlite.so
Rss:                   4 kB
Anonymous:             0 kB
7f0000001000-7f0000009000 r-xp 00001000 fd:01 11 /lib/libllvmlite.so
Rss:                  32 kB
Anonymous:             0 kB
7f0000009000-7f000000a000 r--p 00009000 fd:01 11 /lib/libllvmlite.so
Rss:                   4 kB
Anonymous:             4 kB
7f000000a000-7f000000b000 rw-p 0000a000 fd:01 11 /lib/libllvmlite.so
Rss:                   4 kB
Anonymous:             0 kB
7f000000b000-7f000000c000 r-xp 00000000 fd:01 12 /lib/libpython3.11.so.1.0
Rss:                   4 kB
Anonymous:             0 kB
7f000000c000-7f000000d000 rw-p 00000000 00:00 0
Anonymous:             4 kB
"""


def test_clean_library_ranges_leave_writable_and_copied_pages(tmp_path: Path) -> None:
    """Only the named library's mappings whose every page is the file's: not the writable
    data, not the relocated read-only data (copied on write), not another library."""
    smaps = tmp_path / "smaps"
    smaps.write_text(_SMAPS)
    ranges = clean_library_ranges(["libllvmlite"], str(smaps))
    assert ranges == [(0x7F0000000000, 0x7F0000001000), (0x7F0000001000, 0x7F0000009000)]
    assert clean_library_ranges(["libllvmlite"], str(tmp_path / "absent")) == []
