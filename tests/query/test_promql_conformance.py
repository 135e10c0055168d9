"""Prometheus's own PromQL test scripts: every eval pinned in promql_passing.txt must pass.

Regenerate the pin list after an improvement with
``python -m tests.query.test_promql_conformance`` (only ever adds lines that pass).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from filodb.query.promqltest import default_dir, run_file

PINNED = Path(__file__).with_name("promql_passing.txt")


def _pinned() -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for line in PINNED.read_text().split():
        f, n = line.rsplit(":", 1)
        out.setdefault(f, set()).add(int(n))
    return out


def _suite_files() -> list[Path]:
    files = sorted(default_dir().glob("*.test"))
    assert files, f"no PromQL test scripts under {default_dir()} (set FILODB_PROMQL_TESTS)"
    return files


@pytest.mark.parametrize("path", _suite_files(), ids=lambda p: p.name)
def test_pinned_evals_still_pass(path: Path) -> None:
    pinned = _pinned().get(path.name, set())
    outcomes = {o.line: o for o in run_file(path)}
    regressed = [f"{path.name}:{n}: {outcomes[n].query} -> {outcomes[n].reason}"
                 for n in sorted(pinned) if n not in outcomes or outcomes[n].status != "passed"]  # fmt: skip
    assert not regressed, "\n".join(regressed)


def test_pin_list_is_not_empty() -> None:
    assert sum(len(v) for v in _pinned().values()) >= 1285


if __name__ == "__main__":
    lines = set(PINNED.read_text().split()) if PINNED.exists() else set()
    for f in _suite_files():
        lines |= {f"{o.file}:{o.line}" for o in run_file(f) if o.status == "passed"}
    PINNED.write_text("\n".join(sorted(lines, key=lambda s: (s.split(":")[0], int(s.split(":")[1])))) + "\n")
    print(f"{len(lines)} pinned evals")
