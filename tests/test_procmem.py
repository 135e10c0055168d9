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
