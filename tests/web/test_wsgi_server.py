"""The web tier's waitress keeps HTTP/1.1 connections open after a 204 (waitress alone closes
them: no Content-Length), and still closes when the client asks or speaks HTTP/1.0."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator

import pytest
from flask import Flask, Response

from filodb.web.wsgi_server import make_server


@pytest.fixture()
def port() -> Iterator[int]:
    app = Flask("t")
    app.add_url_rule("/write", "write", lambda: Response(status=204), methods=["POST"])
    app.add_url_rule("/q", "q", lambda: {"status": "success"})
    server = make_server(app, host="127.0.0.1", port=0, threads=2)
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
