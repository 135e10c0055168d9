"""`filodb up` owns its process tree: kill -9 of the supervisor takes every child with it
(worker, web, gateway, Redis), and a second `filodb up` on the same data directory is refused
while the first runs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import requests

from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.redisproc import free_port
from filodb.testing.cluster import UpProcess, children_of, cmdline, rollup_mb, running
from filodb.testing.wait import wait_for
from filodb.tools.client import RW_HEADERS


def test_kill9_of_up_takes_its_children_and_the_data_dir_is_locked(tmp_path: Path) -> None:
    up = UpProcess(tmp_path / "data", shards=2).start()
    assert up.proc is not None
    kids = children_of(up.proc.pid)
    names = " ".join(cmdline(p) for p in kids)
    assert "redis-server" in names and "worker" in names and " web" in names, names

    second = subprocess.run(
        [sys.executable, "-m", "filodb", "up", "--data-dir", str(up.data_dir),
         "--port", str(free_port()), "--influx-port", "0", "--graphite-port", "0"],
        capture_output=True, text=True, timeout=60, env=up.env,
    )  # fmt: skip
    assert second.returncode == 2, second.stdout + second.stderr
    assert "another filodb up" in second.stdout + second.stderr
    assert all(running(p) for p in kids)  # the refused one touched nothing of the first

    os.kill(up.proc.pid, signal.SIGKILL)
    up.proc.wait()
    wait_for(lambda: not any(running(p) for p in kids), 30, "children gone after kill -9 of up",
             interval=0.1)  # fmt: skip

    again = UpProcess(tmp_path / "data", shards=2).start()  # the lock went with the process
    try:
        assert again.proc is not None and children_of(again.proc.pid)
    finally:
        again.stop()


def test_supervisor_stays_light_and_children_get_two_malloc_arenas(tmp_path: Path) -> None:
    """The supervisor only supervises: numpy and numba's LLVM (90 MB resident in a process
    that loads them), redis-py (hiredis), orjson and OpenSSL stay out of it (the CLI exec'd
    itself into filodb.supervisor.main: same pid, same command line); its children run with
    MALLOC_ARENA_MAX=2 unless the environment says otherwise."""
    up = UpProcess(tmp_path / "data", shards=2, env={"FILODB_INFLUX_PORT": "0"}).start()
    try:
        assert up.proc is not None
        maps = Path(f"/proc/{up.proc.pid}/maps").read_text()
        for lib in ("numpy", "llvmlite", "hiredis", "orjson", "libssl", "libcrypto", "_hashlib"):
            assert lib not in maps, f"the supervisor loaded {lib}"
        assert " -P -m filodb up " in f" {cmdline(up.proc.pid)} "  # ./ not on its path
        # the checked configuration came through a pipe: not in its environment
        environ = Path(f"/proc/{up.proc.pid}/environ").read_bytes()
        assert b"_FILODB_UP_CONFIG=fd:" in environ and b"redis_url" not in environ
        status = Path(f"/proc/{up.proc.pid}/status").read_text()
        rss_kb = int(status.split("VmRSS:")[1].split()[0])
        assert rss_kb < 32 << 10, (
            f"supervisor resident {rss_kb} kB (was 44 MB with the CLI's imports)"
        )
        for kind in ("worker", " web"):
            (pid,) = up.pids(kind)
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            assert b"MALLOC_ARENA_MAX=2" in env, kind
            assert "llvmlite" in Path(f"/proc/{pid}/maps").read_text()  # the check can fail
    finally:
        up.stop()


def _llvm_resident_mb(pid: int) -> int:
    """MiB of numba's LLVM library (``libllvmlite.so``) resident in process ``pid``."""
    kb, cur = 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(" ", 1)[0]
        if not head.endswith(":"):
            cur = "libllvmlite" in line
        elif cur and head == "Rss:":
            kb += int(line.split()[1])
    return kb >> 10


