"""numba's cache per state of the sources: a kernel sees the change of a function it calls
from another module, which numba's own cache check (the kernel's file only) misses."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from filodb import numbacache

RUN = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    {configure}
    import a
    print(a.g(1))
    """
)


def _package(root: Path, add: int) -> None:
    root.mkdir(exist_ok=True)
    (root / "b.py").write_text(
        f"import numba\n@numba.njit(cache=True)\ndef f(x):\n    return x + {add}\n"
    )
    (root / "a.py").write_text(
        "import numba\nfrom b import f\n@numba.njit(cache=True)\ndef g(x):\n    return f(x) * 10\n"
    )


def _run(root: Path, per_state: bool) -> str:
    configure = "from filodb import numbacache; numbacache.configure(Path(sys.argv[1]))"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    code = RUN.format(configure=configure if per_state else "")
    out = subprocess.run([sys.executable, "-c", code, str(root)], env=env, check=True,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    return out.stdout.strip()


def _edit_callee(root: Path, add: int) -> None:
    stamp = (root / "b.py").stat().st_mtime_ns
    _package(root, add)
    os.utime(
        root / "b.py", ns=(stamp + 10**9, stamp + 10**9)
    )  # a later stamp, whatever the clock's grain
    os.utime(root / "a.py", ns=(stamp, stamp))  # the caller's file untouched


@pytest.mark.parametrize(("per_state", "after"), [(True, "30"), (False, "20")])
def test_callee_change_reaches_cached_caller(tmp_path: Path, per_state: bool, after: str) -> None:
    """With the per-state directory the caller sees its callee's edit; numba's own cache
    (per_state False: the failure the directory exists for) keeps the old code. If numba
    fixes that, the second case fails and tells us."""
    root = tmp_path / "pkg"
    _package(root, 1)
    assert _run(root, per_state) == "20"
    _edit_callee(root, 2)
    assert _run(root, per_state) == after


def test_digest_follows_any_source(tmp_path: Path) -> None:
    _package(tmp_path, 1)
    d = numbacache.sources_digest(tmp_path)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.py").write_text("ignored")
    assert numbacache.sources_digest(tmp_path) == d
    st = (tmp_path / "b.py").stat().st_mtime_ns
    os.utime(tmp_path / "b.py", ns=(st + 1, st + 1))
    assert numbacache.sources_digest(tmp_path) != d


def test_user_choice_kept_inherited_one_redone(tmp_path: Path, monkeypatch) -> None:
    _package(tmp_path, 1)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert numbacache.configure(tmp_path) is None
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "mine")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "__pycache__" / "numba-0123"))
    got = numbacache.configure(tmp_path)
    assert got is not None and got.name == "numba-" + numbacache.sources_digest(tmp_path)
    assert os.environ["NUMBA_CACHE_DIR"] == str(got)


def test_prune_removes_only_stale_other_states(tmp_path: Path) -> None:
    old, recent, current = (tmp_path / f"numba-{n}" for n in ("old", "recent", "cur"))
    for p in (old, recent, current):
        p.mkdir()
    now = time.time()
    os.utime(old, (now - 2 * numbacache.STALE_S, now - 2 * numbacache.STALE_S))
    os.utime(current, (now - 2 * numbacache.STALE_S, now - 2 * numbacache.STALE_S))
    numbacache.prune(current, now)
    assert not old.exists() and recent.exists() and current.exists()
