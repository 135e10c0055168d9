"""The web server's ingestion loop (:mod:`filodb.web.ingest_loop`) on a real socket: the
requests it serves after a connection's first one, answered as a thread answers them; what it
gives back to a thread (another route, a large body, an answer the socket does not take at
once); and the server's rules on slow, idle and malformed clients, kept in the loop.
``tests/web/test_http_server.py`` runs the server's whole suite with the loop on as well."""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask, Response, request

from filodb.testing.wait import eventually
from filodb.web.wsgi_server import HttpServer, make_server

BIG = bytes(range(256)) * 8192  # 2 MiB: more than a socket takes at once


def _app() -> Flask:
    app = Flask("t")

    @app.post("/echo")
    def echo() -> Response:
        return Response(request.get_data(), mimetype="application/octet-stream")

    @app.post("/big")
    def big() -> Response:
        return Response(BIG, mimetype="application/octet-stream")

    @app.post("/boom")
    def boom() -> Response:
        raise RuntimeError("a bug")

    @app.get("/q")
    def q() -> dict:
        return {"status": "success"}

    return app


@contextmanager
def _serve(app: Flask | None = None, **kw: Any) -> Iterator[HttpServer]:
    server = make_server(app or _app(), host="127.0.0.1", port=0,
                         loop_route=lambda m, _p: m == "POST", **kw)  # fmt: skip
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    eventually(lambda: _running(server), 5, 0.01)
    yield server
    server.close()
    t.join(10)
    assert not t.is_alive()


def _running(server: HttpServer) -> None:
    assert server.loop is not None and server.loop._running  # noqa: SLF001


@pytest.fixture()
def server() -> Iterator[HttpServer]:
    with _serve(channel_timeout=30, request_timeout=1.0) as srv:
        yield srv


def _post(port: int, path: str = "/echo", body: bytes = b"x") -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (
        path.encode(), len(body), body)  # fmt: skip


_LEFT: dict[int, bytes] = {}  # bytes read past an answer, per socket (pipelined answers)


def _read_answer(s: socket.socket) -> tuple[bytes, bytes]:
    """The next answer with a Content-Length from ``s``: head and body."""
    data = _LEFT.pop(s.fileno(), b"")
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    size = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")))  # fmt: skip
    while len(rest) < size:
        chunk = s.recv(65536)
        assert chunk
        rest += chunk
    if len(rest) > size:
        _LEFT[s.fileno()] = rest[size:]
    return head, rest[:size]


def _adopted(port: int, srv: HttpServer) -> socket.socket:
    """A keep-alive connection that had one request answered (by its thread) and is now the
    loop's."""
    assert srv.loop is not None
    held = _held(srv)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(_post(port, body=b"first"))
    assert _read_answer(s)[1] == b"first"
    eventually(lambda: _loop_holds(srv, held + 1), 5, 0.01)
    return s


def _held(srv: HttpServer) -> int:
    assert srv.loop is not None
    keys = list(srv.loop._sel.get_map().values())  # noqa: SLF001
    return sum(hasattr(k.data, "conn") for k in keys)  # connections, not its own sockets


def _loop_holds(srv: HttpServer, n: int) -> None:
    assert _held(srv) == n


def _until_closed(s: socket.socket) -> bytes:
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except OSError:
        pass
    return out


def test_the_loop_answers_as_a_thread_does(server: HttpServer) -> None:
    port = server.effective_port
    assert server.loop is not None
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(_post(port, body=b"abc"))
    by_thread = _read_answer(s)
    eventually(lambda: _loop_holds(server, 1), 5, 0.01)
    s.sendall(_post(port, body=b"abc"))
    by_loop = _read_answer(s)
    assert server.loop.served == 1

    def fields(head: bytes) -> dict[bytes, bytes]:
        lines = head.split(b"\r\n")
        return {k.lower(): v.strip() for k, _, v in (ln.partition(b":") for ln in lines[1:])
                if k.lower() != b"date"} | {b"": lines[0]}  # fmt: skip

    assert fields(by_loop[0]) == fields(by_thread[0]) and by_loop[1] == b"abc"
    # pipelined: two requests in one write, answered in order; then a GET goes to a thread
    s.sendall(_post(port, body=b"one") + _post(port, body=b"two"))
    assert _read_answer(s)[1] == b"one" and _read_answer(s)[1] == b"two"
    assert server.loop.served == 3
    s.sendall(b"GET /q HTTP/1.1\r\nHost: x\r\n\r\n")
    assert json.loads(_read_answer(s)[1]) == {"status": "success"}
    assert server.loop.served == 3  # the thread answered it and kept the connection
    s.sendall(_post(port, body=b"again"))
    assert _read_answer(s)[1] == b"again"
    eventually(lambda: _loop_holds(server, 1), 5, 0.01)  # back in the loop after it
    s.close()


