"""Run a real ``filodb up`` process tree for end-to-end tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from filodb.redisproc import RedisProcess, free_port
from filodb.testing.wait import wait_for, wait_healthy


def children_of(pid: int) -> list[int]:
    """Every descendant pid of ``pid`` (Linux /proc), deepest last."""
    out: list[int] = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            kids = [int(x) for x in fh.read().split()]
    except OSError:
        return out
    for k in kids:
        out.append(k)
        out.extend(children_of(k))
    return out


def running(pid: int) -> bool:
    """True while ``pid`` runs (a zombie has exited: its files and ports are released)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def tree_memory(pid: int) -> int:
    """Bytes the tree holds in memory counting each page once: every process's anonymous
    memory plus, for each mapped file (libllvmlite.so, numpy, libpython), the most any one
    process has of its pages resident (its copied-on-write pages are anonymous). Summed RSS
    counts a shared library once per process."""
    anon, files = 0, dict[str, int]()
    for p in [pid, *children_of(pid)]:
        per_file: dict[str, int] = {}
        try:
            with open(f"/proc/{p}/smaps") as fh:
                name = ""
                for line in fh:
                    head = line.split(None, 1)[0]
                    if "-" in head and not head.endswith(":"):
                        parts = line.split()
                        name = parts[5] if len(parts) > 5 and parts[5].startswith("/") else ""
                    elif head == "Anonymous:":  # a file mapping's copied-on-write pages too
                        kb = int(line.split()[1]) * 1024
                        anon += kb
                        if name:  # its Rss counted them: the file's share is the rest
                            per_file[name] -= kb
                    elif head == "Rss:" and name:
                        per_file[name] = per_file.get(name, 0) + int(line.split()[1]) * 1024
        except OSError:
            continue
        for name, rss in per_file.items():
            files[name] = max(files.get(name, 0), rss)
    return anon + sum(files.values())


class UpProcess:
    """``filodb up`` in a subprocess with its own data dir and free ports."""

    def __init__(self, data_dir: Path, shards: int = 4, extra: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "filodb", "up", "--port", str(self.port),
                     "--data-dir", str(self.data_dir), "--shards", str(shards), *(extra or [])]  # fmt: skip
        self.env = {**os.environ, **(env or {})}
        self.env = {
            k: v for k, v in self.env.items() if not k.startswith("FILODB_") or k in (env or {})
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-up.log"

    def start(self, wait_s: float = 90) -> UpProcess:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=log,
                                     start_new_session=True)  # fmt: skip
        self.wait_healthy(wait_s)
        return self

    def wait_healthy(self, wait_s: float = 90) -> None:
        def alive() -> None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"filodb up exited {self.proc.returncode}: {self.log_tail()}")

        wait_healthy(self.url, wait_s, "filodb up", self.log_tail, alive)

        # then its own word: it says so once the TCP doors listen too (Supervisor.wait_ready)
        def said_ready() -> bool:
            alive()
            tail = self.log_tail(1 << 20)
            return "FiloDB is up" in tail or "not healthy yet" in tail

        wait_for(said_ready, wait_s, "filodb up's ready line", self.log_tail)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def pids(self, match: str) -> list[int]:
        """Descendant pids whose command line contains ``match`` (e.g. "worker")."""
        assert self.proc is not None
        return [p for p in children_of(self.proc.pid) if match in cmdline(p)]

    def kill9_all(self) -> None:
        """SIGKILL the whole tree at once (Redis included), like a power cut of processes."""
        assert self.proc is not None
        pids = [self.proc.pid, *children_of(self.proc.pid)]
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        wait_for(lambda: not any(running(p) for p in pids), 10, "killed processes gone",
                 interval=0.05)  # fmt: skip

    def stop(self, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        tree = children_of(self.proc.pid)
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9_all()
            code = -9
        for p in tree:  # nothing may outlive the supervisor
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return code


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
