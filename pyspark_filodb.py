"""Lets PySpark find the ``filodb`` data source by itself: it imports every top-level module
named ``pyspark_*`` and registers its ``DefaultSource``."""

from filodb.spark.source import FiloDBDataSource as DefaultSource

__all__ = ["DefaultSource"]
