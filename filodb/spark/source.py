"""The ``filodb`` Spark data source (PySpark 4's Python data source API).

``spark.read.format("filodb")`` plans one read partition per (shard, time window) and runs
:func:`filodb.spark.read.read_window` in each, which yields Arrow record batches (no per-row
Python tuples). ``df.write.format("filodb")`` runs :func:`filodb.spark.write.write_batches` in
each task on the partition's Arrow batches. Options: :mod:`filodb.spark.options`.

The classes hold only the parsed options (plain dataclasses), so Spark can pickle them to the
executors; the store is opened inside each task. The modules doing the work are imported
where they are used: Spark starts a fresh Python process to look data sources up and to plan
a read, and those need none of the parser, codecs or HTTP client (1.5 s of imports).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    InputPartition,
    WriterCommitMessage,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from filodb.spark.options import ReadOptions, WriteOptions

SCHEMA_DDL = "labels map<string,string>, timestamp timestamp, value double"


class FiloDBReader(DataSourceReader):
    def __init__(self, opts: ReadOptions) -> None:
        self.opts = opts

    def partitions(self) -> list[InputPartition]:
        """One per shard and time window: ``value`` is ``(shard, start_ms, end_ms)``."""
        from filodb.spark.read import plan

        return [InputPartition(task) for task in plan(self.opts)]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        from filodb.spark.read import read_window

        shard, start_ms, end_ms = partition.value
        return read_window(self.opts, shard, start_ms, end_ms)


@dataclass
class Written(WriterCommitMessage):
    samples: int


class FiloDBWriter(DataSourceArrowWriter):
    def __init__(self, opts: WriteOptions) -> None:
        self.opts = opts

    def write(self, iterator: Iterator[pa.RecordBatch]) -> Written:
        from filodb.spark.write import write_batches

        return Written(write_batches(self.opts, iterator))


class FiloDBDataSource(DataSource):
    """``format("filodb")``: raw samples of a dataset as ``(labels, timestamp, value)``."""

    @classmethod
    def name(cls) -> str:
        return "filodb"

    def schema(self) -> str:
        return SCHEMA_DDL

    def reader(self, schema: Any) -> FiloDBReader:
        from filodb.spark.options import parse_read_options

        return FiloDBReader(parse_read_options(self.options))

    def writer(self, schema: Any, overwrite: bool) -> FiloDBWriter:
        from filodb.errors import BadInputError
        from filodb.spark.options import parse_write_options

        if overwrite:
            raise BadInputError("option 'mode': a FiloDB dataset is appended to, not overwritten "
                                "(use mode 'append')")  # fmt: skip
        return FiloDBWriter(parse_write_options(self.options))
