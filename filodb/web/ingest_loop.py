"""One thread serving the ingestion requests of every keep-alive connection that sends them.

With a thread per connection (:mod:`filodb.web.wsgi_server`), four senders' threads take the
process's lock (the GIL) from each other at every socket call, lock and ``nogil`` kernel of a
body's path: ~17 context switches a body against ~1 with one sender, and ``perf`` put the
difference (~0.24 ms a 1 250-line Influx body, a fifth of the web process's CPU) in the
kernel's task switching. So once a connection has had an ingestion request answered (a
``POST`` that ``route(method, path)`` takes: the lean routes of
:mod:`filodb.web.ingest_wsgi`), its thread hands it to this loop and ends; the loop reads every
such connection without blocking, and calls the app for each request whose head and body have
come whole, one after the other, in its one thread.

A request that writes is taken to where it waits for the log's append (its records queued in
the log's group commit, :mod:`filodb.gateway.joiner`), and the log is asked to send every
append queued in one call without waiting for its reply (``send``,
:meth:`~filodb.ingest.base.Log.send_appends`); the loop reads and decodes the next requests
meanwhile (their appends queue for the next call) and answers the call's requests when its
connection turns readable. Waiting for the reply in the loop had left it idle ~30 % of the
time under four Influx senders (py-spy); a thread to wait for it cost as much in hand-offs of
the interpreter's lock as it saved. A log that cannot send so (Kafka) is waited for here.

The loop takes none of the server's app slots (``calls``, ``web_threads`` of them): it is
one thread, and the threads holding the slots may be waiting for it. A thread's write
queued behind the loop's call in the log's group commit waits for that call's reply, which
only the loop reads; with every slot held so, a loop waiting for a slot never read it (32
clients at once hung a request 30 s). So the app runs on at most ``web_threads`` + 1 threads.

What the loop does not serve it gives back to a thread of its own (``HttpServer.resume``,
with the bytes read so far), which serves it as any connection: a request of another route or
method, a body longer than ``PREFETCH_BYTES`` or without a Content-Length (chunked), ``Expect:
100-continue``, a head that is not HTTP/1.x (the thread answers its 4xx), an answer the socket
does not take at once. The server's rules hold here too: a request's head and body must come
within ``request_timeout`` of its first byte plus the body's length at
:data:`~filodb.web.http_conn.MIN_BODY_RATE` (else 408, or the connection closes mid-body), an
idle connection closes after ``channel_timeout``, ``max_requests`` answers close it, the
connection-limit eviction of idle connections applies (it shuts the socket; the loop reads
the end), and ``close`` ends the loop's connections as the threads' ones.
"""

from __future__ import annotations

import io
import logging
import re
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from filodb.gateway.joiner import QUEUED, Steps
from filodb.ingest.base import Sent
from filodb.web.http_conn import (
    BODYLESS,
    MAX_HEAD_BYTES,
    MIN_BODY_RATE,
    PREFETCH_BYTES,
    RECV_BYTES,
    BadRequest,
    Conn,
    error_answer,
)


class HttpServer(Protocol):
    """What the loop uses of its server (:class:`filodb.web.wsgi_server.HttpServer`)."""

    app: Callable[..., Any]
    ident: str
    timeout: float
    request_timeout: float
    max_requests: int

    @property
    def stopping(self) -> bool: ...

    def environ(self, head: bytes, addr: Any) -> tuple[dict[str, Any], bool, str]: ...

    def mark(self, sock: socket.socket, busy: bool) -> bool: ...

    def release(self, sock: socket.socket) -> None: ...

    def resume(self, conn: Conn, addr: Any, answered: int, unsent: bytes = b"",
               keep: bool = True) -> None: ...  # fmt: skip

    def http_date(self) -> str: ...


log = logging.getLogger("filodb.web.server")

TICK_S = 0.5  # how often deadlines are checked
_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]{1,18})[ \t]*(?=\r\n|$)")
_NOT_HERE = (b"\r\ntransfer-encoding:", b"\r\nexpect:")


