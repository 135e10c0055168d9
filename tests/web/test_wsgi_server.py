"""The web tier's server keeps HTTP/1.1 connections open after a 204 (waitress 3, the server
before it, closed them: no Content-Length), and still closes when the client asks or speaks
HTTP/1.0."""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Iterator

import orjson
import pytest
from flask import Flask, Response

from filodb.web.wsgi_server import make_server


@pytest.fixture(params=["threads", "loop"])
def port(request: pytest.FixtureRequest) -> Iterator[int]:
    """A server, its ingestion loop serving ``POST /write`` connections or not."""
    app = Flask("t")
    app.add_url_rule("/write", "write", lambda: Response(status=204), methods=["POST"])
    app.add_url_rule("/q", "q", lambda: {"status": "success"})
    route = (lambda m, p: m == "POST" and p == "/write") if request.param == "loop" else None
    server = make_server(app, host="127.0.0.1", port=0, threads=2, loop_route=route)
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    yield server.effective_port
    server.close()


def _peer(conn: http.client.HTTPConnection) -> tuple:
    assert conn.sock is not None
    return conn.sock.getsockname()


def test_a_204_keeps_the_connection(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    seen = set()
    for path, method, status in [("/write", "POST", 204), ("/write", "POST", 204),
                                 ("/q", "GET", 200), ("/write", "POST", 204)]:  # fmt: skip
        conn.request(method, path, body=b"x" if method == "POST" else None)
        r = conn.getresponse()
        assert r.status == status and r.getheader("Connection") is None
        r.read()
        seen.add(_peer(conn))
    assert len(seen) == 1  # one TCP connection answered all four
    conn.close()


def test_close_when_asked_or_http10(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/write", body=b"x", headers={"Connection": "close"})
    r = conn.getresponse()
    assert r.status == 204 and r.getheader("Connection") == "close" and r.will_close
    conn.close()

    class Http10(http.client.HTTPConnection):
        _http_vsn, _http_vsn_str = 10, "HTTP/1.0"

    old = Http10("127.0.0.1", port, timeout=10)
    old.request("POST", "/write", body=b"x")
    r = old.getresponse()
    assert r.status == 204 and r.will_close
    old.close()


@pytest.mark.parametrize("loop", [False, True])
def test_shared_listening_socket_and_a_cap_of_answers_per_connection(loop: bool) -> None:
    """Two servers on one listening socket (as filodb up's web processes): both answer, and
    each connection closes after ``max_requests`` answers so the client reconnects."""
    from filodb.listen import bind
    from filodb.web.wsgi_server import inherited_sockets

    socks = bind("127.0.0.1", 0, inheritable=True)
    port = socks[0].getsockname()[1]
    who: list[str] = []
    servers = []
    for name in ("a", "b"):
        app = Flask(name)
        app.add_url_rule("/write", "write", lambda n=name: (who.append(n), Response(status=204))[1],
                         methods=["POST"])  # fmt: skip
        mine = inherited_sockets([os.dup(s.fileno()) for s in socks])  # as a child inherits
        route = (lambda m, _p: m == "POST") if loop else None
        servers.append(make_server(app, 3, sockets=mine, threads=1, loop_route=route))
    for s in servers:
        threading.Thread(target=s.run, daemon=True).start()
    try:
        peers, closes = set(), []
        for _ in range(16):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            for i in range(3):
                conn.request("POST", "/write", body=b"x")
                peers.add(_peer(conn))
                r = conn.getresponse()
                r.read()
                assert r.status == 204
                closes.append((i, r.getheader("Connection")))
            conn.close()
        assert len(peers) == 16  # three answers per connection, no more
        assert all((c == "close") == (i == 2) for i, c in closes)
        assert set(who) == {"a", "b"}, who  # both servers accepted some of the 16 connections
    finally:
        for s in servers:
            s.close()
        for s in socks:
            s.close()


def test_a_large_json_answer_goes_out_whole_from_its_bytes_and_the_connection_stays() -> None:
    from filodb.web.prom_api import SPOOLED_BYTES, json_body

    big = b'{"data":[' + b",".join(b'"%d"' % i for i in range(SPOOLED_BYTES // 3)) + b"]}"
    app = Flask("t")
    app.add_url_rule("/big", "big", lambda: json_body(big))
    app.add_url_rule("/small", "small", lambda: json_body(b'{"a":1}'))
    # under waitress a large body takes the file wrapper (waitress sends from it, no spooling)
    app.add_url_rule("/how", "how", lambda: {"wrapped": json_body(big).direct_passthrough})
    server = make_server(app, host="127.0.0.1", port=0, threads=2)
    threading.Thread(target=server.run, daemon=True).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=10)
        seen = set()
        for path, want in [("/big", big), ("/small", b'{"a":1}'), ("/big", big)]:
            conn.request("GET", path)
            r = conn.getresponse()
            assert r.status == 200 and r.getheader("Content-Type") == "application/json"
            assert int(r.getheader("Content-Length")) == len(want) and r.read() == want
            seen.add(_peer(conn))
        assert len(big) > SPOOLED_BYTES and len(seen) == 1  # one connection answered all
        conn.request("GET", "/how")
        assert orjson.loads(conn.getresponse().read()) == {"wrapped": True}
        conn.close()
    finally:
        server.close()
