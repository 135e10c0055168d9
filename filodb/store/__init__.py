"""Column store and meta store: where flushed chunks, part keys and checkpoints live.

``base`` has the protocols and records and imports no backend; ``sqlite`` is the embedded
default backend, ``cassandra`` the production one. The factories here import the backend they
are asked for, and only that one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from filodb.errors import BadInputError
from filodb.store.base import ChunkSet as ChunkSet
from filodb.store.base import ColumnStore as ColumnStore
from filodb.store.base import MetaStore as MetaStore
from filodb.store.base import PartKeyRecord as PartKeyRecord
from filodb.store.base import Stores as Stores


def open_store(kind: str, data_dir: str | Path, **options: Any) -> Stores:
    """The column store and meta store named by the config: ``sqlite`` or ``cassandra``.

    ``data_dir`` is the node's data directory; the SQLite backend keeps its files under
    ``<data_dir>/store/`` (Cassandra ignores it). ``options`` go to the backend (see its class).
    """
    if kind == "sqlite":
        from filodb.store.sqlite import open_sqlite

        return Stores(*open_sqlite(data_dir, **options))
    if kind == "cassandra":
        from filodb.store.cassandra import open_cassandra

        return Stores(*open_cassandra(**options))
    raise BadInputError(f"unknown column store {kind!r} (have: sqlite, cassandra)")


def store_from_config(cfg: Any) -> Stores:
    """The stores of a :class:`~filodb.config.Config`, with its backend's settings."""
    return open_store_spec(store_spec(cfg))


def store_spec(cfg: Any) -> dict[str, Any]:
    """The stores of a config as plain, picklable data (``open_store_spec`` opens them): what
    a job running in another process (a Spark executor) needs to reach the same store."""
    if cfg.store == "cassandra":
        if not cfg.cassandra_hosts:
            raise BadInputError(
                "store = cassandra needs cassandra_hosts (FILODB_CASSANDRA_HOSTS=127.0.0.1); "
                "scripts/services up cassandra prints it"
            )
        return {"kind": "cassandra", "data_dir": str(cfg.data_dir),
                "options": {"hosts": cfg.cassandra_hosts.split(","), "port": cfg.cassandra_port,
                            "keyspace": cfg.cassandra_keyspace}}  # fmt: skip
    return {"kind": cfg.store, "data_dir": str(Path(cfg.data_dir).absolute()), "options": {}}


def open_store_spec(spec: dict[str, Any]) -> Stores:
    """The stores described by :func:`store_spec`."""
    return open_store(spec["kind"], spec["data_dir"], **spec.get("options", {}))
