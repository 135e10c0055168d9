"""Cold starts of ``filodb up``'s children, as a user meets them: the TCP doors' first line and
a web process back after kill -9, with children forked from the zygote and exec'd.

Prints one JSON object per line: ``{"metric", "value", "unit", ...context}``:

- ``tcp_first_line_queryable_s``: a fresh ``filodb up`` (healthy, then ``--idle-s`` idle),
  one Influx line sent on a new connection to its door, until a query answers it (the
  gateway is started at the doors' first connection: this includes that start);
- ``web_back_after_kill9_s``: kill -9 of the web process until ``/admin/health`` answers 200
  again (the supervisor's restart, with its first backoff of 0.5 s);

per ``fork_children`` (1: forked from the zygote, the default; 0: each child its own
interpreter), medians over ``--repeat`` trees. No peer: Prometheus and VictoriaMetrics are
one process each.

    python bench/cold_start.py
    python bench/cold_start.py --repeat 5
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from store import emit  # noqa: E402

from filodb.redisproc import free_port  # noqa: E402
from filodb.testing.cluster import UpProcess  # noqa: E402

POLL_S = 0.005


def first_line(up: UpProcess, port: int) -> float:
    now = int(time.time())
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"cold_start,host=a value=1 {now}000000000\n".encode())
    deadline = t0 + 60
    while time.perf_counter() < deadline:
        r = requests.get(up.url + "/api/v1/query", params={"query": "cold_start", "time": now},
                         timeout=30).json()  # fmt: skip
        if r.get("data", {}).get("result"):
            return time.perf_counter() - t0
        time.sleep(POLL_S)
    raise RuntimeError("the line never answered")


def web_back(up: UpProcess) -> float:
    (pid,) = up.pids(" web")
    t0 = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    deadline = t0 + 60
    while time.perf_counter() < deadline:
        try:
            if requests.get(up.url + "/admin/health", timeout=5).status_code == 200 and \
                    up.pids(" web") not in ([], [pid]):  # fmt: skip
                return time.perf_counter() - t0
        except requests.RequestException:
            pass
        time.sleep(POLL_S)
    raise RuntimeError("the web did not come back")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--idle-s", type=float, default=3.0, help="idle time before the first line")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        for fork in ("1", "0"):
            got: dict[str, list[float]] = {
                "tcp_first_line_queryable_s": [],
                "web_back_after_kill9_s": [],
            }
            for i in range(a.repeat):
                port = free_port()
                env = {"FILODB_INFLUX_PORT": str(port), "FILODB_FORK_CHILDREN": fork}
                up = UpProcess(Path(d) / f"{fork}-{i}", shards=4, env=env).start()
                try:
                    time.sleep(a.idle_s)  # an idle tree, as a user's first sender finds it
                    got["tcp_first_line_queryable_s"].append(first_line(up, port))
                    got["web_back_after_kill9_s"].append(web_back(up))
                finally:
                    up.stop()
            for metric, vals in got.items():
                emit(metric, statistics.median(vals), "s", fork_children=int(fork),
                     runs=[round(v, 3) for v in vals])  # fmt: skip


if __name__ == "__main__":
    main()
