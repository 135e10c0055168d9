"""Run a real ``filodb up`` process tree for end-to-end tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from filodb.redisproc import RedisProcess, free_port
from filodb.testing.wait import wait_healthy
from filodb.uptree import UpTree, children_of, cmdline, running


def rollup_mb(pid: int, field: str) -> int:
    """MiB of ``field`` (``Shared_Dirty``, ``Private_Dirty``) in ``pid``'s smaps_rollup."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) >> 10
    return 0


def tree_memory(pid: int) -> int:
    """Bytes the tree holds in memory counting each page once: every process's share of its
    anonymous pages (``Pss_Anon``: a page that forked processes share, not yet copied, is
    split between them; filodb.zygote's children share their imports and kernels so) plus,
    for each mapped file (libllvmlite.so, numpy, libpython), the most any one process has of
    its pages resident (its copied-on-write pages are anonymous). Summed RSS counts a shared
    library, and a page shared since a fork, once per process."""
    anon, files = 0, dict[str, int]()
    for p in [pid, *children_of(pid)]:
        per_file: dict[str, int] = {}
        try:
            with open(f"/proc/{p}/smaps_rollup") as fh:
                anon += sum(int(line.split()[1]) * 1024 for line in fh
                            if line.startswith("Pss_Anon:"))  # fmt: skip
            with open(f"/proc/{p}/smaps") as fh:
                name = ""
                for line in fh:
                    head = line.split(None, 1)[0]
                    if "-" in head and not head.endswith(":"):
                        parts = line.split()
                        name = parts[5] if len(parts) > 5 and parts[5].startswith("/") else ""
                    elif head == "Anonymous:":  # a file mapping's copied-on-write pages too
                        kb = int(line.split()[1]) * 1024
                        if name:  # its Rss counted them: the file's share is the rest
                            per_file[name] -= kb
                    elif head == "Rss:" and name:
                        per_file[name] = per_file.get(name, 0) + int(line.split()[1]) * 1024
        except OSError:
            continue
        for name, rss in per_file.items():
            files[name] = max(files.get(name, 0), rss)
    return anon + sum(files.values())


class UpProcess(UpTree):
    """``filodb up`` in a subprocess with its own data dir and free ports (see
    :class:`filodb.uptree.UpTree`); ``start`` waits for its health check and ready line."""

    def start(self, wait_s: float = 90) -> UpProcess:
        """Start it and wait until it is healthy and up; a start that fails stops what it
        started (a test that fails there leaves no tree running behind it)."""
        self.spawn()
        try:
            self.wait_healthy(wait_s)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_healthy(self, wait_s: float = 90) -> None:
        wait_healthy(self.url, wait_s, "filodb up", self.log_tail, self.check_alive)
        # then its own word: it says so once the TCP doors listen too (Supervisor.wait_ready)
        self.wait_ready(time.monotonic() + wait_s)


class ClusterProcesses:
    """A cluster of separate processes, none supervised: Redis, the web server and N worker
    nodes sharing one data directory, each started, killed and restarted by the test.

    Unlike ``filodb up`` nothing restarts a killed worker, so a test sees the coordinator move
    its shards to the other nodes.
    """

    def __init__(self, data_dir: Path, shards: int = 8, env: dict[str, str] | None = None) -> None:
        from filodb.redisproc import start_redis  # noqa: F401 - imported early for a clear error

        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.redis: RedisProcess | None = None
        self.web: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        base = {k: v for k, v in os.environ.items() if not k.startswith("FILODB_")}
        self.env = {**base, "FILODB_REDIS_URL": self.redis_url, "FILODB_PORT": str(self.port),
                    "FILODB_DATA_DIR": str(self.data_dir), "FILODB_SHARDS": str(shards),
                    **(env or {})}  # fmt: skip
        self.logs = self.data_dir / "logs"
        self.logs.mkdir(exist_ok=True)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        return subprocess.Popen([sys.executable, "-m", "filodb", *args], env=self.env,
                                stdout=log, stderr=log, start_new_session=True)  # fmt: skip

    def start_redis(self) -> None:
        from filodb.redisproc import start_redis

        self.redis = start_redis(self.data_dir / "redis", self.redis_port)

    def kill_redis(self) -> None:
        assert self.redis is not None
        self.redis.proc.kill()
        self.redis.proc.wait()

    def start(self, workers: int = 3, wait_s: float = 120) -> ClusterProcesses:
        self.start_redis()
        for i in range(1, workers + 1):
            self.start_worker(f"node-{i}")
        self.web = self._spawn("web", ["web"])
        self.wait_healthy(wait_s)
        return self

    def start_worker(self, name: str) -> None:
        self.workers[name] = self._spawn(name, ["worker", "--node", name])

    def kill_worker(self, name: str, sig: int = signal.SIGKILL) -> None:
        p = self.workers.pop(name)
        os.killpg(p.pid, sig)
        p.wait(60)

    def wait_healthy(self, wait_s: float = 120) -> None:
        wait_healthy(self.url, wait_s, "cluster", self.log_tail)

    def status(self, dataset: str = "prometheus") -> list[dict]:
        return requests.get(f"{self.url}/api/v1/cluster/{dataset}/status", timeout=10).json()[
            "data"
        ]

    def owners(self, dataset: str = "prometheus") -> dict[int, tuple[str, str]]:
        """shard → (node, status)."""
        return {r["shard"]: (r["node"], r["status"]) for r in self.status(dataset)}

    def log_tail(self, n: int = 2000) -> str:
        out = []
        for f in sorted(self.logs.glob("*.log")):
            out.append(f"--- {f.name}\n" + f.read_text(errors="replace")[-n:])
        return "\n".join(out)

    def stop(self) -> None:
        procs = [*self.workers.values(), *([self.web] if self.web else [])]
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.workers.clear()
        if self.redis is not None:
            self.redis.stop()


# children_of, cmdline and running live in filodb.uptree; the tests and benches import them here
__all__ = ["ClusterProcesses", "UpProcess", "children_of", "cmdline", "running", "tree_memory"]
