"""Kernels loaded from numba's cache keep their linking IR as bytes, and a kernel compiled later
still links against them (inlines them) and computes the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

KERNELS = textwrap.dedent(
    """
    import numba
    @numba.njit(cache=True)
    def inner(x):
        return x * 3 + 1
    @numba.njit(cache=True)
    def twice(x):
        return inner(inner(x))
    """
)

RUN = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    lazy = sys.argv[2] == "1"
    if lazy:
        from filodb import numbalink
        assert numbalink.install() and numbalink.install()  # once, and again harmlessly
    import numba, kern
    got = {"twice": kern.twice(5)}
    lib = kern.twice.overloads[kern.twice.signatures[0]].library
    got["loaded"] = not kern.twice.stats.cache_misses
    got["parsed"] = lib._shared_module is not None
    @numba.njit
    def later(x):  # compiled now: links the loaded kernels' modules in
        return kern.twice(x) + kern.inner(x)
    got["later"] = later(5)
    got["parsed_after"] = lib._shared_module is not None
    print(json.dumps(got))
    """
)


def _run(tmp: Path, lazy: bool) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp / "cache")}
    out = subprocess.run([sys.executable, "-c", RUN, str(tmp), "1" if lazy else "0"], env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("lazy", [False, True])
def test_a_kernel_compiled_after_loading_cached_ones_links_them(tmp_path: Path, lazy: bool) -> None:
    (tmp_path / "kern.py").write_text(KERNELS)
    first = _run(tmp_path, lazy)  # compiles and writes the cache
    assert not first["loaded"]
    again = _run(tmp_path, lazy)  # loads both kernels from the cache
    assert again["loaded"]
    assert again["twice"] == first["twice"] == 49
    assert again["later"] == first["later"] == 49 + 16
    # numba parses the linking module at load; with the patch only a later compile does
    assert again["parsed"] is (not lazy)
    assert again["parsed_after"] is True
