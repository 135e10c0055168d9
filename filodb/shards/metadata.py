"""Metric metadata (type, help, unit per metric family) of each dataset, kept in Redis.

Keys: one hash per dataset, ``filodb:meta:<dataset>``; field = metric family name, value =
JSON ``{"type": ..., "help": ..., "unit": ...}``. The last write of a family wins (a family
has one entry, where Prometheus may list one per disagreeing target).

Written from remote-write requests (``filodb import`` sends the ``# TYPE``/``# HELP``/``# UNIT``
lines of text exposition files as remote-write metadata) and, for the types alone, from what a
protocol implies (:class:`TypesKept`): Influx lines with a ``counter`` field or histogram fields
(plain Influx fields imply nothing: Influx has no metric type, and Prometheus's influxdb_exporter
calls them untyped), every Graphite path a ``gauge`` (as Prometheus's graphite_exporter does);
over HTTP (:class:`~filodb.gateway.door.IngestDoor`) and the TCP doors alike. Read by
``/api/v1/metadata`` (:mod:`filodb.web.metadata`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import orjson
import redis


def meta_key(dataset: str) -> str:
    """The Redis hash holding ``dataset``'s metadata."""
    return f"filodb:meta:{dataset}"


class MetadataStore:
    """Reads and writes metric metadata; safe to share between threads.

    ``client``: a Redis URL, or a client to share (one that answers bytes, not decoded str).
    """

    def __init__(self, client: str | redis.Redis) -> None:
        self.r = (
            redis.Redis.from_url(client, socket_timeout=10) if isinstance(client, str) else client
        )

    def put(self, dataset: str, entries: Sequence[dict[str, str]]) -> int:
        """Keep ``entries`` (``metric``, ``type``, ``help``, ``unit``) of ``dataset``; entries
        without a metric name are skipped, a missing type is ``unknown``. Returns how many
        families were written."""
        fields = {
            m["metric"]: orjson.dumps({"type": m.get("type") or "unknown",
                                       "help": m.get("help", ""), "unit": m.get("unit", "")})
            for m in entries
            if m.get("metric")
        }  # fmt: skip
        if fields:
            self.r.hset(meta_key(dataset), mapping=fields)  # type: ignore[arg-type]
        return len(fields)

    def put_types(self, dataset: str, types: Mapping[str, str]) -> int:
        """Keep a type for each family of ``types`` (name -> type) that has no entry yet
        (``HSETNX``: an entry with help and unit, from remote write, is never overwritten).
        Returns how many families were new."""
        if not types:
            return 0
        key = meta_key(dataset)
        pipe = self.r.pipeline(transaction=False)
        for name, kind in types.items():
            pipe.hsetnx(
                key, name, orjson.dumps({"type": kind or "unknown", "help": "", "unit": ""})
            )
        return sum(int(x) for x in pipe.execute())

    def get(self, dataset: str, metric: str | None = None, limit: int = 0
            ) -> dict[str, dict[str, str]]:  # fmt: skip
        """Family name -> entry, sorted by name: one family when ``metric`` is given (empty when
        unknown), else all of ``dataset``'s; at most ``limit`` families when ``limit`` > 0 (zero
        or negative: no limit, as in Prometheus)."""
        key = meta_key(dataset)
        if metric is not None:
            raw = self.r.hget(key, metric)
            return {metric: orjson.loads(raw)} if raw else {}
        found = {k.decode(): v for k, v in self.r.hgetall(key).items()}  # type: ignore[union-attr]
        names = sorted(found)
        if limit > 0:
            names = names[:limit]
        return {n: orjson.loads(found[n]) for n in names}


class TypesKept:
    """Keeps the metric types a protocol implies through :meth:`MetadataStore.put_types`,
    sending each (dataset, family, type) to Redis once per process (a bounded memory of what
    was sent; forgotten whole past ``remember`` entries). Safe to share between threads."""

    def __init__(self, store: MetadataStore, remember: int = 100_000) -> None:
        self.store = store
        self.remember = remember
        self._sent: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()

    def keep(self, dataset: str, types: Mapping[str, str]) -> int:
        """Send the types not sent yet; returns how many families were new in Redis."""
        with self._lock:
            new = {n: t for n, t in types.items() if (dataset, n, t) not in self._sent}
        if not new:
            return 0
        added = self.store.put_types(dataset, new)
        with self._lock:
            if len(self._sent) > self.remember:
                self._sent.clear()
            self._sent.update((dataset, n, t) for n, t in new.items())
        return added
