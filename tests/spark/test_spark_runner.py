"""``run_tasks``: a project function over task tuples in Spark partitions, results in order."""

from __future__ import annotations

import subprocess
import sys

import pytest

from filodb.errors import BadInputError
from filodb.model.timeparse import parse_duration_ms
from filodb.spark.runner import run_tasks


def test_results_come_back_in_task_order(spark) -> None:  # type: ignore[no-untyped-def]
    tasks = [(f"{n}m", "d") for n in (17, 3, 250, 1, 42, 9, 5)]
    assert spark.sparkContext.master == "local[2]"  # the shared session runs them
    assert run_tasks("local[2]", parse_duration_ms, tasks) == [parse_duration_ms(*t) for t in tasks]
    assert run_tasks("local[2]", parse_duration_ms, []) == []


def test_a_failing_task_fails_the_run_with_its_message(spark) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Exception, match="invalid parameter .*resolution"):
        run_tasks("local[2]", parse_duration_ms, [("1h", "step"), ("soon", "resolution")])


def test_bad_master_and_bad_tasks_are_bad_input() -> None:
    with pytest.raises(BadInputError, match="not a Spark master"):
        run_tasks("locale[2]", parse_duration_ms, [("1h", "x")])
    with pytest.raises(BadInputError, match="argument tuples"):
        run_tasks("local[2]", parse_duration_ms, ["1h"])  # type: ignore[list-item]


def test_without_pyspark_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark raises ImportError
    with pytest.raises(BadInputError, match=r"pip install 'filodb-py\[spark\]'"):
        run_tasks("local[2]", parse_duration_ms, [("1h", "x")])


def test_without_a_session_it_starts_one_and_stops_it() -> None:
    """The CLI's path (``--spark local[2]``): a process with no session of its own."""
    code = ("from filodb.spark.runner import run_tasks\n"
            "from filodb.model.timeparse import parse_duration_ms\n"
            "print(run_tasks('local[2]', parse_duration_ms, [('2m', 'x'), ('1s', 'x')]))\n"
            "from pyspark.sql import SparkSession\n"
            "print(SparkSession.getActiveSession())\n")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=240, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == [str([parse_duration_ms("2m", "x"), 1000]), "None"]