def test_children_give_back_llvm_library_pages_and_still_ingest_and_answer(
    tmp_path: Path,
) -> None:
    """Warm worker and web processes hold ~68 MB of LLVM's library each after numba's start:
    their trimmer drops those clean pages (the page cache keeps them), and every kernel the
    write and read paths run still works afterwards."""
    up = UpProcess(tmp_path / "data", shards=2, env={"FILODB_INFLUX_PORT": "0"}).start()
    try:
        pids = {kind: up.pids(kind)[0] for kind in ("worker", " web")}
        for kind, pid in pids.items():
            wait_for(lambda pid=pid: _llvm_resident_mb(pid) < 8, 60,  # type: ignore[misc]
                     f"{kind.strip()}: LLVM's library pages dropped", interval=0.2)  # fmt: skip
        base = (int(time.time()) // 60 - 20) * 60_000
        series = [make_labels({"__name__": "llvm_drop", "host": h}) for h in ("a", "b")]
        ts = base + 15_000 * np.arange(30)
        vals = np.concatenate([np.arange(30.0), 2 * np.arange(30.0)])
        batch = SampleBatch(series, np.repeat([0, 1], 30), np.tile(ts, 2), vals)
        r = requests.post(up.url + "/api/v1/write", data=encode_write_request(batch),
                          headers=RW_HEADERS, timeout=30)  # fmt: skip
        assert r.status_code == 204, r.text

        def summed() -> bool:
            q = {"query": "sum(sum_over_time(llvm_drop[1h]))", "time": (int(ts[-1]) + 1) / 1000}
            got = requests.get(up.url + "/api/v1/query", params=q, timeout=30).json()
            res = got["data"]["result"]
            return bool(res) and float(res[0]["value"][1]) == float(vals.sum())

        wait_for(summed, 60, "both series' samples summed back")
        assert all(running(p) for p in pids.values())
    finally:
        up.stop()


def test_web_in_worker_serves_both_tiers_from_one_process_and_survives_its_kill9(
    tmp_path: Path,
) -> None:
    """``--web-in-worker``: no web or gateway process; HTTP writes and queries go to the
    worker's own web server, Influx lines to its TCP door, and after kill -9 of that one
    process the supervisor starts it again and every acknowledged sample is back (replayed
    from the log)."""
    influx = free_port()
    up = UpProcess(tmp_path / "data", shards=2, extra=["--web-in-worker"],
                   env={"FILODB_INFLUX_PORT": str(influx), "FILODB_GRAPHITE_PORT": "0"}).start()  # fmt: skip
    try:
        assert up.proc is not None
        names = [cmdline(p) for p in children_of(up.proc.pid)]
        assert not any(" web" in n or " gateway" in n for n in names), names
        (pid,) = up.pids("worker")
        now = int(time.time())
        lines = "".join(f"mem3,host=h{i} value={i} {now}000000000\n" for i in range(10))
        r = requests.post(up.url + "/write?db=prometheus", data=lines, timeout=30)
        assert r.status_code == 204, r.text
        lines = "".join(f"mem3,host=h{i} value={i} {now}000000000\n" for i in range(10, 20))
        with socket.create_connection(("127.0.0.1", influx), timeout=30) as conn:
            conn.sendall(lines.encode())

        def total() -> float | None:
            q = {"query": 'sum({__name__=~"mem3.*"})', "time": now}
            res = requests.get(up.url + "/api/v1/query", params=q, timeout=30).json()
            if res["status"] != "success":  # e.g. shards recovering after the kill
                return None
            got = res["data"]["result"]
            return float(got[0]["value"][1]) if got else None

        # the TCP door acknowledges nothing: wait for every sample, not the first answer
        wait_for(lambda: total() == sum(range(20)), 60, "the samples answer", up.log_tail)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: up.pids("worker") not in ([], [pid]), 60, "the worker restarted",
                 up.log_tail)  # fmt: skip
        # partial answers (with a warning) while shards recover, then every sample again
        wait_for(lambda: total() == sum(range(20)), 90, "the samples answer again", up.log_tail)
    finally:
        up.stop()


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_children_are_forked_from_the_zygote_share_its_pages_and_survive_kill9s(
    tmp_path: Path,
) -> None:
    """The worker and the web are forked from the warmed zygote: children of the supervisor
    (its subreaper), with their own command line, sharing the imports' and kernels' pages
    with it (tens of MB each that an exec'd child holds alone). After kill -9 of the web, of
    the zygote, then of the worker, each comes back and every acknowledged sample answers."""
    up = UpProcess(tmp_path / "data", shards=2, env={"FILODB_INFLUX_PORT": "0"}).start()
    try:
        assert up.proc is not None
        (zygote,) = up.pids(" zygote")
        pids = {kind: up.pids(kind)[0] for kind in ("worker", " web")}
        for kind, pid in pids.items():
            assert _parent(pid) == up.proc.pid, kind
            assert f"-m filodb {kind.strip()}" in cmdline(pid)
            assert rollup_mb(pid, "Shared_Dirty") >= 30, (kind, rollup_mb(pid, "Shared_Dirty"))
        ts = int(time.time() // 60 - 5) * 60_000 + 15_000 * np.arange(8)
        batch = SampleBatch([make_labels({"__name__": "forked", "host": "a"})],
                            np.zeros(8, dtype=np.int32), ts, np.arange(8.0))  # fmt: skip
        r = requests.post(up.url + "/api/v1/write", data=encode_write_request(batch),
                          headers=RW_HEADERS, timeout=30)  # fmt: skip
        assert r.status_code == 204, r.text

        def summed() -> bool:
            q = {"query": "sum_over_time(forked[1h])", "time": (int(ts[-1]) + 1) / 1000}
            try:
                got = requests.get(up.url + "/api/v1/query", params=q, timeout=30).json()
            except (requests.RequestException, ValueError):  # the web restarting
                return False
            res = got.get("data", {}).get("result") or []
            return got.get("status") == "success" and bool(res) and float(res[0]["value"][1]) == 28

        wait_for(summed, 60, "the samples answer", up.log_tail)
        os.kill(pids[" web"], signal.SIGKILL)
        wait_for(lambda: up.pids(" web") not in ([], [pids[" web"]]), 60, "the web back",
                 up.log_tail)  # fmt: skip
        wait_for(summed, 60, "the samples answer through the new web", up.log_tail)
        os.kill(zygote, signal.SIGKILL)
        wait_for(lambda: up.pids(" zygote") not in ([], [zygote]), 60, "a new zygote",
                 up.log_tail)  # fmt: skip
        os.kill(pids["worker"], signal.SIGKILL)
        wait_for(lambda: up.pids("worker") not in ([], [pids["worker"]]), 60, "the worker back",
                 up.log_tail)  # fmt: skip
        (worker,) = up.pids("worker")
        assert _parent(worker) == up.proc.pid
        wait_for(summed, 90, "the samples answer after the worker's replay", up.log_tail)
        assert rollup_mb(worker, "Shared_Dirty") >= 30  # forked from the new zygote
    finally:
        up.stop()


def test_fork_children_off_execs_each_child(tmp_path: Path) -> None:
    """``FILODB_FORK_CHILDREN=0``: no zygote; each child is its own interpreter (no pages
    shared since a fork) and serves."""
    env = {"FILODB_INFLUX_PORT": "0", "FILODB_FORK_CHILDREN": "0"}
    up = UpProcess(tmp_path / "data", shards=2, env=env).start()
    try:
        assert up.pids(" zygote") == []
        for kind in ("worker", " web"):
            (pid,) = up.pids(kind)
            assert rollup_mb(pid, "Shared_Dirty") < 10, kind
        r = requests.get(f"{up.url}/api/v1/query", params={"query": "count(up)"}, timeout=30)
        assert r.status_code == 200, r.text
    finally:
        up.stop()
