"""The web tier's HTTP/1.1 server: one thread per connection, the WSGI app called in it.

Waitress reads a request in its one event-loop thread, hands it to a task thread through a
queue and condition, and hands the answer back to the loop through a pipe: each body costs the
web process a few GIL hand-offs between threads that wake each other, and under four
concurrent remote-write senders its CPU a body measured 1.67-1.72 ms against 1.10-1.17 ms
when each connection's own thread reads the request, calls the app and writes the answer
(as the TCP doors do; ``docs/architecture.md``, "Data path"). So this server does that:

* ``run`` accepts (a poll over the listening sockets, non-blocking ``accept``: sockets shared
  by several web processes let the first one take a connection and the others see
  ``EAGAIN``) and starts a thread per connection, at most ``connection_limit`` at once (the
  kernel's backlog holds the rest); the app runs in at most ``threads`` of them at a time.
* A connection's thread reads the request head (at most ``MAX_HEAD_BYTES``), answers what is
  not HTTP/1.x itself (400, 431: a 4xx in Prometheus's JSON error shape, bad input never
  answers 5xx) and closes; else it
  calls the app with a ``wsgi.input`` that reads the body from the socket as the app asks
  (``Content-Length``: the app's own limit answers 413 before a byte is read; chunked bodies
  are decoded up to ``max_body_bytes`` + 1 so the app sees one byte too many and refuses;
  ``Expect: 100-continue`` is answered when the app first reads).
* HTTP/1.1 connections stay open (also after a 204, which has no Content-Length) unless the
  client asks ``Connection: close``, the body was not read whole, the answer's length is
  unknown on HTTP/1.0, or ``max_requests`` answers were given; an answer of unknown length
  goes chunked on HTTP/1.1. A socket idle or stalled ``channel_timeout`` seconds is closed.
* Slow clients (slowloris): a request head must come whole within ``request_timeout`` of its
  first byte (else 408), a body within ``request_timeout`` plus its length at 64 KiB/s (else
  the app reads it short: 400, and the connection closes); a body up to ``PREFETCH_BYTES`` is
  read before the app gets one of its ``threads`` slots, so a trickling sender holds a
  connection, not an app slot; and at ``connection_limit`` with a client waiting in the
  backlog, the connection idle longest (between requests, or waiting for a head's bytes) for
  at least ``EVICT_IDLE_S`` is closed for it, as nginx reuses idle keep-alive connections.
* ``close`` stops accepting, wakes idle connections and waits a little for the requests in
  flight.
* With ``loop_route``, a keep-alive connection whose request that route takes (``filodb web``:
  the lean ingestion routes) is handed, once answered, to one thread serving all such
  connections without blocking (:mod:`filodb.web.ingest_loop`): several senders' bodies then
  cost the process what one sender's do, instead of the threads' hand-offs. What the loop does
  not serve it hands back to a thread of its own (:meth:`HttpServer.resume`).

Several web processes serve one port by sharing its listening sockets: ``filodb up`` binds
them once (:func:`filodb.listen.bind`) and hands their descriptors to each web
process it starts (``filodb web --listen-fd``, :func:`inherited_sockets`). The kernel queues
connections on the shared socket and the process first to ``accept`` takes one; a web process
that dies or restarts leaves the port bound and the queued connections to the others. A client
keeps its connections open, so a few busy connections could all stay on one process: while
the port is shared, the server closes a connection after ``max_requests`` answers
(``Connection: close``, as Go's and nginx's servers may) and the client's next connection goes
to whichever process is free.
"""

from __future__ import annotations

import io
import logging
import re
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote_to_bytes

from filodb.listen import bind
from filodb.web.http_conn import (
    BODYLESS,
    DRAIN_BYTES,
    PREFETCH_BYTES,
    RECV_BYTES,
    REQUEST_TIMEOUT_S,
    BadRequest,
    Body,
    Closed,
    Conn,
    FileWrapper,
    TooLong,
    dechunk,
    error_answer,
)
from filodb.web.ingest_loop import IngestLoop, SendAppends, StepsApp

log = logging.getLogger("filodb.web.server")

