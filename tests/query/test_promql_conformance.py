"""Prometheus's own PromQL test scripts: every pinned eval must pass, in both modes.

- memory: the engine over one in-memory source; pins in ``promql_passing.txt``;
- sharded: each load through ``SampleBatch`` routing into memstore shards, queries on the
  distributed engine; pins in ``promql_passing_sharded.txt``.

Regenerate both pin lists after an improvement with
``PYTHONPATH=$PWD python -m tests.query.test_promql_conformance`` (only ever adds lines that pass).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from filodb.query.promqltest import Backend, MemoryBackend, default_dir, run_file
from filodb.testing.promql_sharded import ShardedBackend

MODES: dict[str, tuple[Callable[[], Backend], Path]] = {
    "memory": (MemoryBackend, Path(__file__).with_name("promql_passing.txt")),
    "sharded": (ShardedBackend, Path(__file__).with_name("promql_passing_sharded.txt")),
}


def pinned(mode: str) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for line in MODES[mode][1].read_text().split():
        f, n = line.rsplit(":", 1)
        out.setdefault(f, set()).add(int(n))
    return out


def _suite_files() -> list[Path]:
    files = sorted(default_dir().glob("*.test"))
    assert files, f"no PromQL test scripts under {default_dir()} (set FILODB_PROMQL_TESTS)"
    return files


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("path", _suite_files(), ids=lambda p: p.name)
def test_pinned_evals_still_pass(path: Path, mode: str) -> None:
    pins = pinned(mode).get(path.name, set())
    outcomes = {o.line: o for o in run_file(path, MODES[mode][0])}
    regressed = [f"{path.name}:{n}: {outcomes[n].query} -> {outcomes[n].reason}"
                 for n in sorted(pins) if n not in outcomes or outcomes[n].status != "passed"]  # fmt: skip
    assert not regressed, "\n".join(regressed)


@pytest.mark.parametrize("mode", list(MODES))
def test_pin_list_is_not_empty(mode: str) -> None:
    assert sum(len(v) for v in pinned(mode).values()) >= 1297


if __name__ == "__main__":
    for mode, (backend, pins) in MODES.items():
        lines = set(pins.read_text().split()) if pins.exists() else set()
        for f in _suite_files():
            lines |= {f"{o.file}:{o.line}" for o in run_file(f, backend) if o.status == "passed"}
        pins.write_text(
            "\n".join(sorted(lines, key=lambda s: (s.split(":")[0], int(s.split(":")[1])))) + "\n"
        )
        print(f"{mode}: {len(lines)} pinned evals")
