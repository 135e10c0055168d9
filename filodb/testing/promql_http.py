"""Prometheus's PromQL test scripts over HTTP, against a running ``filodb up``.

``python -m filodb.testing.promql_http --url http://127.0.0.1:8080 [FILES or DIRS]`` prints the
same lines as ``python -m filodb.query.promqltest``. Everything goes through the server's doors:
each stretch of a script between ``clear``\\ s gets a fresh one-shard dataset
(``POST /api/v1/cluster/<ds>``, kept forever), each ``load`` block is one snappy remote-write
request to ``/promql/<ds>/api/v1/write``, and the runner waits until the shard has ingested
the whole log before it asks ``/promql/<ds>/api/v1/query`` or ``query_range`` (times and step
as float seconds, as Prometheus's clients send them). The JSON answer is turned back into a
:class:`Result`, so the comparison is the runner's own.

A dataset's shard is stopped when its stretch of script is over, so however long the suite,
only one shard of these datasets (and one always-empty dataset for scripts that load nothing)
is alive on the node.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import requests

from filodb.errors import FiloError
from filodb.model.labels import Labels
from filodb.prom.remote_write import encode_write_request
from filodb.query.promqltest import main as run_main
from filodb.query.result import Result
from filodb.testing.promql_sharded import to_batch
from filodb.testing.wait import wait_for

MAX_REQUEST_SAMPLES = 100_000  # samples per remote-write request
_SPECIAL = {"NaN": np.nan, "+Inf": np.inf, "-Inf": -np.inf, "Inf": np.inf}


def seconds(ms: int) -> str:
    """Milliseconds as the exact decimal seconds Prometheus's clients send (``-1.5``, ``60``)."""
    sign, ms = ("-", -ms) if ms < 0 else ("", ms)
    whole, frac = divmod(ms, 1000)
    return f"{sign}{whole}" + (f".{frac:03d}".rstrip("0") if frac else "")


def _value(text: str) -> float:
    return _SPECIAL[text] if text in _SPECIAL else float(text)


def _ms(t: float) -> int:
    return int(round(t * 1000))


def result_from_json(data: dict[str, Any]) -> Result:
    """A Prometheus API ``data`` object (vector, matrix, scalar or string) as a :class:`Result`."""
    kind, res = data["resultType"], data["result"]
    if kind == "scalar":
        return Result("scalar", scalar=(_ms(res[0]), _value(res[1])))
    if kind == "string":
        return Result("string", string=(_ms(res[0]), res[1]))
    series = []
    for s in res:
        pairs = [s["value"]] if kind == "vector" else s["values"]
        lb: Labels = tuple(sorted(s["metric"].items()))
        ts = np.array([_ms(t) for t, _ in pairs], np.int64)
        vs = np.array([_value(v) for _, v in pairs], np.float64)
        series.append((lb, ts, vs))
    return Result(kind, series)


class HttpError(FiloError):
    """A non-success answer; the message is the server's ``error`` text."""


class HttpEngine:
    """``instant`` and ``range`` as the runner calls them, answered by one dataset's HTTP API."""

    def __init__(self, session: requests.Session, url: str, dataset: str) -> None:
        self.session = session
        self.base = f"{url}/promql/{dataset}/api/v1"

    def _get(self, path: str, params: dict[str, str]) -> Result:
        # a shard that cannot answer is an error, never an answer quietly missing its series
        r = self.session.post(
            self.base + path, data={**params, "partial_response": "false"}, timeout=300
        )
        try:
            body = r.json()
        except ValueError:
            raise HttpError(f"HTTP {r.status_code}: {r.text[:300]}") from None
        if body.get("status") != "success":
            raise HttpError(body.get("error") or f"HTTP {r.status_code}")
        return result_from_json(body["data"])

    def instant(self, query: str, t: int) -> Result:
        return self._get("/query", {"query": query, "time": seconds(t)})

    def range(self, query: str, start: int, end: int, step: int) -> Result:
        return self._get("/query_range", {"query": query, "start": seconds(start), "end": seconds(end),
                                          "step": seconds(step)})  # fmt: skip


