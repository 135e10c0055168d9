"""``filodb up`` says it is up only once the web tier is healthy and every TCP door listens."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from filodb.config import Config
from filodb.supervisor import Supervisor


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200 if self.path == "/admin/health" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def _sup(port: int, door_ports: list[int]) -> Supervisor:
    sup = Supervisor(Config(host="127.0.0.1", port=port), echo=lambda _m: None)
    sup.door_ports = door_ports
    return sup


def test_ready_waits_for_a_door_that_does_not_listen_yet(health: int) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening: a gateway still loading its kernels
        port = s.getsockname()[1]
        assert not _sup(health, [port]).wait_ready(timeout=1.0)
        s.listen()
        assert _sup(health, [port]).wait_ready(timeout=5.0)


def test_ready_without_doors_is_the_web_tier_healthy(health: int) -> None:
    assert _sup(health, []).wait_ready(timeout=5.0)


def test_not_ready_while_the_web_tier_is_down() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert not _sup(port, []).wait_ready(timeout=1.0)
