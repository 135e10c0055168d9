"""The options of ``spark.read.format("filodb")`` and ``df.write.format("filodb")``, checked.

Spark hands a data source its options as strings (names case-insensitive). They are parsed
here, on the driver, before any task runs: a missing, unknown or malformed option is a
:class:`~filodb.errors.BadInputError` whose message starts with ``option '<name>'``.
Nothing here imports Spark.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filodb.config import Config
from filodb.errors import BadInputError
from filodb.model.dataset import check_dataset_name
from filodb.model.labels import Matcher
from filodb.model.timeparse import parse_duration_ms, parse_time_ms
from filodb.query.parser import selector_matchers
from filodb.store import Stores, open_store

_DEFAULTS = Config()
DEFAULT_WINDOW = "6h"  # time span of one read partition (per shard)
MAX_PARTITIONS = 100_000  # shards x windows of one read; more is a window too small
DEFAULT_BATCH_SAMPLES = 50_000  # samples per remote-write request

READ_OPTIONS = frozenset({"dataset", "selector", "start", "end", "window", "data_dir",
                          "cassandra_hosts", "cassandra_port", "keyspace"})  # fmt: skip
WRITE_OPTIONS = frozenset({"url", "dataset", "token", "batch_samples", "timeout"})
_IGNORED = frozenset({"path"})  # Spark passes load(path) / save(path) this way


def _bad(name: str, message: str) -> BadInputError:
    return BadInputError(f"option '{name}': {message}")


def _lower(options: Mapping[str, str], known: frozenset[str]) -> dict[str, str]:
    out = {str(k).lower(): str(v) for k, v in options.items()}
    unknown = sorted(set(out) - known - _IGNORED)
    if unknown:
        raise _bad(unknown[0], f"unknown option (known: {', '.join(sorted(known))})")
    return out


def _dataset(opts: dict[str, str]) -> str:
    try:
        return check_dataset_name(opts.get("dataset", _DEFAULTS.dataset))
    except BadInputError as e:
        raise _bad("dataset", str(e)) from None


def _positive_int(opts: dict[str, str], name: str, default: int) -> int:
    raw = opts.get(name)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        v = 0
    if v < 1:
        raise _bad(name, f"expected a positive integer, got {raw!r}")
    return v


@dataclass(frozen=True)
class StoreLocation:
    """Where the column store is: a node's data dir (SQLite) or a Cassandra keyspace."""

    data_dir: str = ""
    cassandra_hosts: str = ""
    cassandra_port: int = _DEFAULTS.cassandra_port
    keyspace: str = _DEFAULTS.cassandra_keyspace

    @classmethod
    def parse(cls, opts: dict[str, str]) -> StoreLocation:
        data_dir, hosts = opts.get("data_dir", ""), opts.get("cassandra_hosts", "")
        if bool(data_dir) == bool(hosts):
            raise _bad("data_dir", "give the store: data_dir (SQLite) or cassandra_hosts "
                                   "(with keyspace), exactly one of them")  # fmt: skip
        if data_dir and not (Path(data_dir) / "store").is_dir():
            raise _bad("data_dir", f"{data_dir!r} holds no column store (no store/ directory)")
        port = _positive_int(opts, "cassandra_port", _DEFAULTS.cassandra_port)
        return cls(data_dir, hosts, port, opts.get("keyspace", _DEFAULTS.cassandra_keyspace))

    @contextmanager
    def open(self) -> Iterator[Stores]:
        """The stores, for one task. SQLite files are opened and closed each time; a Cassandra
        session (seconds to connect) is kept for the life of the Python worker, which Spark
        reuses for the next tasks."""
        if self.data_dir:
            stores = open_store("sqlite", self.data_dir)
            try:
                yield stores
            finally:
                stores.close()
            return
        with _CONNECT_LOCK:
            kept = _CASSANDRA.get(self)
            if kept is None:
                kept = _CASSANDRA[self] = open_store(
                    "cassandra", "", hosts=self.cassandra_hosts.split(","),
                    port=self.cassandra_port, keyspace=self.keyspace)  # fmt: skip
        yield kept


_CASSANDRA: dict[StoreLocation, Stores] = {}
_CONNECT_LOCK = threading.Lock()


@dataclass(frozen=True)
class ReadOptions:
    """What one read asks for: samples ``start_ms <= t <= end_ms`` of the selector's series."""

    store: StoreLocation
    dataset: str
    selector: str
    start_ms: int
    end_ms: int
    window_ms: int

    @property
    def matchers(self) -> list[Matcher]:
        return selector_matchers(self.selector)

    def windows(self) -> list[tuple[int, int]]:
        """``[start, end]`` cut into inclusive windows of ``window_ms`` (the last may be shorter)."""
        edges = range(self.start_ms, self.end_ms + 1, self.window_ms)
        return [(a, min(a + self.window_ms - 1, self.end_ms)) for a in edges]


def parse_read_options(options: Mapping[str, str]) -> ReadOptions:
    opts = _lower(options, READ_OPTIONS)
    dataset = _dataset(opts)
    selector = opts.get("selector", "")
    if not selector:
        raise _bad("selector", 'required: a PromQL series selector such as {__name__="x"}')
    try:
        selector_matchers(selector)
    except BadInputError as e:
        raise _bad("selector", f"{selector!r} is not a series selector: {e}") from None
    times = {}
    for name in ("start", "end"):
        if name not in opts:
            raise _bad(name, "required: unix seconds or RFC 3339")
        try:
            times[name] = parse_time_ms(opts[name], name)
        except BadInputError as e:
            raise _bad(name, str(e)) from None
    if times["end"] < times["start"]:
        raise _bad("end", "is before start")
    try:
        window = parse_duration_ms(opts.get("window", DEFAULT_WINDOW), "window")
    except BadInputError as e:
        raise _bad("window", str(e)) from None
    if window < 1:
        raise _bad("window", "must be positive")
    if (times["end"] - times["start"]) // window >= MAX_PARTITIONS:
        raise _bad("window", f"cuts the range into more than {MAX_PARTITIONS} windows")
    store = StoreLocation.parse(opts)
    return ReadOptions(store, dataset, selector, times["start"], times["end"], window)


@dataclass(frozen=True)
class WriteOptions:
    """Where a DataFrame goes: a FiloDB web address, its dataset, requests of so many samples."""

    url: str
    dataset: str
    token: str
    batch_samples: int
    timeout_s: float


def parse_write_options(options: Mapping[str, str]) -> WriteOptions:
    opts = _lower(options, WRITE_OPTIONS)
    url = opts.get("url", "")
    if not url.startswith(("http://", "https://")):
        raise _bad("url", f"required: the http(s) address of a FiloDB web tier, got {url!r}")
    batch = _positive_int(opts, "batch_samples", DEFAULT_BATCH_SAMPLES)
    timeout = float(_positive_int(opts, "timeout", 300))
    return WriteOptions(url.rstrip("/"), _dataset(opts), opts.get("token", ""), batch, timeout)
