"""One local[2] Spark session for every Spark test (starting one costs seconds)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

try:
    import pyspark  # noqa: F401
except ImportError:
    if os.environ.get("CI"):  # CI installs the spark extra: there a missing PySpark fails
        raise
    collect_ignore_glob = ["test_*.py"]  # without the extra (pip install -e ".[spark]")


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("filodb-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.pyspark.python", sys.executable)
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.driver.memory", "1g").getOrCreate())  # fmt: skip
    session.sparkContext.setLogLevel("ERROR")
    # an installed package is found by name (pyspark_filodb); an editable one may not be
    from filodb.spark import register

    register(session)
    yield session
    session.stop()
