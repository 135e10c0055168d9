"""A node loads the read path's numba kernels at start (filodb/node/warm.py): in a fresh
process, after warming, the kernels a dashboard query runs are already compiled or loaded, so
the first real query does not pay numba's start-up."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json
import numba
from filodb.query import extrapolated, values
from filodb.node.warm import warm_read_path
kernels = [extrapolated.extrapolated_kernel, values._cursor_bounds]
assert all(isinstance(k, numba.core.registry.CPUDispatcher) for k in kernels)
before = [len(k.signatures) for k in kernels]
warm_read_path()
print(json.dumps([before, [len(k.signatures) for k in kernels]]))
"""


def test_warming_loads_the_read_kernels_in_a_fresh_process() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         timeout=300, check=True).stdout  # fmt: skip
    before, after = json.loads(out.strip().splitlines()[-1])
    assert before == [0, 0]  # nothing ran them yet: the probe is fresh
    assert all(n > 0 for n in after), after
