"""The web tier's own HTTP/1.1 server (:mod:`filodb.web.wsgi_server`) against real clients
on a real socket: request bodies (Content-Length read as the app asks, chunked, ``Expect:
100-continue``, a short body), answers of unknown length, malformed requests answered in
Prometheus's JSON error shape, idle clients timed out, the connection limit, the remote-write
route of the real app served whole, and a graceful stop. Every test runs twice: connections
served by a thread each, and keep-alive connections of ``POST`` requests served by the
server's ingestion loop (:mod:`filodb.web.ingest_loop`) after their first request."""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask, Response, request

from filodb.testing.wait import eventually
from filodb.web.wsgi_server import HttpServer, make_server


def _app() -> Flask:
    app = Flask("t")
    app.config["MAX_CONTENT_LENGTH"] = 1000

    @app.post("/echo")
    def echo() -> Response:
        return Response(request.get_data(), mimetype="application/octet-stream")

    @app.get("/stream")
    def stream() -> Response:
        return Response((b"part%d;" % i for i in range(5)), mimetype="text/plain")

    @app.post("/ignore")
    def ignore() -> Response:
        return Response(status=204)

    @app.get("/slow")
    def slow() -> Response:
        time.sleep(float(request.args["s"]))
        return Response(b"done")

    return app


_LOOP = {"on": False}


@pytest.fixture(autouse=True, params=["threads", "loop"])
def _mode(request: pytest.FixtureRequest) -> Iterator[None]:
    _LOOP["on"] = request.param == "loop"
    yield
    _LOOP["on"] = False


def _posts(method: str, _path: str) -> bool:
    return method == "POST"


@contextmanager
def _serve(app: Any, route: Any = _posts, **kw: Any) -> Iterator[HttpServer]:
    server = make_server(app, host="127.0.0.1", port=0, loop_route=route if _LOOP["on"] else None,
                         **kw)  # fmt: skip
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    yield server
    server.close()
    t.join(10)
    assert not t.is_alive()


@pytest.fixture()
def server() -> Iterator[HttpServer]:
    with _serve(_app(), threads=4, channel_timeout=2) as srv:
        yield srv


