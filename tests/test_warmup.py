"""``filodb warm``: a throwaway ``filodb up`` through every door and query shape, then gone."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from filodb import warmup
from filodb.errors import FiloError


def _processes_mentioning(text: str) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if text in (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace"
                ):
                    out.append(int(p.name))
            except OSError:
                continue
    return out


def test_warm_writes_through_every_door_queries_and_leaves_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path), "FILODB_WEB_THREADS": "0"}  # not passed on
    r = subprocess.run([sys.executable, "-m", "filodb", "warm", "--timeout", "600"], env=env,
                       capture_output=True, text=True, timeout=700)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    # both starts answered every query, instant and range, and every door's series arrived
    assert f"{4 * len(warmup.QUERIES)} queries answered" in r.stdout, r.stdout
    assert "restarting to recover" in r.stdout
    assert list(tmp_path.iterdir()) == []  # the data directory is removed
    assert _processes_mentioning(str(tmp_path)) == []  # and the whole tree stopped


def test_warm_that_times_out_stops_its_tree_and_says_why(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(FiloError, match="timed out waiting for filodb up.s ready line"):
        warmup.warm(timeout_s=0.2)  # filodb up cannot be up within 0.2 s
    assert list(tmp_path.iterdir()) == []
    assert _processes_mentioning(str(tmp_path)) == []


def test_warm_refuses_a_timeout_that_is_not_positive() -> None:
    r = subprocess.run([sys.executable, "-m", "filodb", "warm", "--timeout", "0"],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2
    assert "--timeout must be > 0" in r.stderr + r.stdout
