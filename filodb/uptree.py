"""A ``filodb up`` process tree run as a child: its own data directory, free port and log
file; started, waited for, and stopped together with every process under it.

``filodb warm`` runs its throwaway tree with it; the end-to-end tests and the benchmarks run
theirs through :class:`filodb.testing.cluster.UpProcess`, which adds the HTTP health wait.
The child gets the caller's environment without its ``FILODB_*`` settings (a user's
``FILODB_SHARDS`` must not leak into a throwaway tree), except those passed in ``env``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from filodb.errors import FiloError
from filodb.redisproc import free_port

# what the supervisor prints once its tree answers (Supervisor.run via wait_ready), or when it
# gave up waiting but keeps supervising
READY_LINES = ("FiloDB is up", "not healthy yet")


class UpTreeError(FiloError, RuntimeError):
    """The tree exited or did not get somewhere in time; the message ends with its log tail."""


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


class UpTree:
    """``filodb up --port <free> --data-dir <data_dir> --shards <shards> *extra``; its output
    goes to ``log_path`` (default: ``<data_dir>-up.log`` beside the data directory)."""

    def __init__(self, data_dir: Path, shards: int = 4, extra: list[str] | None = None,
                 env: dict[str, str] | None = None, log_path: Path | None = None) -> None:  # fmt: skip
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "filodb", "up", "--port", str(self.port),
                     "--data-dir", str(self.data_dir), "--shards", str(shards), *(extra or [])]  # fmt: skip
        given = env or {}
        merged = {**os.environ, **given}
        self.env = {k: v for k, v in merged.items() if not k.startswith("FILODB_") or k in given}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = log_path or self.data_dir.parent / f"{self.data_dir.name}-up.log"

    def spawn(self) -> None:
        """Start the tree in its own session (so nothing of it gets the caller's Ctrl-C)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=log,
                                         start_new_session=True)  # fmt: skip

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def check_alive(self) -> None:
        """Raise :class:`UpTreeError` with the log tail if the supervisor has exited."""
        assert self.proc is not None, "spawn() first"
        if self.proc.poll() is not None:
            raise UpTreeError(f"filodb up exited {self.proc.returncode}:\n{self.log_tail()}")

    def wait_until(self, ok: Callable[[], bool], what: str, deadline: float) -> None:
        """Poll ``ok`` (backing off from 50 ms to 1 s) until true; raise
        :class:`UpTreeError` once the tree exited or ``time.monotonic()`` passed
        ``deadline``. Polling: a child's log and sockets have nothing to wake us."""
        pause = 0.05
        while not ok():
            self.check_alive()
            if time.monotonic() > deadline:
                raise UpTreeError(f"timed out waiting for {what}:\n{self.log_tail()}")
            time.sleep(pause)
            pause = min(pause * 1.5, 1.0)

    def wait_ready(self, deadline: float) -> None:
        """Until the supervisor prints its ready line (its web tier and TCP doors answer)."""
        self.wait_until(lambda: any(x in self.log_tail(1 << 20) for x in READY_LINES),
                        "filodb up's ready line", deadline)  # fmt: skip

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
        deadline = time.monotonic() + 10
        while any(running(p) for p in pids):
            if time.monotonic() > deadline:
                raise UpTreeError(f"killed processes still running: {pids}")
            time.sleep(0.05)  # the kernel reaps them: nothing to wake us

    def stop(self, timeout: float = 30) -> int:
        """Ctrl-C the supervisor (a clean stop flushes); SIGKILL the tree after ``timeout``
        s. Nothing may outlive the supervisor. Returns its exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        tree = children_of(self.proc.pid)
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9_all()
            code = -9
        for p in tree:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return code


__all__ = ["READY_LINES", "UpTree", "UpTreeError", "children_of", "cmdline", "running"]