def _raw(port: int, data: bytes, shut: bool = True) -> bytes:
    """What the server answers to ``data``, read until it closes (10 s at most)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def _status_and_json(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def test_bodies_by_length_chunked_and_after_100_continue_on_one_connection(
    server: HttpServer,
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=10)
    body = bytes(range(256)) * 3
    conn.request("POST", "/echo", body)
    r = conn.getresponse()
    assert (r.status, r.read()) == (200, body)
    conn.request("POST", "/echo", iter([body[:100], body[100:]]),  # chunked by http.client
                 headers={"Transfer-Encoding": "chunked"}, encode_chunked=True)  # fmt: skip
    r = conn.getresponse()
    assert (r.status, r.read()) == (200, body)
    peer = conn.sock.getsockname()  # type: ignore[union-attr]
    conn.close()
    # Expect: 100-continue: the interim answer comes before the body is sent
    with socket.create_connection(("127.0.0.1", server.effective_port), timeout=10) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")  # fmt: skip
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"hello")
        answer = s.recv(1000)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\nhello")
    assert peer


def test_a_body_over_the_apps_limit_is_refused_without_reading_it(server: HttpServer) -> None:
    """413 from the app (Flask's MAX_CONTENT_LENGTH) before the body comes; after an unsent
    100-continue or a large unread body the connection closes, a small one is read and the
    connection kept."""
    with socket.create_connection(("127.0.0.1", server.effective_port), timeout=10) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n"
                  b"Expect: 100-continue\r\n\r\n")  # fmt: skip
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b"Connection: close" in answer
    assert b"100 Continue" not in answer
    conn = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=10)
    for _ in range(2):  # the app ignores the body: the server reads it, the connection stays
        conn.request("POST", "/ignore", b"x" * 500)
        r = conn.getresponse()
        assert r.status == 204 and not r.will_close
        r.read()
    conn.close()


def test_a_chunked_body_past_the_limit_reaches_the_app_one_byte_too_long() -> None:
    seen: list[int] = []

    def app(environ: dict, start_response: Any) -> list[bytes]:
        seen.append(len(environ["wsgi.input"].read()))
        start_response("413 Request Entity Too Large", [("Content-Length", "0")])
        return []

    with _serve(app, max_body_bytes=100) as srv:
        chunks = b"".join(b"20\r\n" + b"y" * 32 + b"\r\n" for _ in range(10)) + b"0\r\n\r\n"
        answer = _raw(srv.effective_port, b"POST /x HTTP/1.1\r\nHost: x\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n" + chunks)  # fmt: skip
        assert answer.startswith(b"HTTP/1.1 413") and b"Connection: close" in answer
    assert seen == [101]


def test_answers_of_unknown_length_go_chunked_or_close_on_http10(server: HttpServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=10)
    conn.request("GET", "/stream")
    r = conn.getresponse()
    assert r.getheader("Transfer-Encoding") == "chunked" and not r.will_close
    assert r.read() == b"part0;part1;part2;part3;part4;"
    conn.request("HEAD", "/stream")
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b""
    conn.close()
    answer = _raw(server.effective_port, b"GET /stream HTTP/1.0\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Connection: close" in head and b"chunked" not in head
    assert body == b"part0;part1;part2;part3;part4;"


BAD = [
    (b"GET GET /x HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /x HTTP/1.1x\r\n\r\n", 400),
    (b"GET /x HTTP/2.0\r\n\r\n", 400),
    (b"GET /x HTTP/0.9\r\n\r\n", 400),
    (b"GET /x HTTP/1.1\r\nBroken header line\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc", 400),
    (b"POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET /" + b"a" * 300_000 + b" HTTP/1.1\r\n\r\n", 431),
]


@pytest.mark.parametrize(("data", "code"), BAD, ids=range(len(BAD)))
def test_malformed_requests_get_a_json_4xx_and_the_server_goes_on(
        server: HttpServer, data: bytes, code: int) -> None:  # fmt: skip
    status, body = _status_and_json(_raw(server.effective_port, data))
    assert status == code and body["status"] == "error" and body["errorType"] == "bad_data"
    assert body["error"]
    conn = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=10)
    conn.request("POST", "/echo", b"ok")
    assert conn.getresponse().read() == b"ok"
    conn.close()


def test_a_body_shorter_than_its_length_reaches_the_app_short(server: HttpServer) -> None:
    """The client claims more than it sends and half-closes: reading the body raises
    werkzeug's ``ClientDisconnected`` (Flask answers 400), nothing hangs."""
    answer = _raw(server.effective_port, b"POST /echo HTTP/1.1\r\nContent-Length: 900\r\n\r\nabc")
    assert answer.startswith(b"HTTP/1.1 400")


def test_idle_and_stalled_clients_are_timed_out(server: HttpServer) -> None:
    t0 = time.monotonic()
    assert _raw(server.effective_port, b"", shut=False) == b""  # nothing sent: closed
    assert _raw(server.effective_port, b"GET /x HTTP/1.1\r\nHo", shut=False) == b""  # half a head
    assert time.monotonic() - t0 < 8  # channel_timeout 2 s each


def test_the_connection_limit_holds_the_next_client_in_the_backlog() -> None:
    with _serve(_app(), connection_limit=2, channel_timeout=5) as srv:
        busy = [socket.create_connection(("127.0.0.1", srv.effective_port)) for _ in range(2)]
        conn = http.client.HTTPConnection("127.0.0.1", srv.effective_port, timeout=0.5)
        conn.request("POST", "/echo", b"x")  # accepted by the kernel, not served yet
        with pytest.raises(TimeoutError):
            conn.getresponse()
        conn.close()
        busy[0].close()  # a slot frees: the next client is served
        c2 = http.client.HTTPConnection("127.0.0.1", srv.effective_port, timeout=10)
        c2.request("POST", "/echo", b"y")
        assert c2.getresponse().read() == b"y"
        c2.close()
        busy[1].close()


def test_close_lets_a_request_in_flight_finish_and_stops_accepting() -> None:
    with _serve(_app()) as srv:
        got: list[bytes] = []

        def slow(srv: HttpServer = srv, got: list[bytes] = got) -> None:
            c = http.client.HTTPConnection("127.0.0.1", srv.effective_port, timeout=10)
            c.request("GET", "/slow?s=0.5")
            got.append(c.getresponse().read())

        idle = http.client.HTTPConnection("127.0.0.1", srv.effective_port, timeout=10)
        idle.request("POST", "/echo", b"x")
        idle.getresponse().read()
        eventually(lambda srv=srv: _idle_only(srv), 5, 0.01)  # its answer's bookkeeping done
        t = threading.Thread(target=slow)
        t.start()
        eventually(lambda srv=srv: _busy(srv), 5, 0.02)
        srv.close()
        t.join(10)
        assert got == [b"done"]
        with pytest.raises(OSError):  # the listening socket is closed
            socket.create_connection(("127.0.0.1", srv.effective_port), timeout=2)
        idle.close()


def _idle_only(srv: HttpServer) -> None:
    assert not any(busy for busy, _ in srv._conns.values())  # noqa: SLF001


def _busy(srv: HttpServer) -> None:
    assert any(busy for busy, _ in srv._conns.values())  # noqa: SLF001 - the request under way


def test_the_remote_write_route_of_the_real_app(redis_url: str, tmp_path: Path) -> None:
    """The whole web app behind this server: a remote-write body acknowledged 204, a bad one
    400 in the JSON shape, a query answered, on one keep-alive connection."""
    from filodb.config import Config
    from filodb.model.batch import SampleBatch
    from filodb.model.labels import make_labels
    from filodb.prom.remote_write import encode_write_request
    from filodb.web import create_app
    from filodb.web.ingest_wsgi import loop_route, wrap

    app = create_app(Config(redis_url=redis_url))
    app.extensions["filodb"].shard_map.create_dataset("prometheus", 4, 1)
    assert type(app.wsgi_app).__name__ == "LeanIngest" or wrap(app, Config(redis_url=redis_url))
    series = [make_labels({"__name__": "m", "i": str(i)}) for i in range(3)]
    body = encode_write_request(SampleBatch(series, np.arange(3), np.arange(3), np.ones(3)))
    lean = app.wsgi_app  # as `filodb web` serves it: the loop takes its steps, sends its appends
    log = app.extensions["filodb"].ingest_log
    with _serve(app, loop_route, loop_steps=lean.steps, loop_send=lean.send_appends) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.effective_port, timeout=10)
        for _ in range(2):  # the second one in the loop, when on
            conn.request("POST", "/api/v1/write", body, {"Content-Encoding": "snappy"})
            r = conn.getresponse()
            assert r.status == 204 and r.read() == b"" and not r.will_close
        conn.request("POST", "/api/v1/write", b"\xff not snappy")
        r = conn.getresponse()
        doc = json.loads(r.read())
        assert r.status == 400 and doc["status"] == "error" and doc["errorType"] == "bad_data"
        conn.request("GET", "/api/v1/status/buildinfo")
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["status"] == "success"
        conn.request("POST", "/api/v1/write", body, {"Content-Encoding": "snappy"})
        assert conn.getresponse().status == 204
        conn.close()
        assert srv.loop is None or srv.loop.served == 2  # the last one followed a GET: a thread
        assert srv.loop is None or srv.loop.calls_sent == 1  # the second one's append
        # each acknowledged body is one record in every shard its series go to
        assert set(log.end_offsets("prometheus", list(range(4))).values()) - {0} == {3}


