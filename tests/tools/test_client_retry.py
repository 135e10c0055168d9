"""The CLI's sender (``filodb import``, ``filodb generate``) offers a body again when the
server says "later" (429, 503 with ``Retry-After``: a full log, a dataset's rate), as
Prometheus's remote write does, and gives up after a bound; other errors stand at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from filodb.tools.client import SendError, post


class _Server:
    def __init__(self, answers: list[int]) -> None:
        self.answers = answers  # status per request; the last one repeats
        self.bodies: list[bytes] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                owner.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                code = owner.answers[min(len(owner.bodies), len(owner.answers)) - 1]
                self.send_response(code)
                if code in (429, 503):
                    self.send_header("Retry-After", "0.1")
                body = b"" if code == 204 else b'{"status":"error","error":"log full"}'
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/api/v1/write"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture
def serve() -> Iterator:
    made: list[_Server] = []

    def start(answers: list[int]) -> _Server:
        made.append(_Server(answers))
        return made[-1]

    yield start
    for s in made:
        s.http.shutdown()
        s.http.server_close()


def test_a_body_is_sent_again_after_503_and_429(serve) -> None:  # type: ignore[no-untyped-def]
    srv = serve([503, 429, 204])
    post(requests.Session(), srv.url, b"body", {})
    assert srv.bodies == [b"body"] * 3


def test_it_gives_up_after_its_bound(serve) -> None:  # type: ignore[no-untyped-def]
    srv = serve([503])
    with pytest.raises(SendError, match="503.*log full") as e:
        post(requests.Session(), srv.url, b"body", {}, retry_for_s=0.35)
    assert e.value.status == 503 and 2 <= len(srv.bodies) <= 5


def test_other_errors_are_not_sent_again(serve) -> None:  # type: ignore[no-untyped-def]
    srv = serve([400])
    with pytest.raises(SendError, match="400"):
        post(requests.Session(), srv.url, b"body", {})
    assert len(srv.bodies) == 1