class HttpServer:
    """A running server and the datasets this run made on it; calling it makes a backend."""

    def __init__(self, url: str, shards: int = 1, spread: int = 0, wait_s: float = 60) -> None:
        self.url = url.rstrip("/")
        self.shards, self.spread = shards, spread
        self.session = requests.Session()
        self.run = f"pqt{os.getpid()}x{int(time.time()) % 100_000}"
        self.names = (f"{self.run}-{i}" for i in itertools.count())
        self.wait_s = wait_s
        self.current: HttpBackend | None = None
        self._empty: str | None = None
        self._spare: str | None = None
        self.created = 0

    def __call__(self) -> HttpBackend:
        if self.current is not None:
            self.current.close()
        self.current = HttpBackend(self)
        return self.current

    def take_dataset(self) -> str:
        """A fresh dataset; the next one is created at once, so that its shards are assigned
        while this one is in use (assignment takes the coordinator a second or two)."""
        name = self._spare or self.create_dataset()
        self._spare = self.create_dataset()
        return name

    def close(self) -> None:
        """Stop the shards of the datasets still in use."""
        if self.current is not None:
            self.current.close()
            self.current = None
        if self._spare is not None:
            self.stop(self._spare)
            self._spare = None

    def create_dataset(self) -> str:
        name = next(self.names)
        body = {"shards": self.shards, "spread": self.spread, "retention": 0}
        r = self.session.post(f"{self.url}/api/v1/cluster/{name}", json=body, timeout=30)
        r.raise_for_status()
        self.created += 1
        return name

    def empty_dataset(self) -> str:
        """A dataset nothing is ever written to (for scripts that query before loading)."""
        if self._empty is None:
            self._empty = self.create_dataset()
            self.wait_active(self._empty)
        return self._empty

    def status(self, dataset: str) -> list[dict[str, Any]]:
        r = self.session.get(f"{self.url}/api/v1/cluster/{dataset}/status", timeout=30)
        r.raise_for_status()
        return r.json()["data"]

    def wait_active(self, dataset: str) -> None:
        wait_for(lambda: all(row["status"] == "Active" for row in self.status(dataset)), self.wait_s,
                 f"{dataset}'s shard active", lambda: "", interval=0.05)  # fmt: skip

    def wait_ingested(self, dataset: str) -> None:
        """Until every shard is active and has ingested everything written to its log."""

        def caught_up() -> bool:
            rows = self.status(dataset)
            return (all(row["status"] == "Active" and row["lag"] == 0 for row in rows)
                    and sum(row["log_end_offset"] for row in rows) > 0)  # fmt: skip

        wait_for(caught_up, self.wait_s, f"{dataset} ingested", lambda: "", interval=0.05)

    def stop(self, dataset: str) -> None:
        body = {"shards": list(range(self.shards))}
        r = self.session.post(
            f"{self.url}/api/v1/cluster/{dataset}/stopshards", json=body, timeout=30
        )
        r.raise_for_status()


class HttpBackend:
    """One stretch of a script: its data in one fresh dataset on the server, written by remote
    write; made lazily, so a stretch that loads nothing queries the shared empty dataset."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.dataset: str | None = None

    def load(self, series: Sequence[tuple[Labels, np.ndarray, np.ndarray]]) -> None:
        batch = to_batch(series)
        if not len(batch):
            return
        if self.dataset is None:
            self.dataset = self.server.take_dataset()
        url = f"{self.server.url}/promql/{self.dataset}/api/v1/write"
        headers = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
                   "X-Prometheus-Remote-Write-Version": "0.1.0"}  # fmt: skip
        for part in _parts(series):
            r = self.server.session.post(url, data=encode_write_request(to_batch(part)), headers=headers,
                                         timeout=60)  # fmt: skip
            if r.status_code != 204:
                raise HttpError(f"remote write answered {r.status_code}: {r.text[:300]}")
        self.server.wait_ingested(self.dataset)

    def engine(self) -> HttpEngine:
        ds = self.dataset if self.dataset is not None else self.server.empty_dataset()
        return HttpEngine(self.server.session, self.server.url, ds)

    def close(self) -> None:
        if self.dataset is not None:
            self.server.stop(self.dataset)


def _parts(series: Sequence[tuple[Labels, np.ndarray, np.ndarray]]) -> list[list]:
    """The block cut into requests of at most :data:`MAX_REQUEST_SAMPLES` samples, whole series
    kept together unless one alone is longer (then in time order over several requests)."""
    out: list[list] = [[]]
    size = 0
    for lb, ts, vs in series:
        for a in range(0, len(ts), MAX_REQUEST_SAMPLES):
            n = min(MAX_REQUEST_SAMPLES, len(ts) - a)
            if size and size + n > MAX_REQUEST_SAMPLES:
                out.append([])
                size = 0
            out[-1].append((lb, ts[a : a + n], vs[a : a + n]))
            size += n
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--shards", type=int, default=1, help="shards of each dataset (a power of two)")
    ap.add_argument("--spread", type=int, default=0, help="spread of each dataset")
    known, rest = ap.parse_known_args(argv)
    server = HttpServer(known.url, known.shards, known.spread)
    try:
        return run_main(rest, backend=server, description=__doc__.splitlines()[0])
    finally:
        server.close()
        print(f"({server.created} datasets created on {known.url})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
