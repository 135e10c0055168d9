"""The job on the Cassandra backend (a real node, ``cassandra_env``) writes exactly what it
writes on SQLite: the same part keys and the same chunk bytes."""

from __future__ import annotations

from filodb.downsample.job import run_local, shard_tasks
from filodb.errors import UnknownDatasetError
from filodb.store import open_store_spec
from filodb.testing.downsample import DAY, DAYS, RES, START, Raw, dump, write_raw


def test_the_job_on_cassandra_equals_the_job_on_sqlite(
    raw: Raw, cassandra_env: dict[str, str]
) -> None:
    spec = {"kind": "cassandra", "data_dir": "", "options": {
        "hosts": cassandra_env["FILODB_CASSANDRA_HOSTS"].split(","),
        "port": int(cassandra_env["FILODB_CASSANDRA_PORT"]), "keyspace": "filodb_ds_test"}}  # fmt: skip
    cas = open_store_spec(spec)
    try:
        for ds in ("m", "m_ds_1", "m_ds_5"):
            try:
                cas.column.truncate(ds)
            except UnknownDatasetError:
                pass
        write_raw(cas, raw.series)
        run_local(shard_tasks(spec, "m", 2, START, START + DAYS * DAY, RES))
        run_local(shard_tasks(spec, "m", 2, START + DAY, START + 2 * DAY, RES))  # again: no change
        raw.run()
        for ds in ("m_ds_1", "m_ds_5"):
            got = dump(cas, ds)
            assert got == dump(raw.stores, ds) and sum(len(c) for _r, c in got.values()) > 0
    finally:
        cas.close()