def test_what_the_loop_does_not_serve_goes_to_a_thread(server: HttpServer) -> None:
    port = server.effective_port
    assert server.loop is not None
    s = _adopted(port, server)
    # a body larger than the loop reads ahead
    body = b"y" * (300 << 10)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.sock = s
    c.request("POST", "/echo", body)
    assert c.getresponse().read() == body
    # chunked, and Expect: 100-continue
    c.request("POST", "/echo", iter([b"ab", b"cd"]), headers={"Transfer-Encoding": "chunked"},
              encode_chunked=True)  # fmt: skip
    assert c.getresponse().read() == b"abcd"
    eventually(lambda: _loop_holds(server, 1), 5, 0.01)
    s.sendall(b"POST /echo HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    s.sendall(b"ok")
    assert _read_answer(s)[1] == b"ok"
    assert server.loop.served == 0
    # an answer the socket does not take at once: the rest sent by a thread, whole
    eventually(lambda: _loop_holds(server, 1), 5, 0.01)
    s.sendall(_post(port, "/big"))
    assert _read_answer(s)[1] == BIG
    assert server.loop.served == 1  # answered in the loop, its rest sent by a thread
    s.sendall(_post(port, body=b"after"))
    assert _read_answer(s)[1] == b"after"
    s.close()


def test_malformed_heads_and_failing_apps_in_the_loop(server: HttpServer) -> None:
    port = server.effective_port
    s = _adopted(port, server)
    s.sendall(b"POST /echo HTTP/1.1\r\nBad Header\r\nContent-Length: 1\r\n\r\nx")
    answer = _until_closed(s)
    assert answer.startswith(b"HTTP/1.1 400") and b'"errorType": "bad_data"' in answer
    s.close()
    s = _adopted(port, server)
    s.sendall(_post(port, "/boom"))
    head, body = _read_answer(s)
    assert head.startswith(b"HTTP/1.1 500")  # Flask's own 500 for the view's exception
    s.sendall(_post(port, body=b"still"))
    assert _read_answer(s)[1] == b"still"
    s.close()


def test_slow_heads_and_bodies_in_the_loop_are_cut_at_the_request_timeout(
    server: HttpServer,
) -> None:
    port = server.effective_port
    s = _adopted(port, server)
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 400
    answer = b""
    for i in range(len(head)):  # a byte every 20 ms: 8 s if nothing stops it
        try:
            s.sendall(head[i : i + 1])
        except OSError:
            break
        if select.select([s], [], [], 0.02)[0]:
            break
    answer = _until_closed(s)
    assert answer.startswith(b"HTTP/1.1 408") and b"within 1 s" in answer
    s.close()
    s = _adopted(port, server)
    s.sendall(b"POST /echo HTTP/1.1\r\nContent-Length: 500\r\n\r\n" + b"x" * 50)
    assert _until_closed(s) == b""  # stalled mid-body: closed, nothing answered
    s.close()
    _loop_holds(server, 0)


def test_idle_limits_and_close_reach_the_loops_connections() -> None:
    with _serve(channel_timeout=1.0, connection_limit=2) as srv:
        port = srv.effective_port
        idle = _adopted(port, srv)
        assert _until_closed(idle) == b""  # closed after channel_timeout idle
        eventually(lambda: _loop_holds(srv, 0), 5, 0.01)
        idle.close()
    with _serve(channel_timeout=60, connection_limit=2) as srv:
        port = srv.effective_port
        a, b = _adopted(port, srv), _adopted(port, srv)
        eventually(lambda: _loop_holds(srv, 2), 5, 0.01)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("POST", "/echo", b"third")  # waits for the idle one to be evicted
        assert c.getresponse().read() == b"third"
        assert _until_closed(a) == b""  # the longest idle went for it
        c.close()
        left = b
    # the server closed: its loop's connection was closed with it
    assert _until_closed(left) == b""
    a.close()
    b.close()


class _Sent:
    """A log's call in flight until the test answers it (``reply``): a socket pair."""

    def __init__(self, log: _Log, waits: list[threading.Event]) -> None:
        self.log, self.waits, self.jobs = log, waits, len(waits)
        self.r, self.w = socket.socketpair()
        self.done = False

    def fileno(self) -> int:
        return self.r.fileno()

    def reply(self) -> None:
        self.w.send(b"+OK\r\n")

    def finish(self) -> None:
        assert not self.done
        self.done = True
        assert self.r.recv(16) == b"+OK\r\n"  # called once the reply came, not before
        for w in self.waits:
            w.set()
        self.log.inflight = None
        self.r.close()
        self.w.close()


class _Log:
    """The appends of :func:`_steps`: begun, sent in one call when none is in flight."""

    def __init__(self) -> None:
        self.begun: list[threading.Event] = []
        self.inflight: _Sent | None = None
        self.sent: list[_Sent] = []

    def send(self) -> _Sent | None:
        if self.inflight is not None or not self.begun:
            return None
        self.inflight = _Sent(self, self.begun)
        self.begun = []
        self.sent.append(self.inflight)
        return self.inflight


def _steps(log: _Log) -> Any:
    """A steps app: ``/slow`` waits for ``log``'s append, other paths answer at once."""

    def steps(env: dict[str, Any]) -> Any:
        body = env["wsgi.input"].read()
        if env["PATH_INFO"] != "/slow":
            return "200 OK", [("Content-Type", "text/plain")], b"fast:" + body
        done = threading.Event()
        log.begun.append(done)
        yield
        done.wait(30)  # what a log's wait does: at once when its call came back
        return "200 OK", [("Content-Type", "text/plain")], b"logged:" + body

    return steps


def test_the_loop_serves_on_while_the_logs_call_is_in_flight() -> None:
    """Requests that wait for the log are sent in one call; until its reply comes the loop
    answers other requests and queues the next waits for the call after it, and a request
    is answered only once its call came back."""
    log = _Log()
    with _serve(channel_timeout=30, loop_steps=_steps(log), loop_send=log.send) as srv:
        assert srv.loop is not None
        port = srv.effective_port
        a, b, c = (_adopted(port, srv) for _ in range(3))
        a.sendall(_post(port, "/slow", b"a"))
        eventually(lambda: _assert(len(log.sent) == 1), 5, 0.01)
        b.sendall(_post(port, "/fast", b"b"))
        assert _read_answer(b)[1] == b"fast:b"  # served while a's call is in flight
        b.sendall(_post(port, "/slow", b"b2"))
        c.sendall(_post(port, "/slow", b"c"))
        eventually(lambda: _assert(len(log.begun) == 2), 5, 0.01)  # behind the call
        assert not select.select([a], [], [], 0)[0]  # a's call has not come back
        log.sent[0].reply()
        assert _read_answer(a)[1] == b"logged:a"
        eventually(lambda: _assert(len(log.sent) == 2), 5, 0.01)
        assert log.sent[1].jobs == 2  # b2 and c: the next call, together
        log.sent[1].reply()
        assert _read_answer(b)[1] == b"logged:b2" and _read_answer(c)[1] == b"logged:c"
        assert srv.loop.calls_sent == 2
        a.sendall(_post(port, "/slow", b"last"))  # the server closes with it in flight:
        eventually(lambda: _assert(len(log.sent) == 3), 5, 0.01)
        last = log.sent[2]

        def reply_once_stopping() -> None:
            eventually(lambda: _assert(srv.stopping), 10, 0.005)
            last.reply()

        threading.Thread(target=reply_once_stopping, daemon=True).start()  # after close began
    head, body = _read_answer(a)
    assert body == b"logged:last" and b"Connection: close" in head  # answered, then closed
    for s in (a, b, c):
        s.close()


def test_the_loop_takes_no_app_slot_so_threads_waiting_for_its_call_cannot_stop_it() -> None:
    """Threads in the app hold every app slot (``web_threads``) while they wait for the
    loop's call in flight (their writes behind it in the log's group commit, whose reply only
    the loop reads): the loop still serves its connections and lands the call. It had taken
    a slot each pass and waited for one there, never to read the reply: 32 clients at once
    hung the many-clients e2e test (30 s, one CI run)."""
    log = _Log()
    inside = threading.Semaphore(0)
    app = _app()

    @app.post("/behind")
    def behind() -> Response:  # a write queued behind the loop's call: waits for its reply
        inside.release()
        eventually(lambda: _assert(bool(log.sent) and log.sent[0].done), 30, 0.005)
        return Response(b"behind", mimetype="text/plain")

    with _serve(app, threads=2, channel_timeout=30, loop_steps=_steps(log),
                loop_send=log.send) as srv:  # fmt: skip
        port = srv.effective_port
        a, b = _adopted(port, srv), _adopted(port, srv)
        a.sendall(_post(port, "/slow", b"a"))
        eventually(lambda: _assert(len(log.sent) == 1), 5, 0.01)
        threads = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(2)]
        try:
            for t in threads:
                t.sendall(_post(port, "/behind"))
            for _ in threads:  # both app slots held, waiting for the loop's call
                assert inside.acquire(timeout=10)
            b.settimeout(10)
            b.sendall(_post(port, "/fast", b"b"))
            assert _read_answer(b)[1] == b"fast:b"  # the loop went on
        finally:
            log.sent[0].reply()
        assert _read_answer(a)[1] == b"logged:a"
        assert all(_read_answer(t)[1] == b"behind" for t in threads)
        for s in (a, b, *threads):
            s.close()


def _assert(cond: bool) -> None:
    assert cond