_PENDING = object()
_SENT = object()  # the selector's mark of the log's call in flight
Answer = tuple[str, list[tuple[str, str]], bytes]
StepsApp = Callable[[dict[str, Any]], Steps[Answer]]
SendAppends = Callable[[], Sent | None]


def _step(steps: Steps[Answer], whole: bool = False) -> Any:
    """Run ``steps`` to its next yield (``QUEUED`` where it has only queued its write,
    ``_PENDING`` where it waits for the log) or, ``whole``, to its end: the answer, or the
    exception it raised."""
    try:
        while True:
            got = next(steps)
            if not whole:
                return QUEUED if got == QUEUED else _PENDING
    except StopIteration as e:
        return e.value
    except Exception as e:  # noqa: BLE001 - the request answers 500, the loop goes on
        return e


class _Owned:
    """A connection the loop holds: its bytes so far and its clocks."""

    __slots__ = ("conn", "addr", "answered", "start", "idle_since", "busy", "parked")

    def __init__(self, conn: Conn, addr: Any, answered: int) -> None:
        self.conn = conn
        self.addr = addr
        self.answered = answered
        self.start = 0.0  # monotonic time the current request's first byte came (0: none)
        self.idle_since = time.monotonic()
        self.busy = False  # its request waits for the log
        self.parked = False  # out of the selector meanwhile: it sent a next request whole


class _Flight:
    """A request whose steps wait for the log's append: what to answer when they go on."""

    __slots__ = ("owned", "env", "keep", "steps")

    def __init__(self, owned: _Owned, env: dict[str, Any], keep: bool,
                 steps: Steps[Answer]) -> None:  # fmt: skip
        self.owned = owned
        self.env = env
        self.keep = keep
        self.steps = steps


