"""Numba kernels load at process start, not at the first request: in a fresh process, after a
warm-up, the kernels the first request runs are already compiled or loaded (a process's first
numba call costs ~0.3 s, and request threads wait on numba's compiler lock meanwhile)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, numba
from {mod} import {fn} as warm
from filodb.{kmod} import {kernel} as k
assert isinstance(k, numba.core.registry.CPUDispatcher)
before = len(k.signatures)
warm()
print(json.dumps([before, len(k.signatures)]))
"""


@pytest.mark.parametrize(
    "mod, fn, kmod, kernel",
    [
        ("filodb.node.warm", "warm_read_path", "query.extrapolated", "extrapolated_block"),
        ("filodb.node.warm", "warm_read_path", "query.values", "_cursor_bounds"),
        ("filodb.node.warm", "warm_read_path", "query.values", "_latest_kernel"),
        ("filodb.node.warm", "warm_read_path", "query.rangefns", "_block_sums"),
        ("filodb.node.warm", "warm_read_path", "query.linreg", "_kernel"),
        ("filodb.node.warm", "warm_read_path", "memstore.keytable", "_find"),
        ("filodb.node.warm", "warm_read_path", "memstore.keytable", "_find_hashing"),
        ("filodb.node.warm", "warm_read_path", "memstore.admit", "admit"),
        ("filodb.node.warm", "warm_read_path", "model.recordpack", "decode_records"),
        ("filodb.node.warm", "warm_read_path", "model.partkeyscan", "_scan"),
        ("filodb.node.warm", "warm_read_path", "model.partkeyscan", "_unique"),
        ("filodb.node.warm", "warm_read_path", "model.partkeyscan", "_xxh32_many"),
        ("filodb.gateway.influx", "warm", "model.identity", "_lookup"),
        ("filodb.prom.remote_write", "warm", "model.identity", "_first_seen"),
        ("filodb.prom.remote_write", "warm", "model.libc", "gather"),
        ("filodb.prom.remote_write", "warm", "prom.remote_write", "_read_samples"),
        ("filodb.gateway.influx", "warm", "gateway.influx_fast", "_lines"),
        ("filodb.gateway.graphite", "warm", "gateway.graphite_fast", "_lines"),
        ("filodb.gateway.graphite", "warm", "model.identity", "_lookup"),
        ("filodb.prom.remote_write", "warm", "prom.remote_write", "_top_fields"),
    ],
)
def test_warming_loads_the_kernels_in_a_fresh_process(mod, fn, kmod, kernel) -> None:  # type: ignore[no-untyped-def]
    code = PROBE.format(mod=mod, fn=fn, kmod=kmod, kernel=kernel)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True).stdout  # fmt: skip
    before, after = json.loads(out.strip().splitlines()[-1])
    assert before == 0  # nothing ran it yet: the probe is fresh
    assert after > 0
