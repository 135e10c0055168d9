"""``filodb rules test`` and ``promtool test rules`` (Debian's, 2.42) on the same files must
agree (exit status 0/1) on every file: Prometheus's own rule unit-test files
(``promtool_testdata/``, vendored with their license) and ours (``testdata/``).

The vendored files come from a newer Prometheus than the installed promtool. Where the two
versions disagree by design, the file is listed in ``NEWER_THAN_PROMTOOL`` with the reason, and
our answer is checked against the newer Prometheus's (the file's intent) instead.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from filodb.rules.promtool_tests import main as run_tests
from filodb.testing.prometheus import PROMTOOL, need

HERE = Path(__file__).parent
FILES = sorted(
    p for d in ("promtool_testdata", "testdata") for p in (HERE / d).glob("*.yml")
    if p.read_text().lstrip().startswith(("rule_files", "tests", "#", "evaluation_interval"))
    and "tests:" in p.read_text()
)  # fmt: skip
# file -> (our expected exit status, why promtool 2.42 answers otherwise)
NEWER_THAN_PROMTOOL = {
    "no-test-group-interval.yml": (0, "a test group without interval takes evaluation_interval "
                                   "(fixed after 2.42, which loads its series 0 s apart)"),
    "start-time-test.yml": (0, "start_timestamp of a test group is newer than 2.42"),
}  # fmt: skip


def _promtool(path: Path) -> tuple[int, str]:
    need(PROMTOOL)
    p = subprocess.run([PROMTOOL, "test", "rules", path.name], cwd=path.parent,
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    return p.returncode, p.stdout + p.stderr


def test_the_conformance_set_is_there() -> None:
    names = {p.name for p in FILES}
    assert {
        "unittest.yml",
        "failing.yml",
        "at-modifier-test.yml",
        "features-test.yml",
        "templates-test.yml",
        "timing-test.yml",
    } <= names
    assert len(FILES) >= 15


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_agrees_with_promtool(path: Path) -> None:
    out = io.StringIO()
    ours = run_tests([str(path)], out)
    theirs, text = _promtool(path)
    if path.name in NEWER_THAN_PROMTOOL:
        want, why = NEWER_THAN_PROMTOOL[path.name]
        assert theirs != want, f"promtool now agrees on {path.name}: drop it from the list"
        assert ours == want, f"{why}\n{out.getvalue()}"
        return
    assert ours == theirs, (
        f"ours {ours}, promtool {theirs}\nours:\n{out.getvalue()}\npromtool:\n{text}"
    )


@pytest.mark.parametrize("name", ["features-test.yml", "templates-test.yml", "timing-test.yml"])
def test_our_files_pass(name: str) -> None:
    """Our files (templates and Go's number formats, for/keep_firing_for, recording chains,
    stale inputs, absent) pass on both, not merely fail on both."""
    out = io.StringIO()
    assert run_tests([str(HERE / "testdata" / name)], out) == 0, out.getvalue()
    assert _promtool(HERE / "testdata" / name)[0] == 0