class IngestLoop:
    """See the module's docstring; ``run`` blocks until the server closes."""

    def __init__(self, server: HttpServer, route: Callable[[str, str], bool],
                 steps: StepsApp | None = None, send: SendAppends | None = None
                 ) -> None:  # fmt: skip
        self.server = server
        self.route = route
        self.steps = steps
        self.send = send  # the log's appends begun by the steps, sent (Log.send_appends)
        self._waiting: list[_Flight] = []  # at their wait, records queued, not yet sent
        self._sent: Sent | None = None  # the log's call in flight...
        self._sent_flights: list[_Flight] = []  # ...and the requests waiting for it
        self._sent_fd = -1
        self.calls_sent = 0  # calls made through send (for tests)
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._inbox: list[_Owned] = []
        self._lock = threading.Lock()
        self._running = False
        self.served = 0  # requests answered here (for tests)

    def wants(self, env: dict[str, Any]) -> bool:
        """Whether a connection whose last request was ``env`` should come here."""
        return self._running and self.route(env["REQUEST_METHOD"], env["PATH_INFO"])

    def adopt(self, conn: Conn, addr: Any, answered: int) -> bool:
        """Take a connection between requests (its thread then ends); False when the loop
        is not running (the thread keeps it)."""
        with self._lock:
            if not self._running:
                return False
            self._inbox.append(_Owned(conn, addr, answered))
        self.wake()
        return True

    def wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    # -- the loop ---------------------------------------------------------------------
    def run(self) -> None:
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        with self._lock:
            self._running = True
        next_tick = time.monotonic() + TICK_S
        try:
            while not self.server.stopping:
                ready: list[_Owned] = []
                for key, _ in self._sel.select(timeout=TICK_S):
                    if key.fileobj is self._wake_r:
                        ready += self._take_inbox()
                    elif key.data is _SENT:
                        ready += self._land()
                    elif self._read(key.data) and not key.data.busy:
                        ready.append(key.data)
                while ready:  # a pipelined request waits for the round after its elder's
                    reqs = [r for o in ready if (r := self._next_request(o)) is not None]
                    self._serve_all(reqs)
                    ready = [r[0] for r in reqs if self._next_ready(r[0])]
                    if self._sent is not None and self._sent.done:
                        ready += self._land()  # finished by a write of the pass (see there)
                now = time.monotonic()
                if now >= next_tick:
                    self._tick(now)
                    next_tick = now + TICK_S
        except Exception:  # noqa: BLE001 - a bug here must not leave connections hanging
            log.exception("ingestion loop")
        finally:
            with self._lock:
                self._running = False
            try:  # the requests waiting for the log are written and answered
                while self._sent is not None or self._waiting:
                    if self._sent is not None:
                        self._land()
                    else:
                        flights, self._waiting = self._waiting, []
                        self._resume(flights)
            except Exception:  # noqa: BLE001
                log.exception("ingestion loop")
            self._take_inbox()
            for key in list(self._sel.get_map().values()):
                if isinstance(key.data, _Owned):
                    self._close(key.data)
            self._sel.close()

    def _next_ready(self, o: _Owned) -> bool:
        """Whether ``o`` may hold its next request whole already (pipelined)."""
        return not o.busy and bool(o.conn.buf) and self._holds(o)

    def _holds(self, o: _Owned) -> bool:
        if o.parked:
            return True
        try:
            return self._sel.get_key(o.conn.sock).data is o
        except (KeyError, ValueError):
            return False

    def _take_inbox(self) -> list[_Owned]:
        """Register the connections handed over; those with bytes already read."""
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass
        with self._lock:
            got, self._inbox = self._inbox, []
        for o in got:
            o.conn.sock.setblocking(False)
            self._sel.register(o.conn.sock, selectors.EVENT_READ, o)
        return [o for o in got if o.conn.buf]  # pipelined bytes came with the last request

    def _read(self, o: _Owned) -> bool:
        """Read what a connection sent; False when nothing came (or it closed)."""
        conn = o.conn
        if o.busy and len(conn.buf) > MAX_HEAD_BYTES + PREFETCH_BYTES:
            self._unregister(o)  # its next request is here: no more until this one is answered
            o.parked = True
            return False
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            self._close(o)
            return False
        if not data:
            self._close(o)
            return False
        conn.buf += data
        return True

    def _next_request(self, o: _Owned) -> tuple[_Owned, dict[str, Any], bool] | None:
        """The next request ``o`` holds whole (its environ, and whether the connection stays
        open after it); None while it is still coming, or when the connection left the loop
        (given back to a thread: not a request for the loop; closed)."""
        conn = o.conn
        buf = conn.buf.lstrip(b"\r\n")
        conn.buf = buf
        if not buf:
            return None
        if not o.start:
            if not self.server.mark(conn.sock, True):
                self._close(o)  # evicted for a new connection as its request began
                return None
            o.start = time.monotonic()
        end = buf.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES + 4)
        if end < 0:
            if len(buf) >= MAX_HEAD_BYTES + 4:
                self._give_back(o)  # the thread answers 431
            return None
        head = buf[:end]
        low = head.lower()
        line_end = low.find(b"\r\n")
        m = _LENGTH.search(low, line_end if line_end >= 0 else len(low))
        size = int(m.group(1)) if m else -1
        if (size < 0 or size > PREFETCH_BYTES or any(x in low for x in _NOT_HERE)
                or not self._routed(head, line_end)):  # fmt: skip
            self._give_back(o)
            return None
        if len(buf) < end + 4 + size:
            return None  # the body is still coming
        body = buf[end + 4 : end + 4 + size]
        conn.buf = buf[end + 4 + size :]
        server = self.server
        try:
            env, http11, _method = server.environ(head, o.addr)
        except BadRequest as e:
            self._fail(o, e.code, str(e))
            return None
        env["wsgi.input"] = io.BytesIO(body)
        env["CONTENT_LENGTH"] = str(len(body))
        keep = http11 and env.get("HTTP_CONNECTION", "").lower() != "close"
        o.answered += 1
        if server.max_requests and o.answered >= server.max_requests:
            keep = False
        return o, env, keep

    def _routed(self, head: bytes, line_end: int) -> bool:
        first = head[: line_end if line_end >= 0 else len(head)].split(b" ")
        if len(first) != 3:
            return False
        path = first[1].split(b"?", 1)[0]
        return self.route(first[0].decode("latin-1"), path.decode("latin-1"))

    def _serve_all(self, reqs: list[tuple[_Owned, dict[str, Any], bool]]) -> None:
        """Take each of ``reqs`` to where it waits for the log (its records queued), send
        the log its appends unless a call is in flight (its reply is read when it comes, the
        next requests read and decoded meanwhile), and answer those that did not wait."""
        if not reqs:
            return
        ends: list[tuple[_Owned, dict[str, Any], bool, Any]] = []
        queued = []  # no app slot taken (server.calls): see the module's docstring
        for o, env, keep in reqs:
            steps = self.steps(env) if self.steps is not None else self._wsgi_steps(env)
            got = _step(steps)
            if got is QUEUED:  # every write queued first: the first made makes all
                queued.append((o, env, keep, steps))
            else:
                self._place(o, env, keep, steps, got, ends)
        for o, env, keep, steps in queued:
            self._place(o, env, keep, steps, _step(steps), ends)
        self._launch()
        for o, env, keep, got in ends:
            self._answer(o, env, keep, got)

    def _place(self, o: _Owned, env: dict[str, Any], keep: bool, steps: Steps[Answer],
               got: Any, ends: list[tuple[_Owned, dict[str, Any], bool, Any]]) -> None:  # fmt: skip
        """A request whose steps ``got`` to a wait joins the waiting ones; one at its end,
        ``ends``."""
        if got is _PENDING or got is QUEUED:
            o.busy = True
            self._waiting.append(_Flight(o, env, keep, steps))
        else:
            ends.append((o, env, keep, got))

    def _launch(self) -> None:
        """Send the waiting requests' appends in one call, unless one is in flight; when the
        log cannot (or a call of another thread's is in flight), finish them here."""
        if self._sent is not None or not self._waiting:
            return
        sent = None
        if self.send is not None:
            try:
                sent = self.send()
            except Exception:  # noqa: BLE001 - its appends failed: their waits raise it
                sent = None
        flights, self._waiting = self._waiting, []
        if sent is None:
            self._resume(flights)
            return
        self.calls_sent += 1
        self._sent, self._sent_flights = sent, flights
        self._sent_fd = sent.fileno()
        self._sel.register(self._sent_fd, selectors.EVENT_READ, _SENT)

    def _land(self) -> list[_Owned]:
        """The log's call in flight answered: its appends completed, its requests taken to
        their ends and answered, then the next call sent (what was queued meanwhile); their
        connections that hold a next request.

        Nothing the loop runs may wait for a call it sent and has not finished: only it reads
        the reply. A write the loop makes at once (a batch no cache resolved, or a group
        whose batches do not join) waits in the log's group commit, which then finishes the
        loop's call itself (``_GroupCommit.sent``), so ``run`` lands one found done. And a
        request's steps that wait for another thread's group (the joiner's ``written``) are
        resumed before the next call is sent: that thread's append may be in it."""
        sent, flights = self._sent, self._sent_flights
        assert sent is not None
        self._sel.unregister(self._sent_fd)
        self._sent, self._sent_flights = None, []
        sent.finish()  # nothing when a write the loop made at once finished it (it waited)
        ready = self._resume(flights)
        self._launch()
        return ready

    def _resume(self, flights: list[_Flight]) -> list[_Owned]:
        """Take ``flights`` to their ends (a wait not yet done is waited for here) and answer
        them; their connections that hold a next request."""
        ends = [(f, _step(f.steps, whole=True)) for f in flights]
        ready = []
        for f, got in ends:
            o = f.owned
            o.busy = False
            if o.parked:
                o.parked = False
                self._sel.register(o.conn.sock, selectors.EVENT_READ, o)
            if self._holds(o):  # else it closed (or was shut) while its request waited
                self._answer(o, f.env, f.keep, got)
                if self._next_ready(o):
                    ready.append(o)
        return ready

    def _answer(self, o: _Owned, env: dict[str, Any], keep: bool, got: Any) -> None:
        if isinstance(got, BaseException):
            log.error("%s %s", env["REQUEST_METHOD"], env["PATH_INFO"], exc_info=got)
            self._fail(o, 500, "internal server error")
        else:
            self._send(o, keep, *got)

    def _wsgi_steps(self, env: dict[str, Any]) -> Steps[Answer]:
        """The server's WSGI app called for ``env`` (no step to wait at)."""
        state: list[Any] = []
        parts: list[bytes] = []

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:  # fmt: skip
            state[:] = [status, headers]
            return parts.append  # WSGI's legacy write(): the answer is sent whole anyway

        result = self.server.app(env, start_response)
        try:
            parts.extend(bytes(p) for p in result)
        finally:
            if hasattr(result, "close"):
                result.close()
        if not state:
            raise RuntimeError("the app returned without start_response")
        return state[0], state[1], b"".join(parts)
        yield  # pragma: no cover - a generator, as the app's own steps

    def _send(self, o: _Owned, keep: bool, status: str, headers: list[tuple[str, str]],
              body: bytes) -> None:  # fmt: skip
        """Send an answer, as a thread's server writes it; the connection leaves the loop
        when it closes or the socket does not take the answer at once."""
        server = self.server
        payload = b"" if status.startswith(BODYLESS) else body
        names = {k.lower() for k, _ in headers}
        lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers)]
        if "content-length" not in names and not status.startswith(BODYLESS):
            lines.append(f"Content-Length: {len(payload)}")
        if "date" not in names:
            lines.append(f"Date: {server.http_date()}")
        if "server" not in names:
            lines.append(f"Server: {server.ident}")
        if not keep or server.stopping:
            keep = False
            lines.append("Connection: close")
        self.served += 1
        out = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
        try:
            sent = o.conn.sock.send(out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(o)
            return
        o.start = 0.0
        o.idle_since = time.monotonic()
        if sent < len(out):
            self._give_back(o, out[sent:], keep)
        elif not keep or not server.mark(o.conn.sock, False):
            self._close(o)

    def _tick(self, now: float) -> None:
        """Deadlines: a request too slow (408 or close), a connection idle too long."""
        server = self.server
        for key in list(self._sel.get_map().values()):
            o = key.data
            if not isinstance(o, _Owned) or o.busy:  # busy: read whole, waiting for the log
                continue
            if o.start:
                allowed = server.request_timeout
                buf = o.conn.buf
                end = buf.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES + 4)
                if end >= 0:
                    m = _LENGTH.search(buf[:end].lower())
                    allowed += int(m.group(1)) / MIN_BODY_RATE if m else 0
                if now - o.start > allowed:
                    if end < 0:
                        msg = f"request head not sent whole within {server.request_timeout:g} s"
                        self._fail(o, 408, msg)
                    else:
                        self._close(o)  # a body came short: as a thread, close
            elif now - o.idle_since > server.timeout:
                self._close(o)

    # -- leaving the loop -------------------------------------------------------------
    def _unregister(self, o: _Owned) -> None:
        try:
            self._sel.unregister(o.conn.sock)
        except (KeyError, ValueError):
            pass

    def _close(self, o: _Owned) -> None:
        self._unregister(o)
        self.server.release(o.conn.sock)

    def _fail(self, o: _Owned, code: int, message: str) -> None:
        """Answer an error the server gives itself and close, as a thread would."""
        self._unregister(o)
        head, body = error_answer(code, message)
        try:
            o.conn.sock.setblocking(True)
            o.conn.sock.settimeout(1.0)
            o.conn.sock.sendall(head + body)
            o.conn.linger()
        except OSError:
            pass
        self.server.release(o.conn.sock)

    def _give_back(self, o: _Owned, unsent: bytes = b"", keep: bool = True) -> None:
        self._unregister(o)
        if not keep:  # the rest of a closing answer: a thread sends it, then closes
            o.conn.buf = b""
        self.server.resume(o.conn, o.addr, o.answered, unsent, keep)
