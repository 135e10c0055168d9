"""FiloDB and Spark: the ``filodb`` data source and a runner for batch jobs.

PySpark is an optional extra (``pip install -e ".[spark]"``); nothing here imports it at
import time. :func:`register` adds the data source to a session (the top-level module
``pyspark_filodb`` lets PySpark find it by itself); :mod:`filodb.spark.runner` runs a
function over tasks in Spark partitions.
"""

from __future__ import annotations

from typing import Any

from filodb.errors import BadInputError

INSTALL_HINT = "PySpark is not installed: pip install 'filodb-py[spark]' (needs Java 17)"


def require_pyspark() -> None:
    """BadInputError (CLI exit code 2) naming the extra to install when PySpark is missing."""
    try:
        import pyarrow  # noqa: F401
        import pyspark  # noqa: F401
    except ImportError:
        raise BadInputError(INSTALL_HINT) from None


def register(spark: Any) -> None:
    """Make ``format("filodb")`` available in the session ``spark``."""
    require_pyspark()
    from filodb.spark.source import FiloDBDataSource

    spark.dataSource.register(FiloDBDataSource)
