"""Run a function over tasks in Spark partitions: how a batch job goes distributed.

``run_tasks("local[2]", fn, [(a, b), (c, d)])`` calls ``fn(a, b)`` and ``fn(c, d)`` in Spark
tasks, one task per partition, and returns their results in the order of the tasks. ``fn``
must be a top-level function (Spark pickles it by reference: the executors import its
module) and the task tuples and results small picklable values. The same function runs
in-process without Spark; this module only adds the distribution.

An active Spark session is used as it is (its master wins); otherwise one is started on
``master`` and stopped afterwards. A task that raises fails the job: Spark's exception
carries the task's traceback.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from filodb.errors import BadInputError
from filodb.spark import require_pyspark

_MASTER = re.compile(r"local(\[(\d+|\*)(,\d+)?\])?|(spark|k8s|mesos)://\S+|yarn")


def _call(fn: Callable[..., Any], item: tuple[int, tuple[Any, ...]]) -> tuple[int, Any]:
    i, task = item
    return i, fn(*task)


def run_tasks(master: str, fn: Callable[..., Any], tasks: Sequence[tuple[Any, ...]]) -> list[Any]:
    """``[fn(*task) for task in tasks]``, each call a Spark task on ``master``."""
    if not _MASTER.fullmatch(master):
        raise BadInputError(f"not a Spark master: {master!r} (local[2], spark://host:7077, ...)")
    require_pyspark()
    if not all(isinstance(t, tuple) for t in tasks):
        raise BadInputError("run_tasks takes a list of argument tuples")
    if not tasks:
        return []
    from functools import partial

    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    owned = spark is None
    if spark is None:
        builder = SparkSession.builder.master(master).appName("filodb")
        if master.startswith("local"):  # the executors are this machine's: this interpreter
            builder = builder.config("spark.pyspark.python", sys.executable)
        spark = builder.config("spark.ui.enabled", "false").getOrCreate()
    try:
        rdd = spark.sparkContext.parallelize(list(enumerate(tasks)), len(tasks))
        done = dict(rdd.map(partial(_call, fn)).collect())
    finally:
        if owned:
            spark.stop()
    return [done[i] for i in range(len(tasks))]
