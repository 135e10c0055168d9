"""`filodb up --web-processes 2`: two web processes, forked from the zygote, serve one port.
Writes answered by either
are all queryable, ``/metrics`` sums what both counted, a web process killed -9 loses nothing
acknowledged (the other keeps answering, the supervisor starts it again), and the tree stops
cleanly."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.testing.cluster import UpProcess, rollup_mb, running
from filodb.testing.wait import eventually, wait_for

pytestmark = pytest.mark.e2e

SERIES = 20  # per write request, each request its own series (label req)
SAMPLES = 6
T0 = 1_700_000_000_000
STEP = 15_000
HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}


def _body(req: int) -> bytes:
    series = [
        make_labels({"__name__": "wp_m", "req": str(req), "i": str(i)}) for i in range(SERIES)
    ]
    sidx = np.repeat(np.arange(SERIES), SAMPLES)
    ts = np.tile(T0 + STEP * np.arange(SAMPLES), SERIES)
    return encode_write_request(SampleBatch(series, sidx, ts, np.full(SERIES * SAMPLES, 1.0 + req)))


def _write(url: str, req: int) -> bool:
    """One write on a connection of its own (so the accept race spreads them); acknowledged?"""
    try:
        r = requests.post(f"{url}/api/v1/write", data=_body(req), headers=HEADERS, timeout=30)
    except requests.RequestException:
        return False  # the process answering it was killed: not acknowledged
    assert r.status_code in (204, 503), r.text
    return r.status_code == 204


def _counts_by_req(url: str) -> dict[int, float]:
    r = requests.get(f"{url}/api/v1/query", timeout=60, params={
        "query": "sum by (req) (count_over_time(wp_m[1h]))",
        "time": (T0 + STEP * SAMPLES) / 1000})  # fmt: skip
    assert r.status_code == 200, r.text
    return {int(x["metric"]["req"]): float(x["value"][1]) for x in r.json()["data"]["result"]}


def _metric(url: str, name: str, **labels: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=30).text
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == name and labels.items() <= s.labels.items())  # fmt: skip


def _samples_by_pid(metrics_dir: Path) -> dict[int, float]:
    """Samples each web process counted (its own file of the shared metrics directory)."""
    out = {}
    for f in glob.glob(str(metrics_dir / "counter_*.db")):
        pid = int(Path(f).stem.split("_")[1])
        try:  # a process just (re)started may not have sized its file yet: nothing counted
            d = MmapedDict(f, read_mode=True)
        except OSError:  # io.UnsupportedOperation (truncate on an empty file) among them
            out[pid] = 0.0
            continue
        out[pid] = sum(v for k, v, _ in d.read_all_values() if "filodb_ingest_samples_total" in k)
    return out


@pytest.fixture(scope="module")
def up2(tmp_path_factory: pytest.TempPathFactory) -> UpProcess:
    proc = UpProcess(tmp_path_factory.mktemp("webproc") / "data", shards=2,
                     extra=["--web-processes", "2", "--influx-port", "0", "--graphite-port", "0"])  # fmt: skip
    yield proc.start()
    proc.stop()


def test_query_concurrency_limit_holds_across_web_processes(up2: UpProcess) -> None:
    url = up2.url
    r = requests.post(f"{url}/api/v1/cluster/wpq", timeout=30,
                      json={"shards": 2, "limits": {"max_query_concurrency": 1, "query_timeout": "20s"}})  # fmt: skip
    assert r.status_code == 200, r.text
    up2.wait_healthy(60)
    body = _body(0)
    assert requests.post(f"{url}/promql/wpq/api/v1/write", data=body, headers=HEADERS,
                         timeout=30).status_code == 204  # fmt: skip
    params = {"query": "count(count_over_time(wp_m[1h]))", "time": (T0 + STEP * SAMPLES) / 1000}
    q = f"{url}/promql/wpq/api/v1/query"
    wait_for(lambda: requests.get(q, params=params, timeout=10).json()["data"]["result"], 30,
             "wpq queryable")  # fmt: skip
    workers = up2.pids("worker")
    first: dict[str, int] = {}

    def slow() -> None:
        first["status"] = requests.get(q, params=params, timeout=60).status_code

    for p in workers:  # the leaf work cannot answer: the first query holds its slot
        os.kill(p, signal.SIGSTOP)
    try:
        th = threading.Thread(target=slow)
        th.start()
        wait_for(lambda: _metric(url, "filodb_queries_running", dataset="wpq") == 1, 10,
                 "the first query running")  # fmt: skip
        for _ in range(6):  # each on a connection of its own: either process answers
            r = requests.get(q, params={**params, "timeout": "300ms"}, timeout=30)
            assert r.status_code == 503, r.text
            assert "max_query_concurrency=1" in r.json()["error"], r.text  # not a leaf timeout
    finally:
        for p in workers:
            os.kill(p, signal.SIGCONT)
    th.join(60)
    assert first["status"] == 200
    assert _metric(url, "filodb_queries_refused_total", dataset="wpq") == 6
    assert _metric(url, "filodb_queries_running", dataset="wpq") == 0


def test_two_web_processes_share_the_port_sum_metrics_and_survive_kill9(up2: UpProcess) -> None:
    url = up2.url
    webs = up2.pids(" web")
    assert len(webs) == 2, webs
    # healthy only once both serve (the supervisor and UpProcess waited for that)
    health = requests.get(f"{url}/admin/health", timeout=10).json()
    assert health["status"] == "healthy" and "web_processes" not in health
    assert sorted(int(p.name) for p in (up2.data_dir / "run/web/ready").iterdir()) == sorted(webs)
    for pid in webs:  # forked from the zygote: its imports' and kernels' pages shared
        assert rollup_mb(pid, "Shared_Dirty") >= 30, (pid, rollup_mb(pid, "Shared_Dirty"))
    metrics_dir = up2.data_dir / "run" / "web" / "metrics"

    # --- writes until both processes have answered some: every one is queryable ------------
    base = _metric(url, "filodb_ingest_samples_total", door="remote_write")
    base_by_pid = _samples_by_pid(metrics_dir)
    acked: list[int] = []
    while len(acked) < 200:
        for _ in range(10):
            assert _write(url, len(acked))
            acked.append(len(acked))
        by_pid = _samples_by_pid(metrics_dir)
        if all(by_pid.get(p, 0) > base_by_pid.get(p, 0) for p in webs):
            break
    assert all(by_pid.get(p, 0) > base_by_pid.get(p, 0) for p in webs), (
        f"one process answered every write: {by_pid}"
    )
    want = SERIES * SAMPLES
    got = eventually(lambda: _all_in(url, acked, want), 60)
    assert set(got) == set(acked)

    # --- /metrics sums both processes, whichever answers the scrape ------------------------
    for _ in range(4):  # new connections: the scrapes land on either process
        got_n = _metric(url, "filodb_ingest_samples_total", door="remote_write")
        assert got_n == base + len(acked) * want
        assert _metric(url, "filodb_http_requests_total", route="/api/v1/write",
                       code="204") == len(acked)  # fmt: skip

    # --- kill -9 one web process while writes go on ----------------------------------------
    stop = threading.Event()
    during: list[tuple[int, bool]] = []

    def writer() -> None:  # until stopped, about 50 writes a second at most
        req = len(acked)
        while req < len(acked) + 3000 and not stop.wait(0.02):
            during.append((req, _write(url, req)))
            req += 1

    th = threading.Thread(target=writer)
    th.start()
    try:
        wait_for(lambda: len(during) >= 20, 60, "writes before the kill")
        victim = webs[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: not running(victim), 10, "killed web process gone", interval=0.05)
        # the other one answers meanwhile
        assert requests.get(f"{url}/-/ready", timeout=10).status_code == 200
        n = len(during)
        wait_for(lambda: len(during) >= n + 20, 60, "writes after the kill")
        restarted = wait_for(lambda: [p for p in up2.pids(" web") if p not in webs], 60,
                             "the supervisor starts the killed web process again", up2.log_tail)  # fmt: skip
        wait_for(lambda: _samples_by_pid(metrics_dir).get(restarted[0], 0) > 0, 60,
                 "the restarted web process answers writes", up2.log_tail)  # fmt: skip
    finally:
        stop.set()
        th.join(60)
    assert len(up2.pids(" web")) == 2
    ok = [req for req, good in during if good]
    assert len(ok) >= len(during) - 5, f"{len(during) - len(ok)} writes failed around one kill"
    everything = acked + ok
    got = eventually(lambda: _all_in(url, everything, want), 60)
    assert set(everything) <= set(got)  # an unacknowledged write may be in too

    # the dead process's counts stay in the sum: it never goes back
    got_n = _metric(url, "filodb_ingest_samples_total", door="remote_write")
    assert got_n >= base + len(everything) * want
    assert _metric(url, "filodb_queries_running") == 0  # gauges of live processes only

    # --- filodb status through the shared port, then a clean stop --------------------------
    st = subprocess.run([sys.executable, "-m", "filodb", "status", "--url", url],
                        capture_output=True, text=True, timeout=60, env=up2.env)  # fmt: skip
    assert st.returncode == 0 and "Active" in st.stdout, st.stdout + st.stderr
    tree = up2.pids("")
    assert up2.stop() == 0
    assert not any(running(p) for p in tree)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/-/ready", timeout=5)


def _all_in(url: str, reqs: list[int], want: float) -> dict[int, float]:
    got = _counts_by_req(url)
    missing = [r for r in reqs if got.get(r) != want]
    assert not missing, f"{len(missing)} acknowledged writes not (fully) queryable: {missing[:10]}"
    return got
