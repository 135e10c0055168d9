"""Start and stop a real ``redis-server`` (Debian's package) for ``filodb up`` and tests."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from filodb.errors import UnavailableError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class RespError(Exception):
    """An error reply of the server (``-LOADING ...``, ``-NOAUTH ...``)."""


class Resp:
    """A RESP2 client of one connection, for the few commands ``filodb up``'s supervisor sends
    (``PING``, ``INFO``, ``BGREWRITEAOF``): redis-py costs its process ~17 MB resident for life
    (its imports, asyncio's among them, and OpenSSL's libraries), more than the supervisor
    needs for anything else. Servers, nodes and tools use redis-py."""

    def __init__(self, host: str, port: int, timeout: float, password: str | None = None,
                 username: str | None = None, db: int = 0) -> None:  # fmt: skip
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.rfile = self.sock.makefile("rb")
        try:
            if password is not None:
                self.call("AUTH", *([username] if username else []), password)
            if db:
                self.call("SELECT", str(db))
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_url(cls, url: str, timeout: float) -> Resp:
        """``redis://[[user]:password@]host[:port][/db]``; ValueError for another scheme."""
        u = urlparse(url)
        if u.scheme != "redis":
            raise ValueError(f"not a redis:// URL: {url!r}")
        db = u.path.strip("/") or "0"
        password = unquote(u.password) if u.password is not None else None
        return cls(u.hostname or "localhost", u.port or 6379, timeout, password,
                   unquote(u.username) if u.username else None, int(db))  # fmt: skip

    def call(self, *args: str) -> Any:
        """Send one command; its reply (str, int, bytes, None or a list); RespError for an
        error reply, OSError when the connection fails."""
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))
        return self._reply()

    def _reply(self) -> Any:
        line = self.rfile.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RespError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.rfile.read(n + 2)[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise ConnectionError(f"not a RESP reply: {line[:40]!r}")

    def info(self, section: str) -> dict[str, Any]:
        """``INFO section`` as a dict, numbers as int or float (as redis-py gives them)."""
        out: dict[str, Any] = {}
        for line in self.call("INFO", section).decode(errors="replace").splitlines():
            if not line or line.startswith("#") or ":" not in line:
                continue
            k, v = line.split(":", 1)
            try:
                out[k] = int(v)
            except ValueError:
                try:
                    out[k] = float(v)
                except ValueError:
                    out[k] = v
        return out

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    """Whether a Redis server answers PING at ``url`` (False while it loads its files: it
    answers ``-LOADING``)."""
    if not url.startswith("redis://"):  # rediss://, unix://: redis-py knows them all
        return _redis_py_answers(url, timeout)
    try:
        r = Resp.from_url(url, timeout)
    except (RespError, OSError, ValueError):
        return False
    try:
        return bool(r.call("PING") == "PONG")
    except (RespError, OSError, ValueError):
        return False
    finally:
        r.close()


def _redis_py_answers(url: str, timeout: float) -> bool:
    import redis

    try:
        r = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        ok = bool(r.ping())
        r.close()
        return ok
    except (redis.RedisError, OSError, ValueError):
        return False


# Bytes a stream's radix-tree node (one listpack of entries) may hold before the next entry
# starts a new one. Redis's default 4096 puts each node of log records (0.6-2.3 kB each) in a
# small jemalloc size class (2.5-5 kB regions, several to a slab): trimming some shards'
# streams while others keep theirs left slabs with one or two live nodes, and Debian's
# redis-server (system jemalloc) cannot defragment (``activedefrag`` refuses). At 64 kB a node
# is a page-granular allocation of its own, so a trimmed node's pages go back to the system.
STREAM_NODE_MAX_BYTES = 65536
# jemalloc (Debian's redis-server links the system's) keeps freed pages for 10 s before it
# gives them back; log records are freed in bursts (a flush trims a shard's stream), so Redis
# held the last trims' pages (31 MB at 110 k series right after a live run) for no reuse.
REDIS_MALLOC_CONF = "dirty_decay_ms:1000"
AOF_CHECK_EVERY_S = 10.0
AOF_MIN_BYTES = 16 << 20  # an append-only file smaller than this is never rewritten early


def aof_wasteful(aof_bytes: int, dataset_bytes: int, rewriting: bool) -> bool:
    """Whether the append-only file holds mostly what is gone (log records trimmed after
    their flush): more than twice the data set and more than :data:`AOF_MIN_BYTES`."""
    return not rewriting and aof_bytes > max(AOF_MIN_BYTES, 2 * dataset_bytes)


@dataclass
class RedisProcess:
    """A redis-server child process with its files under ``data_dir``."""

    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    _client: Resp | None = field(default=None, repr=False)
    _checked: float = field(default=float("-inf"), repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self, timeout: float = 10.0) -> None:
        if self._client is not None:
            self._client.close()
        stop_process(self.proc, timeout)

    def compact_aof(self, now: float | None = None) -> bool:
        """Rewrite the append-only file (``BGREWRITEAOF``) when :func:`aof_wasteful` says so;
        checked at most every :data:`AOF_CHECK_EVERY_S`. Redis's own rule (the file doubled
        since its last rewrite) never fires once writes stop, so a log trimmed after a
        backfill would keep its records on disk. Returns whether a rewrite was started."""
        now = time.monotonic() if now is None else now
        if now - self._checked < AOF_CHECK_EVERY_S:
            return False
        self._checked = now
        try:
            if self._client is None:
                self._client = Resp.from_url(self.url, 5.0)
            aof = self._client.info("persistence")
            if not aof.get("aof_enabled"):
                return False
            data = int(self._client.info("memory").get("used_memory_dataset", 0))
            busy = bool(aof.get("aof_rewrite_in_progress") or aof.get("aof_rewrite_scheduled"))
            if not aof_wasteful(int(aof.get("aof_current_size", 0)), data, busy):
                return False
            self._client.call("BGREWRITEAOF")
            return True
        except (RespError, OSError, ValueError):  # restarting or loading: the next check retries
            self._drop_client()
            return False

    def _drop_client(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except OSError:
                pass
            self._client = None


class Stoppable(Protocol):
    """What :func:`stop_process` calls: a ``subprocess.Popen`` or a forked child's handle
    (:class:`filodb.zygote.ForkedProcess`)."""

    def poll(self) -> int | None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def wait(self, timeout: float | None = None) -> int: ...


def stop_process(proc: Stoppable, timeout: float) -> None:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_redis(
    data_dir: str | Path, port: int | None = None, appendonly: bool = True, wait_s: float = 20
) -> RedisProcess:
    """Start redis-server on 127.0.0.1 with AOF on (``appendfsync everysec``) and wait for PING.

    Raises :class:`UnavailableError` when the binary is missing or the server does not answer.
    """
    exe = shutil.which("redis-server")
    if exe is None:
        raise UnavailableError(
            "redis-server not found: install Debian's redis-server (apt-get install redis-server)"
        )
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [
        exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir.resolve()),
        "--appendonly", "yes" if appendonly else "no", "--appendfsync", "everysec",
        "--save", "", "--daemonize", "no", "--protected-mode", "yes",
        "--logfile", str((data_dir / "redis.log").resolve()),
        "--client-output-buffer-limit", "pubsub", "256mb", "64mb", "60",
        "--stream-node-max-bytes", str(STREAM_NODE_MAX_BYTES),
    ]  # fmt: skip
    env = dict(os.environ)
    env.setdefault("MALLOC_CONF", REDIS_MALLOC_CONF)  # the caller's own setting wins
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=dies_with_parent(), env=env)  # fmt: skip
    rp = RedisProcess(proc, port, data_dir)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UnavailableError(
                f"redis-server exited with {proc.returncode}; see {data_dir}/redis.log"
            )
        if redis_answers(rp.url, 0.2):
            # Loading a large AOF answers PING with LOADING errors; wait for a real answer.
            return rp
        time.sleep(0.05)
    rp.stop()
    raise UnavailableError(f"redis-server on port {port} did not answer within {wait_s}s")


PR_SET_PDEATHSIG = 1


def dies_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``sig`` when the process that started it
    dies, however it dies (kill -9 included), so nothing of a process tree outlives its
    supervisor (Linux ``prctl(PR_SET_PDEATHSIG)``; None elsewhere).

    The signal follows the death of the starting *thread*: start children from a thread that
    lives as long as they should (the main thread).
    """
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), int(sig))

    return preexec


def prctl(option: int, value: int) -> bool:
    """Linux ``prctl(option, value)``; False where it failed or there is none."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
