"""Many clients at once through `filodb up`'s ingestion loop: bodies of known series (joined
into one call to the log) and bodies of series never seen (written at once, their own call),
from keep-alive connections at the same time. Every request is answered in time, every
acknowledged sample is queryable once.

The loop sends the log's call and reads on; a body that cannot join waits in the log's group
commit, and a version of the loop deadlocked there (it waited for its own call in flight,
whose reply only it reads): one run in three of a 50-client check hung. The write timeout
below turns such a hang into a failure."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.testing.cluster import UpProcess
from filodb.testing.wait import eventually

pytestmark = pytest.mark.e2e

CLIENTS = 16  # of each kind
ROUNDS = 25
NEW_SERIES = 40  # per remote-write body, each body its own series
KNOWN_SERIES = 300  # per Influx client, the same series every round
T0 = 1_700_000_000_000
STEP = 15_000
RW_HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}
TIMEOUT_S = 30  # a request not answered by then: the loop is stuck


def _new_series_body(client: int, rnd: int) -> bytes:
    series = [make_labels({"__name__": "mc_new", "c": str(client), "r": str(rnd), "i": str(i)})
              for i in range(NEW_SERIES)]  # fmt: skip
    sidx = np.repeat(np.arange(NEW_SERIES), 2)
    ts = np.tile(T0 + STEP * np.arange(2), NEW_SERIES)
    return encode_write_request(SampleBatch(series, sidx, ts, np.full(2 * NEW_SERIES, 1.0)))


def _known_series_body(client: int, rnd: int) -> bytes:
    t_ns = (T0 + STEP * rnd) * 1_000_000
    return "".join(f"mc_known,c={client},i={i} value={rnd + 1} {t_ns}\n"
                   for i in range(KNOWN_SERIES)).encode()  # fmt: skip


def _client(url: str, kind: str, client: int, start: threading.Barrier) -> list[int]:
    """One keep-alive connection's rounds; the status of each."""
    bodies = [(_new_series_body if kind == "rw" else _known_series_body)(client, r)
              for r in range(ROUNDS)]  # fmt: skip
    path, headers = (("/api/v1/write", RW_HEADERS) if kind == "rw"
                     else ("/write?db=prometheus", {"Content-Type": "text/plain"}))  # fmt: skip
    statuses = []
    with requests.Session() as s:
        start.wait(60)
        for body in bodies:
            r = s.post(url + path, data=body, headers=headers, timeout=TIMEOUT_S)
            statuses.append(r.status_code)
    return statuses


def _scalar(url: str, query: str, t_ms: int) -> float:
    r = requests.get(f"{url}/api/v1/query", params={"query": query, "time": t_ms / 1000},
                     timeout=60)  # fmt: skip
    assert r.status_code == 200, r.text
    res = r.json()["data"]["result"]
    return float(res[0]["value"][1]) if res else 0.0


def test_many_clients_known_and_new_series_at_once_are_all_answered(up: UpProcess) -> None:
    kinds = ["rw"] * CLIENTS + ["influx"] * CLIENTS
    start = threading.Barrier(len(kinds))
    with ThreadPoolExecutor(len(kinds)) as ex:
        futs = [ex.submit(_client, up.url, k, i, start) for i, k in enumerate(kinds)]
        statuses = [f.result(timeout=TIMEOUT_S * ROUNDS) for f in futs]
    assert all(s == 204 for got in statuses for s in got), statuses
    assert sum(map(len, statuses)) == len(kinds) * ROUNDS

    end = T0 + STEP * ROUNDS
    want_new = CLIENTS * ROUNDS * NEW_SERIES * 2
    want_known = CLIENTS * ROUNDS * KNOWN_SERIES
    # each known sample's value is its round + 1: the sum tells a sample lost from one twice
    want_sum = CLIENTS * KNOWN_SERIES * ROUNDS * (ROUNDS + 1) / 2

    def all_there() -> tuple[float, float, float]:
        got = (_scalar(up.url, "sum(count_over_time(mc_new[1h]))", end),
               _scalar(up.url, "sum(count_over_time(mc_known[1h]))", end),
               _scalar(up.url, "sum(sum_over_time(mc_known[1h]))", end))  # fmt: skip
        assert got == (want_new, want_known, want_sum), got
        return got

    eventually(all_there, 60)