SHARED_PORT_MAX_REQUESTS = 32  # answers per connection while processes share the port
EVICT_IDLE_S = 1.0  # at the connection limit, an idle connection this old may go for a new one
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(rb"HTTP/(\d)\.(\d)")


class _Request:
    """One request's parsed head and what its answer must do with the connection."""

    __slots__ = ("env", "keep", "head_only", "body")

    def __init__(self, env: dict[str, Any], keep: bool, head_only: bool) -> None:
        self.env = env
        self.keep = keep
        self.head_only = head_only
        self.body: Body | None = None


class HttpServer:
    """See the module's docstring. ``run`` blocks until ``close``."""

    def __init__(self, app: Callable[..., Any], sockets: list[socket.socket], threads: int = 16,
                 connection_limit: int = 100, ident: str = "filodb", channel_timeout: float = 300,
                 max_requests: int = 0, max_body_bytes: int = 1 << 30,
                 request_timeout: float = REQUEST_TIMEOUT_S,
                 loop_route: Callable[[str, str], bool] | None = None,
                 loop_steps: StepsApp | None = None,
                 loop_send: SendAppends | None = None) -> None:  # fmt: skip
        self.app = app
        self.sockets = sockets
        self.ident = ident
        self.timeout = channel_timeout
        self.request_timeout = request_timeout
        self.max_requests = max_requests
        self.max_body_bytes = max_body_bytes
        self.calls = threading.BoundedSemaphore(max(1, threads))
        self.connection_limit = max(1, connection_limit)
        self._slots = threading.BoundedSemaphore(self.connection_limit)
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        # socket -> (inside a request, monotonic time it last went idle)
        self._conns: dict[socket.socket, tuple[bool, float]] = {}
        self._lock = threading.Lock()
        self._date = (0, "")
        # keep-alive connections whose requests ``loop_route(method, path)`` takes go to one
        # thread serving them all (:mod:`filodb.web.ingest_loop`), through ``loop_steps`` (the
        # app's answer in steps: several requests' log appends joined, sent by ``loop_send``
        # and their reply read when it comes) or the app
        self.loop: IngestLoop | None = (
            IngestLoop(self, loop_route, loop_steps, loop_send) if loop_route else None
        )
        first = sockets[0].getsockname()
        self.effective_host, self.effective_port = first[0], first[1]
        self._server_name = (
            socket.getfqdn(first[0]) if first[0] not in ("", "0.0.0.0", "::") else "localhost"
        )

    # -- accepting --------------------------------------------------------------------
    def run(self) -> None:
        if self.loop is not None:
            threading.Thread(target=self.loop.run, daemon=True, name="filodb-ingest").start()
        sel = selectors.DefaultSelector()
        for s in self.sockets:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                if not self._slots.acquire(timeout=0.5):
                    self._evict_for(sel)  # connection_limit open: one idle may go for a new one
                    continue
                took = False
                try:
                    for key, _ in sel.select(timeout=0.5):
                        if key.fileobj is self._wake_r or self._stop.is_set():
                            continue
                        try:
                            sock, addr = key.fileobj.accept()  # type: ignore[union-attr]
                        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                            continue  # another process (or a reset) took it
                        except OSError as e:
                            log.warning("accept: %s", e)
                            time.sleep(0.05)  # out of descriptors: let some close
                            continue
                        took = True
                        self._start(sock, addr)
                        break
                finally:
                    if not took:
                        self._slots.release()
        finally:
            sel.close()

    def _evict_for(self, sel: selectors.BaseSelector) -> None:
        """At the connection limit with a connection waiting in the backlog: close the
        connection idle longest (between requests, or still waiting for a head's bytes) if it
        has been for ``EVICT_IDLE_S``, so idle keep-alive clients and slow heads cannot keep
        every slot while others wait (nginx reuses idle keep-alive connections the same way;
        a client sees its idle connection closed and opens another)."""
        if not any(k.fileobj is not self._wake_r for k, _ in sel.select(timeout=0)):
            return
        now = time.monotonic()
        with self._lock:
            idle = [(since, s) for s, (busy, since) in self._conns.items() if not busy]
        if not idle:
            return
        since, victim = min(idle, key=lambda x: x[0])
        if now - since < EVICT_IDLE_S:
            return
        with self._lock:
            if self._conns.get(victim, (True, 0.0))[0]:
                return  # it began a request meanwhile
            self._conns[victim] = (True, now)  # evicted once
        try:
            victim.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _start(self, sock: socket.socket, addr: Any) -> None:
        sock.setblocking(True)
        sock.settimeout(self.timeout)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._conns[sock] = (False, time.monotonic())
        threading.Thread(target=self._serve, args=(sock, addr), daemon=True,
                         name="filodb-http").start()  # fmt: skip

    def close(self, grace_s: float = 5.0) -> None:
        """Stop accepting; idle connections close now, requests in flight get ``grace_s``."""
        self._stop.set()
        if self.loop is not None:
            self.loop.wake()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        for s in self.sockets:
            s.close()
        deadline = time.monotonic() + grace_s
        while True:
            with self._lock:
                idle = [s for s, (busy, _) in self._conns.items() if not busy]
                left = len(self._conns)
            for s in idle:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            if not left or time.monotonic() > deadline:
                return
            time.sleep(0.02)

    # -- one connection ---------------------------------------------------------------
    def _serve(self, sock: socket.socket, addr: Any, conn: Conn | None = None,
               answered: int = 0, unsent: bytes = b"") -> None:  # fmt: skip
        """Serve a connection until it closes or the ingestion loop takes it; ``conn``,
        ``answered`` and ``unsent`` (an answer's bytes still to send) when the loop hands one
        back (:meth:`resume`)."""
        conn = conn or Conn(sock, self.timeout, self.request_timeout)
        taken = False
        try:
            if unsent:
                conn.send(unsent)
            while not self._stop.is_set():
                try:
                    head = conn.head()
                    if head is None:
                        return
                    with self._lock:
                        if self._conns.get(sock, (False,))[0]:
                            return  # evicted while its head came in
                        self._conns[sock] = (True, 0.0)
                    req = self._parse(head, conn, addr)
                    answered += 1
                    if self.max_requests and answered >= self.max_requests:
                        req.keep = False
                    self._answer(conn, req)
                except BadRequest as e:
                    conn.send(*error_answer(e.code, str(e)))
                    conn.linger()
                    return
                if not req.keep or self._stop.is_set():
                    return
                with self._lock:
                    self._conns[sock] = (False, time.monotonic())
                loop = self.loop
                if loop is not None and not conn.broken and loop.wants(req.env):
                    taken = loop.adopt(conn, addr, answered)
                    if taken:
                        return
        except Closed:
            return
        except Exception:  # noqa: BLE001 - a bug here ends this connection, not the server
            log.exception("HTTP connection from %s", addr)
        finally:
            if not taken:
                self.release(sock)

    def release(self, sock: socket.socket) -> None:
        """Forget and close a connection (its slot free for another)."""
        with self._lock:
            self._conns.pop(sock, None)
        try:
            sock.close()
        finally:
            self._slots.release()

    def resume(self, conn: Conn, addr: Any, answered: int, unsent: bytes = b"",
               keep: bool = True) -> None:  # fmt: skip
        """A connection the ingestion loop gives back, served by a thread of its own again
        (``unsent``: the rest of an answer the loop could not send at once; then closed
        unless ``keep``)."""
        sock = conn.sock
        sock.setblocking(True)
        sock.settimeout(self.timeout)
        self.mark(sock, False)
        target: Callable[..., None] = self._serve if keep else self._finish_send
        threading.Thread(target=target, args=(sock, addr, conn, answered, unsent),
                         daemon=True, name="filodb-http").start()  # fmt: skip

    def _finish_send(self, sock: socket.socket, _addr: Any, conn: Conn, _answered: int,
                     unsent: bytes) -> None:  # fmt: skip
        try:
            conn.send(unsent)
        except Closed:
            pass
        finally:
            self.release(sock)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def mark(self, sock: socket.socket, busy: bool) -> bool:
        """Note a connection busy (inside a request) or idle since now; False when it was
        evicted meanwhile (it must close)."""
        with self._lock:
            if busy and self._conns.get(sock, (False,))[0]:
                return False
            self._conns[sock] = (True, 0.0) if busy else (False, time.monotonic())
        return True

    def _parse(self, head: bytes, conn: Conn, addr: Any) -> _Request:
        env, http11, method = self.environ(head, addr)
        keep = http11 and env.get("HTTP_CONNECTION", "").lower() != "close"
        req = _Request(env, keep, method == "HEAD")
        conn.sent_continue = not (http11 and env.get("HTTP_EXPECT", "").lower() == "100-continue")
        coding = env.get("HTTP_TRANSFER_ENCODING", "").lower()
        if coding:
            if "CONTENT_LENGTH" in env:
                raise BadRequest(400, "both Content-Length and Transfer-Encoding")
            if coding != "chunked":
                raise BadRequest(400, f"Transfer-Encoding {coding!r} not supported (chunked is)")
            try:
                data = dechunk(conn, self.max_body_bytes + 1)
            except TooLong as e:
                data, req.keep = e.data, False  # the rest of the body is not read
            env["wsgi.input"] = io.BytesIO(data)
            env["CONTENT_LENGTH"] = str(len(data))
            return req
        size = env.get("CONTENT_LENGTH", "")
        if size:
            if not valid_length(size):
                raise BadRequest(400, "invalid Content-Length")
            req.body = Body(conn, int(size))
            conn.body_deadline(req.body.left)
            env["wsgi.input"] = req.body
        else:
            env["wsgi.input"] = io.BytesIO(b"")
        return req

    def environ(self, head: bytes, addr: Any) -> tuple[dict[str, Any], bool, str]:
        """The WSGI environ of a request ``head`` (without ``wsgi.input``), whether it is
        HTTP/1.1, and its method; ``BadRequest`` when it is not HTTP/1.x."""
        lines = head.split(b"\r\n")
        first = lines[0].split(b" ")
        if len(first) != 3 or not _TOKEN.fullmatch(first[0]):
            raise BadRequest(400, "malformed request line")
        method_b, target_b, version_b = first
        m = _VERSION.fullmatch(version_b)
        if m is None:
            raise BadRequest(400, "malformed HTTP version")
        if m.group(1) != b"1":
            raise BadRequest(400, "HTTP version not supported (1.0 and 1.1 are)")
        http11 = m.group(2) != b"0"
        env: dict[str, Any] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not _TOKEN.fullmatch(name):
                raise BadRequest(400, "malformed header line")
            key = name.decode("latin-1").upper().replace("-", "_")
            if "_" in name.decode("latin-1"):
                continue  # as waitress: X_Forwarded_For must not pose as X-Forwarded-For
            if key not in ("CONTENT_LENGTH", "CONTENT_TYPE"):
                key = "HTTP_" + key
            text = value.strip(b" \t").decode("latin-1")
            env[key] = env[key] + "," + text if key in env else text
        target = target_b.decode("latin-1")
        if target.startswith(("http://", "https://")):  # absolute form
            target = "/" + target.split("://", 1)[1].partition("/")[2]
        elif not target.startswith("/") and not (target == "*" and method_b == b"OPTIONS"):
            raise BadRequest(400, "malformed request target")
        path, _, query = target.partition("?")
        method = method_b.decode("latin-1")
        env.update({
            "REQUEST_METHOD": method, "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(path.partition("#")[0]).decode("latin-1"),
            "QUERY_STRING": query.partition("#")[0], "REQUEST_URI": target,
            "RAW_URI": target, "SERVER_NAME": self._server_name,
            "SERVER_PORT": str(self.effective_port),
            "SERVER_PROTOCOL": "HTTP/1.1" if http11 else "HTTP/1.0",
            "REMOTE_ADDR": addr[0] if isinstance(addr, tuple) else "",
            "REMOTE_PORT": str(addr[1]) if isinstance(addr, tuple) else "",
            "SERVER_SOFTWARE": self.ident, "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True,
            "wsgi.run_once": False, "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
        })  # fmt: skip
        return env, http11, method

    def _answer(self, conn: Conn, req: _Request) -> None:
        env = req.env
        state: list[Any] = []  # status, headers, head sent

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:  # fmt: skip
            if exc_info and state and state[2]:
                raise exc_info[1].with_traceback(exc_info[2])
            state[:] = [status, headers, False]
            return write

        chunked = [False]

        def write(data: bytes) -> None:  # the legacy write(), and each body part
            if not state[2]:
                send_head(None, data)
            elif data and not req.head_only and not bodyless():
                conn.send(b"%x\r\n" % len(data), data, b"\r\n") if chunked[0] else conn.send(data)

        def bodyless() -> bool:
            return state[0].startswith(BODYLESS)

        def send_head(length: int | None, first: bytes = b"") -> None:
            status, headers = state[0], state[1]
            names = {k.lower() for k, _ in headers}
            lines = [f"HTTP/1.1 {status}"]
            lines += [f"{k}: {v}" for k, v in headers]
            if "content-length" not in names and not bodyless():
                if length is not None:
                    lines.append(f"Content-Length: {length}")
                elif env["SERVER_PROTOCOL"] == "HTTP/1.1":
                    lines.append("Transfer-Encoding: chunked")
                    chunked[0] = True
                else:
                    req.keep = False
            if "date" not in names:
                lines.append(f"Date: {self.http_date()}")
            if "server" not in names:
                lines.append(f"Server: {self.ident}")
            if req.body is not None and req.body.left > DRAIN_BYTES:
                req.keep = False  # not worth reading the unread rest to keep the connection
            if conn.broken:
                req.keep = False  # its body came short: what follows is not a request
            if not conn.sent_continue:
                req.keep = False  # the client may send the body it was not asked for
            if not req.keep:
                lines.append("Connection: close")
            head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            state[2] = True
            if req.head_only or bodyless() or not first:
                conn.send(head)
            elif chunked[0]:
                conn.send(head + b"%x\r\n" % len(first), first, b"\r\n")
            else:
                conn.send(head, first)

        def failed(what: str) -> Exception:
            """What a failure of the app answers: 500, or closing when half an answer is out."""
            log.exception("%s %s%s", env["REQUEST_METHOD"], env["PATH_INFO"], what)
            if state and state[2]:
                return Closed()  # half an answer sent: only closing can tell
            return BadRequest(500, "internal server error")

        if req.body is not None and req.body.left <= PREFETCH_BYTES and conn.sent_continue:
            conn.prefetch(req.body.left)  # a slow sender waits here, not in an app slot
        with self.calls:
            try:
                result = self.app(env, start_response)
            except Exception:
                raise failed("") from None
        try:
            if isinstance(result, (list, tuple)) and state and not state[2]:
                parts = [bytes(p) for p in result]
                size = sum(map(len, parts))
                send_head(size, parts[0] if len(parts) == 1 else b"".join(parts))
            else:
                for part in result:
                    if not state:
                        raise RuntimeError("the app yielded a body before start_response")
                    if part:
                        write(part)
                if not state[2]:
                    send_head(0)
                elif chunked[0] and not req.head_only:
                    conn.send(b"0\r\n\r\n")
        except Closed:
            raise
        except Exception:
            raise failed(": while answering") from None
        finally:
            if hasattr(result, "close"):
                result.close()
        if req.keep and req.body is not None and req.body.left:  # before the next request
            while req.body.left and req.body.read(min(req.body.left, RECV_BYTES)):
                pass
        conn.end_body()

    def http_date(self) -> str:
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, formatdate(now, usegmt=True))
        return self._date[1]


def valid_length(size: str) -> bool:
    """Whether a Content-Length header's text is a length this server takes."""
    return size.isascii() and size.isdigit() and len(size) <= 18


def make_server(app: Any, max_requests: int = 0, *, sockets: list[socket.socket] | None = None,
                host: str = "127.0.0.1", port: int = 0, **kw: Any) -> HttpServer:  # fmt: skip
    """The server for ``app`` on ``sockets`` (or a new one on ``host:port``); ``max_requests``
    > 0 closes each connection after that many answers. Not yet running: call ``run``."""
    return HttpServer(app, sockets if sockets else bind(host, port), max_requests=max_requests,
                      **kw)  # fmt: skip


def inherited_sockets(fds: list[int]) -> list[socket.socket]:
    """The listening sockets behind the descriptors a parent handed down (``--listen-fd``)."""
    return [socket.socket(fileno=fd) for fd in fds]
