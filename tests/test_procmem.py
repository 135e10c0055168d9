"""The malloc trimmer gives the free pages of the heaps back to the system."""

from __future__ import annotations

import subprocess
import sys

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
