"""``filodb up``: the embedded default as one supervised process tree.

Starts (or reuses) Redis, creates the default dataset, starts the worker node(s) and the web
server as child processes, restarts a child that dies, and stops everything on Ctrl-C/SIGTERM.
The web port is bound here, once, and its sockets handed to each of the ``web_processes`` web
processes (:mod:`filodb.web.wsgi_server`); with more than one, their counters go to a per-run
directory (``<data-dir>/run/web/metrics``: prometheus_client's multiprocess mode, which each
one's ``/metrics`` sums) and share ``<data-dir>/run/web`` (:mod:`filodb.web.processes`).
Redis runs with its files under ``<data-dir>/redis`` and ``appendonly yes``; its port is kept
in ``<data-dir>/redis/port`` so a restart of ``filodb up`` finds the same data.

The supervisor only starts and watches processes, so it imports next to nothing: once the CLI
has checked the flags (:func:`filodb.cli.up`), it replaces itself (``exec``, same pid, same
command line) by ``python -m filodb`` with the checked configuration in
:data:`CONFIG_ENV`, which runs :func:`main` without the CLI's imports (click, rich, the
model). Redis is spoken to with :class:`~filodb.redisproc.Resp`, the shard map written by
:mod:`filodb.shards.bootstrap` in a short-lived child, the web tier's health asked over a
plain socket: ~18 MB resident instead of ~44 (docs/architecture.md, memory per active series).
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn
from urllib.parse import urlparse

from filodb.config import Config
from filodb.errors import BadInputError, FiloError, UnavailableError
from filodb.listen import bind
from filodb.redisproc import (
    RedisProcess,
    dies_with_parent,
    free_port,
    redis_answers,
    start_redis,
    stop_process,
)
from filodb.zygote import ForkedProcess, Zygote, become_subreaper
from filodb.zygote import supported as zygote_supported

RESTART_BACKOFF_S = (0.5, 1, 2, 5)
ZYGOTE_STARTS = 3  # a zygote that keeps dying: the children are exec'd instead
CONFIG_ENV = "_FILODB_UP_CONFIG"  # the checked configuration, for the exec'd supervisor
_PIPE_BYTES = 60_000  # a configuration this small goes through a pipe (its buffer: 64 KiB)
SHARD_MAP_TIMEOUT_S = 120.0  # a filodb.shards.bootstrap child: Redis may still be loading


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | ForkedProcess | None = None
    node: str = ""
    restarts: int = 0
    started: float = 0.0
    log_path: Path | None = None
    pass_fds: tuple[int, ...] = ()  # descriptors the child inherits (the web port's sockets)
    metrics_dir: Path | None = None  # its prometheus_client multiprocess directory, if any
    zygote: Zygote | None = field(default=None, repr=False)  # forks it, when it can
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        if self.zygote is not None:
            self.proc = self.zygote.fork(self.argv[3:], self.env, self.log_path, self.pass_fds)
            if self.proc is not None:
                self.started = time.monotonic()
                return
        if self.log_path:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the child
        out = self._log or None
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=out,
                                     pass_fds=self.pass_fds, preexec_fn=dies_with_parent())  # fmt: skip
        self.started = time.monotonic()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout)


class Supervisor:
    """Runs the process tree of ``filodb up`` until stopped."""

    def __init__(self, cfg: Config, echo=print) -> None:
        self.cfg = cfg
        self.echo = echo
        self.data_dir = Path(cfg.data_dir).resolve()
        self.redis: RedisProcess | None = None
        self.children: list[Child] = []
        self.door_ports: list[int] = []  # the TCP doors' ports, once the gateway is spawned
        self.door_sockets: dict[str, socket.socket] = {}  # bound here, for the gateway
        self._gateway_env: dict[str, str] = {}
        self._gateway_started = False
        self.stopping = threading.Event()
        self._lock: IO[str] | None = None  # the data directory's lock, held while we run
        self.web_sockets: list[socket.socket] = []  # the web port, shared by the web processes
        self.zygote: Zygote | None = None  # the Python children's warmed parent (fork_children)
        self._zygote_starts = 0
        self._subreaper = False  # orphans of our descendants are ours to wait for

    # --- redis ----------------------------------------------------------------------------
    def _redis_port_file(self) -> Path:
        return self.data_dir / "redis" / "port"

    def ensure_redis(self) -> str:
        """The Redis URL to use: the configured one if it answers, else our own server."""
        url = self.cfg.redis_url
        if url and redis_answers(url):
            return url
        port = None
        if url:
            u = urlparse(url)
            if u.hostname not in ("127.0.0.1", "localhost", "::1"):
                raise UnavailableError(f"Redis at {url} does not answer")
            port = u.port or 6379
        elif self._redis_port_file().exists():
            port = int(self._redis_port_file().read_text().strip() or 0) or None
            if port is not None and not _port_free(port):
                port = None
        port = port or free_port()
        self.redis = start_redis(self.data_dir / "redis", port)
        self._redis_port_file().write_text(str(port))
        return self.redis.url

    def _lock_data_dir(self) -> None:
        """Hold an exclusive lock on the data directory while this process lives: a second
        ``filodb up`` on the same directory is refused instead of running beside the first."""
        path = self.data_dir / "filodb-up.lock"
        fh = open(path, "a+")  # noqa: SIM115 - held for the life of the process
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            fh.close()
            raise BadInputError(
                f"another filodb up (pid {holder}) runs on the data directory {self.data_dir}; "
                "stop it first or pass another --data-dir"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._lock = fh

    # --- children -------------------------------------------------------------------------
    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.cfg.to_env())
        env.pop("FILODB_NODE", None)
        # two malloc arenas, not one per thread (8 x cores): the web's and worker's threads
        # leave freed memory in their own arenas otherwise (docs/architecture.md, memory)
        env.setdefault("MALLOC_ARENA_MAX", "2")
        return env

    def _spawn(self, name: str, args: list[str], extra: dict[str, str] | None = None,
               **child: Any) -> Child:  # fmt: skip
        env = self._child_env()
        env.update(extra or {})
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        node = (extra or {}).get("FILODB_NODE", "")
        c = Child(name, [sys.executable, "-m", "filodb", *args], env, node=node,
                  log_path=logs / f"{name}.log", zygote=self.zygote, **child)  # fmt: skip
        c.start()
        self.children.append(c)
        return c

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_data_dir()
        try:
            self.web_sockets = bind(self.cfg.host, self.cfg.port, inheritable=True)
        except OSError:
            raise BadInputError(
                f"port {self.cfg.port} on {self.cfg.host} is in use (another filodb up?); pass --port"
            ) from None
        url = self.ensure_redis()
        self.cfg = self.cfg.replace(redis_url=url)
        c = self.cfg
        self._start_zygote()  # it warms up while the shard map is written
        self._shard_map("create", json.dumps({
            "url": url, "dataset": c.dataset, "shards": c.shards, "spread": c.spread,
            "downsample": c.downsample, "retention": c.retention}))  # fmt: skip
        if self.cfg.web_in_worker:  # one process for every tier (the CLI checked 1 and 1)
            fds = tuple(s.fileno() for s in self.web_sockets)
            self._spawn("node-1", ["worker", *(a for fd in fds for a in ("--listen-fd", str(fd)))],
                        {"FILODB_NODE": "node-1", **self._door_ports()}, pass_fds=fds)  # fmt: skip
        else:
            for i in range(1, max(1, self.cfg.workers) + 1):
                self._spawn(f"node-{i}", ["worker"], {"FILODB_NODE": f"node-{i}"})
            self._spawn_web()
            self._spawn_gateway()
        if self.cfg.rule_files:  # FILODB_RULE_FILES reaches it through the environment
            self._spawn("rules", ["rules"])

    def _start_zygote(self) -> None:
        """The warmed parent the Python children are forked from (:mod:`filodb.zygote`),
        when ``fork_children`` is on and this system can; a zygote that died is started
        again, up to :data:`ZYGOTE_STARTS` times (then children are exec'd)."""
        if not self.cfg.fork_children or not zygote_supported():
            return
        self._subreaper = self._subreaper or become_subreaper()
        if self._zygote_starts >= ZYGOTE_STARTS or not self._subreaper:
            self.zygote = None
        else:
            self._zygote_starts += 1
            (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
            z = Zygote(self._child_env(), self.data_dir / "logs" / "zygote.log",
                       dies_with_parent())  # fmt: skip
            z.start()
            self.zygote = z
        for c in self.children:
            c.zygote = self.zygote

    def _spawn_web(self) -> None:
        """``web_processes`` web processes serving the port bound in :meth:`start`; with more
        than one, their counters are shared through a directory emptied for this run."""
        n = max(1, self.cfg.web_processes)
        fds = tuple(s.fileno() for s in self.web_sockets)
        args = ["web", *(a for fd in fds for a in ("--listen-fd", str(fd)))]
        metrics_dir, extra = None, {}
        if n > 1:
            shared = self.data_dir / "run" / "web"
            shutil.rmtree(shared, ignore_errors=True)
            metrics_dir = shared / "metrics"
            metrics_dir.mkdir(parents=True)
            args += ["--shared-dir", str(shared)]
            extra = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
        for i in range(1, n + 1):
            self._spawn("web" if n == 1 else f"web-{i}", args, extra, pass_fds=fds,
                        metrics_dir=metrics_dir)  # fmt: skip

    def _door_ports(self) -> dict[str, str]:
        """The TCP doors' ports as their child's environment: a door whose port is 0 or
        negative, or already taken (a warning says so), is off (0)."""
        extra = {}
        for door in ("influx", "graphite"):
            port = getattr(self.cfg, f"{door}_port")
            if port > 0 and not _port_free(port, self.cfg.host):
                self.echo(f"warning: {door} port {port} is in use; the {door} TCP door is off")
                port = 0
            extra[f"FILODB_{door.upper()}_PORT"] = str(max(port, 0))
        self.door_ports = [int(v) for v in extra.values() if v != "0"]
        return extra

    def _spawn_gateway(self) -> None:
        """The TCP doors (Influx, Graphite) as one child, started at their first connection;
        no child when every door is off. This process binds the doors' ports and hands the
        sockets over (a connection waits in the kernel's backlog, its lines in its socket,
        while the gateway starts): a tree whose senders use HTTP only does not carry the
        gateway's ~240 MB (numba, the parsers, its caches). Where a door's host has several
        addresses the gateway binds them itself, at once, as before."""
        extra = self._door_ports()
        if not self.door_ports:
            return
        socks: dict[str, socket.socket] = {}
        try:
            for door in ("influx", "graphite"):
                port = int(extra[f"FILODB_{door.upper()}_PORT"])
                if port:
                    got = bind(self.cfg.host, port, inheritable=True)
                    socks[door] = got[0]
                    for extra_sock in got[1:]:
                        extra_sock.close()
                    if len(got) != 1:
                        raise OSError("several addresses")
        except OSError:
            for sock in socks.values():
                sock.close()
            self._spawn("gateway", ["gateway"], extra)
            return
        self.door_sockets, self._gateway_env = socks, extra

    def _gateway_when_called(self) -> None:
        """Start the gateway on the doors' sockets once one has a connection waiting."""
        if not self.door_sockets or self._gateway_started:
            return
        ready, _, _ = select.select(list(self.door_sockets.values()), [], [], 0)
        if not ready:
            return
        fds = tuple(s.fileno() for s in self.door_sockets.values())
        args = ["gateway", *(a for d, sock in self.door_sockets.items()
                             for a in ("--listen-fd", f"{d}={sock.fileno()}"))]  # fmt: skip
        self._gateway_started = True
        self._spawn("gateway", args, self._gateway_env, pass_fds=fds)

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """The web tier answers healthy and every TCP door accepts connections (the gateway
        loads its parsers' kernels before it listens: on a first start that compiles them,
        and a sender told "up" before then was refused)."""
        deadline = time.monotonic() + timeout
        healthy = False
        while time.monotonic() < deadline and not self.stopping.is_set():
            if not healthy:  # a 503 while starting, refused before it listens
                healthy = _http_status(self.cfg.host, self.cfg.port, "/admin/health") == 200
            held = {s.getsockname()[1] for s in self.door_sockets.values()}  # listening here
            if healthy and all(_listening(p, self.cfg.host) for p in self.door_ports
                               if p not in held):  # fmt: skip
                return True
            time.sleep(0.2)
        return False

    def supervise_once(self) -> None:
        """Restart whatever died (Redis first, since everything needs it); start the gateway
        at its doors' first connection."""
        if self.redis is not None and self.redis.proc.poll() is not None:
            self.echo(f"redis-server exited ({self.redis.proc.returncode}); restarting")
            self.redis = start_redis(self.redis.data_dir, self.redis.port)
        if self.redis is not None:
            self.redis.compact_aof()  # trimmed log records leave the disk too
        if self.zygote is not None and not self.zygote.alive() and not self.stopping.is_set():
            self.echo("the zygote exited; starting it again")
            self.zygote.stop()
            self._start_zygote()
        if not self.stopping.is_set():
            self._gateway_when_called()
        self._reap_orphans()
        for c in self.children:
            if not c.alive() and not self.stopping.is_set():
                delay = RESTART_BACKOFF_S[min(c.restarts, len(RESTART_BACKOFF_S) - 1)]
                if time.monotonic() - c.started < delay:
                    continue
                code = c.proc.returncode if c.proc else None
                if c.node:
                    self._mark_node_down(c.node)
                if c.metrics_dir is not None and c.proc is not None:
                    _forget_gauges(c.proc.pid, c.metrics_dir)
                c.restarts += 1
                self.echo(f"{c.name} exited ({code}); restarting (restart {c.restarts})")
                c.start()

    def _reap_orphans(self) -> None:
        """As a subreaper (:mod:`filodb.zygote`) this process inherits whatever a descendant
        left running when it died; wait for those that exited (not for the children it
        watches: their handles wait for them)."""
        if not self._subreaper:
            return
        known = {p.pid for p in self._procs()}
        while True:
            try:
                got = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if got is None or got.si_pid in known:
                return  # none exited, or the first is one we watch (its handle reaps it)
            try:
                os.waitpid(got.si_pid, os.WNOHANG)
            except ChildProcessError:
                return

    def _procs(self) -> list[Any]:
        procs: list[Any] = [c.proc for c in self.children if c.proc is not None]
        if self.zygote is not None and self.zygote.proc is not None:
            procs.append(self.zygote.proc)
        if self.redis is not None:
            procs.append(self.redis.proc)
        return procs

    def _mark_node_down(self, node: str) -> None:
        """A worker we started died: its shards are Down now, not after its heartbeat expires.

        The process is gone (we reaped it), so its ownership leases can go too: the new owners
        need not wait for them to expire."""
        try:
            self._shard_map("node-down", self.cfg.redis_url, node)
        except FiloError as e:  # Redis may be the thing that is down
            self.echo(f"could not mark {node}'s shards Down: {e}")

    def _shard_map(self, *args: str) -> None:
        """Run ``python -m filodb.shards.bootstrap *args`` (redis-py and the model stay out of
        this process); its exit 2 is :class:`BadInputError`, any other failure
        :class:`UnavailableError`, with the reason it printed."""
        env = {k: v for k, v in os.environ.items() if k != CONFIG_ENV}
        try:
            r = subprocess.run([sys.executable, "-m", "filodb.shards.bootstrap", *args], env=env,
                               capture_output=True, text=True, timeout=SHARD_MAP_TIMEOUT_S)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise UnavailableError(
                f"the shard map ({args[0]}) took more than {SHARD_MAP_TIMEOUT_S:.0f} s"
            ) from None
        if r.returncode != 0:
            lines = r.stderr.strip().splitlines()
            reason = lines[-1] if lines else f"exit {r.returncode}"
            raise (BadInputError if r.returncode == 2 else UnavailableError)(reason)

    def run(self) -> int:
        def on_signal(signum, _frame):
            self.stopping.set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGHUP, lambda *_: self.forward(signal.SIGHUP, "rules"))
        try:
            self.start()
            web = f"http://{self.cfg.host}:{self.cfg.port}"
            if self.wait_ready():
                self.echo(f"FiloDB is up: UI {web}/  API {web}/api/v1/query  data {self.data_dir}")
                self.echo("Press Ctrl-C to stop.")
            elif not self.stopping.is_set():
                self.echo(
                    f"FiloDB started but is not healthy yet; see {self.data_dir}/logs/ and {web}/admin/health"
                )
            while not self._tick(0.5):
                self.supervise_once()
        finally:
            self.shutdown()
        return 0

    def _tick(self, seconds: float) -> bool:
        """Wait up to ``seconds``, less when a connection reaches a TCP door whose gateway is
        not started yet (it is forked at once, not at the next tick); True once stopping."""
        if self.door_sockets and not self._gateway_started:
            try:
                select.select(list(self.door_sockets.values()), [], [], seconds)
            except (OSError, ValueError):  # a socket closed under us: wait as usual
                return self.stopping.wait(seconds)
            return self.stopping.is_set()
        return self.stopping.wait(seconds)

    def forward(self, signum: int, name: str) -> None:
        """Pass a signal on to a child (SIGHUP: the rules process reloads its files)."""
        for c in self.children:
            if c.name == name and c.alive() and c.proc is not None:
                c.proc.send_signal(signum)

    def shutdown(self) -> None:
        self.stopping.set()
        for c in reversed(self.children):
            c.stop()
        if self.zygote is not None:
            self.zygote.stop()
        for s in [*self.web_sockets, *self.door_sockets.values()]:
            s.close()
        if self.redis is not None:
            self.redis.stop()
        self.echo("FiloDB stopped.")


def _forget_gauges(pid: int, metrics_dir: Path) -> None:
    """A web process died: its live gauges (queries running) leave the sum; its counters stay
    in it, so the tier's totals never go back."""
    from prometheus_client.multiprocess import mark_process_dead

    mark_process_dead(pid, str(metrics_dir))


def _http_status(host: str, port: int, path: str, timeout: float = 1.0) -> int:
    """The status code of ``GET path`` (0 when there is no answer): HTTP/1.0 over a socket,
    since http.client would load OpenSSL's libraries into the supervisor."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
            head = b""
            while b"\r\n" not in head and len(head) < 256:
                got = s.recv(256)
                if not got:
                    break
                head += got
    except OSError:
        return 0
    parts = head.split(b"\r\n", 1)[0].split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0


def exec_supervisor(cfg: Config) -> NoReturn:
    """Become the supervisor of ``cfg`` (checked): ``exec`` this interpreter again as
    ``python -m filodb <the same arguments>`` with ``cfg`` in :data:`CONFIG_ENV`, so that the
    CLI's imports go (the pid, and for ``python -m filodb up`` the command line, stay)."""
    sys.stdout.flush()
    sys.stderr.flush()
    raw = json.dumps(dataclasses.asdict(cfg)).encode()
    env = dict(os.environ)
    if len(raw) < _PIPE_BYTES:  # through a pipe: tokens of a config file stay out of environ
        r, w = os.pipe()
        os.write(w, raw)
        os.close(w)
        os.set_inheritable(r, True)
        env[CONFIG_ENV] = f"fd:{r}"
    else:
        env[CONFIG_ENV] = raw.decode()
    # -P: the working directory is not put first on the module path (as a console script's
    # own launch does not either): a ./filodb or ./redis.py there is not imported
    argv = [sys.executable, "-P", "-m", "filodb", *sys.argv[1:]]
    try:
        os.execve(sys.executable, argv, env)
    except OSError:  # no interpreter to exec (embedded): supervise from here, imports and all
        os.environ[CONFIG_ENV] = env[CONFIG_ENV]
        main()


def _checked_config() -> Config:
    """The configuration :func:`exec_supervisor` handed over (a pipe's descriptor, or the
    JSON itself), taken out of the environment: the children do not inherit it."""
    src = os.environ.pop(CONFIG_ENV)
    if src.startswith("fd:"):
        fd = int(src[3:])
        with os.fdopen(fd, "rb") as f:
            src = f.read().decode()
    return Config(**json.loads(src))


def main() -> NoReturn:
    """The supervisor's entry (``python -m filodb`` with :data:`CONFIG_ENV` set)."""
    cfg = _checked_config()
    try:
        sys.exit(Supervisor(cfg, echo=_say).run())
    except FiloError as e:  # as filodb.cli's _fail says it
        red = sys.stderr.isatty() and "NO_COLOR" not in os.environ
        print(f"\x1b[31merror:\x1b[0m {e}" if red else f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2 if isinstance(e, BadInputError) else 1)


def _say(msg: str) -> None:
    print(msg, flush=True)  # a line each, whole when piped (filodb.cli._say)


def _listening(port: int, host: str = "127.0.0.1") -> bool:
    """Something accepts connections on ``port`` (the connection is closed at once)."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False
