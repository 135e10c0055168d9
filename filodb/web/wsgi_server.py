"""The web tier's HTTP server: waitress, keeping HTTP/1.1 connections open after a response
without a body.

Waitress 3 closes the connection after every response that has no Content-Length, and a 204
has none (RFC 9110 forbids it), so every remote-write and Influx write (answered 204) cost the
client a new TCP connection and the server an accept and a new channel (about 5 % of the web
process's CPU under live remote write). A response that cannot have a body (1xx, 204, 304) is
complete when its header is, so the connection stays open, as in Go's net/http; a request
asking ``Connection: close`` and HTTP/1.0 clients are answered as waitress does.

Several web processes serve one port by sharing its listening sockets: ``filodb up`` binds
them once (:func:`filodb.supervisor.listen_sockets`) and hands their descriptors to each web process it starts
(``filodb web --listen-fd``), whose waitress accepts on them (:func:`inherited_sockets`). The
kernel queues connections on the shared socket, the process first to ``accept`` takes one
(waitress ignores the ``EAGAIN`` of the others), and a web process that dies or restarts
leaves the port bound and the queued connections to the others. Which process accepts a
connection is a race (an idle one usually wins), and a client keeps its connections open, so
a few busy connections could all stay on one process: while the port is shared, the server
closes a connection after ``max_requests`` answers (``Connection: close``, as Go's and
nginx's servers may), and the client's next connection goes to whichever process is free.
"""

from __future__ import annotations

import socket
from typing import Any

from waitress import create_server
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import WSGITask

SHARED_PORT_MAX_REQUESTS = 32  # answers per connection while processes share the port


class _Task(WSGITask):
    _keep_bodyless = False

    def build_response_header(self) -> bytes:
        ch = self.channel
        ch.answered = getattr(ch, "answered", 0) + 1
        cap = getattr(ch.server, "max_requests", 0)
        if cap and ch.answered >= cap:  # the client reconnects, maybe to another process
            WSGITask.set_close_on_finish(self)
        asked_close = self.request.headers.get("CONNECTION", "").lower() == "close"
        self._keep_bodyless = (
            not self.has_body and self.version == "1.1" and not asked_close
            and not self.close_on_finish
        )  # fmt: skip
        try:
            return super().build_response_header()
        finally:
            self._keep_bodyless = False

    def set_close_on_finish(self) -> None:
        if not self._keep_bodyless:  # waitress closes for want of a Content-Length
            super().set_close_on_finish()


class _Channel(HTTPChannel):
    task_class = _Task


def make_server(app: Any, max_requests: int = 0, **kw: Any) -> Any:
    """``waitress.create_server(app, **kw)`` with the keep-alive fix above; ``max_requests``
    > 0 closes each connection after that many answers."""
    server = create_server(app, **kw)
    for s in [server, *getattr(server, "map", {}).values()]:
        if isinstance(s, BaseWSGIServer):
            s.channel_class = _Channel
            s.max_requests = max_requests
    return server


def serve(app: Any, max_requests: int = 0, **kw: Any) -> None:
    """``waitress.serve(app, **kw)`` with the keep-alive fix. Blocks."""
    make_server(app, max_requests, **kw).run()


def inherited_sockets(fds: list[int]) -> list[socket.socket]:
    """The listening sockets behind the descriptors a parent handed down (``--listen-fd``)."""
    return [socket.socket(fileno=fd) for fd in fds]