def _answer_within(port: int, data: bytes, timeout: float) -> bytes:
    """What the server answers to ``data`` (sent whole, the socket left open) until it closes
    or ``timeout`` passes (then what came so far)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            pass
        return out


def test_a_head_trickling_in_is_answered_408_at_the_request_timeout() -> None:
    """A client sending its head a byte at a time (slowloris) gets 408 once the head is
    ``request_timeout`` late, though each byte came well within the idle timeout."""
    with _serve(_app(), channel_timeout=5, request_timeout=1.0) as srv:
        head = b"GET /stream HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", srv.effective_port), timeout=10) as s:
            answer = b""
            for i in range(len(head)):  # a byte every 20 ms: 4 s if nothing stops it
                try:
                    s.sendall(head[i : i + 1])
                except OSError:
                    break
                ready, _, _ = select.select([s], [], [], 0.02)
                if ready:
                    break
            s.settimeout(5)
            try:
                while chunk := s.recv(65536):
                    answer += chunk
            except OSError:
                pass
        status, body = _status_and_json(answer)
        assert status == 408 and "within 1 s" in body["error"]
        assert time.monotonic() - t0 < 3


def test_a_slow_body_does_not_hold_an_app_slot_and_is_cut_at_its_deadline() -> None:
    """One app slot: a client that sends a tenth of its body and stalls waits outside the app
    (the body is read ahead), so another client is served meanwhile; the stalled one gets 400
    once its body is ``request_timeout`` late."""
    with _serve(_app(), threads=1, channel_timeout=30, request_timeout=3.0) as srv:
        stalled: list[bytes] = []

        def slow() -> None:
            data = b"POST /echo HTTP/1.1\r\nContent-Length: 500\r\n\r\n" + b"x" * 50
            stalled.append(_answer_within(srv.effective_port, data, 10))

        t = threading.Thread(target=slow)
        t0 = time.monotonic()
        t.start()
        eventually(lambda: _count_conns(srv, 1), 5, 0.01)
        c = http.client.HTTPConnection("127.0.0.1", srv.effective_port, timeout=5)
        c.request("GET", "/stream")
        assert c.getresponse().read() == b"".join(b"part%d;" % i for i in range(5))
        assert not stalled  # served while the stalled client still waits for its answer
        assert time.monotonic() - t0 < 3.0  # before the stalled body's deadline
        c.close()
        t.join(10)
        assert stalled and stalled[0].startswith(b"HTTP/1.1 400")
        assert time.monotonic() - t0 < 9


def test_at_the_connection_limit_the_idle_connection_goes_for_a_waiting_client() -> None:
    """Two keep-alive connections idle after a request fill the limit; a third client is
    served once the longest idle one has been idle a second (it is closed for it), where it
    used to wait for ``channel_timeout``."""
    with _serve(_app(), connection_limit=2, channel_timeout=60) as srv:
        idle = []
        for k in range(2):
            c = http.client.HTTPConnection("127.0.0.1", srv.effective_port, timeout=10)
            c.request("POST", "/echo", b"%d" % k)
            assert c.getresponse().read() == b"%d" % k
            idle.append(c)
            # idle by the server's clock before the next one's request (a thread marks its
            # connection idle after sending the answer: a loaded machine can delay that past
            # the next connection's answer, and the younger one would be the older)
            eventually(lambda k=k: _count_conns(srv, k + 1, busy=False), 5, 0.01)
        t0 = time.monotonic()
        c3 = http.client.HTTPConnection("127.0.0.1", srv.effective_port, timeout=10)
        c3.request("POST", "/echo", b"third")
        assert c3.getresponse().read() == b"third"
        assert time.monotonic() - t0 < 5
        assert idle[0].sock is not None and idle[0].sock.recv(1) == b""  # the oldest went
        for c in (*idle, c3):
            c.close()


def test_at_the_connection_limit_connections_inside_a_request_are_not_closed() -> None:
    with _serve(_app(), connection_limit=2, channel_timeout=60) as srv:
        got: list[bytes] = []

        def slow() -> None:
            c = http.client.HTTPConnection("127.0.0.1", srv.effective_port, timeout=10)
            c.request("GET", "/slow?s=2")
            got.append(c.getresponse().read())
            c.close()

        ts = [threading.Thread(target=slow) for _ in range(2)]
        for t in ts:
            t.start()
        eventually(lambda: _count_conns(srv, 2, busy=True), 5, 0.01)
        c3 = http.client.HTTPConnection("127.0.0.1", srv.effective_port, timeout=10)
        c3.request("POST", "/echo", b"third")  # waits in the backlog for a slot
        assert c3.getresponse().read() == b"third"
        for t in ts:
            t.join(10)
        assert got == [b"done", b"done"]
        c3.close()


def _count_conns(srv: HttpServer, n: int, busy: bool | None = None) -> None:
    with srv._lock:  # noqa: SLF001
        have = [b for b, _ in srv._conns.values() if busy is None or b == busy]  # noqa: SLF001
    assert len(have) >= n
