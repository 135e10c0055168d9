"""One HTTP/1.1 connection's bytes for :mod:`filodb.web.wsgi_server`: request heads, request
bodies (read from the socket as the app asks, or chunked), writes, and the answers the server
gives itself to what is not HTTP/1.x (a 4xx in Prometheus's JSON error shape)."""

from __future__ import annotations

import io
import json
import socket
import time
from typing import Any

from werkzeug.exceptions import ClientDisconnected
from werkzeug.http import HTTP_STATUS_CODES

MAX_HEAD_BYTES = 256 << 10  # request line and headers (waitress's default)
REQUEST_TIMEOUT_S = 60.0  # a head must arrive whole this soon after its first byte (nginx's 60)
MIN_BODY_RATE = 64 << 10  # bytes a second a body must keep up, past REQUEST_TIMEOUT_S
RECV_BYTES = 256 << 10  # one read of a body: a 160 KB ingestion body in one or two
PREFETCH_BYTES = 256 << 10  # a body up to this is read before the app gets a slot (or is
# read by the ingestion loop, filodb/web/ingest_loop.py; larger ones go to a thread)
BODYLESS = ("1", "204", "304")  # statuses whose answers never carry a body
DRAIN_BYTES = 1 << 20  # a body the app left unread up to this is read to keep the connection


class BadRequest(Exception):
    """A request this server answers itself (``code``) and then closes the connection."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Closed(Exception):
    """The peer went away (EOF, reset or timeout): nothing more to answer."""


class Conn:
    """A connection's socket with its read-ahead buffer.

    A slow client must not hold a connection's thread (or an app slot) at will: reads wait at
    most ``idle_s`` (the socket's timeout, between requests), a request head must arrive whole
    within ``request_s`` of its first byte (else 408), and a body within ``request_s`` plus
    its length at :data:`MIN_BODY_RATE` (:meth:`body_deadline`)."""

    def __init__(self, sock: socket.socket, idle_s: float = 300.0,
                 request_s: float = REQUEST_TIMEOUT_S) -> None:  # fmt: skip
        self.sock = sock
        self.buf = b""
        self.sent_continue = True  # the "100 Continue" of the current request, when asked
        self.idle_s = idle_s
        self.request_s = request_s
        self.deadline = 0.0  # monotonic time the bytes being read must have come by (0: none)
        self.broken = False  # a body came short: the next bytes are not a request head

    def _wait(self) -> None:
        """The socket's timeout for the next read: the idle timeout, or what is left of the
        current deadline (``Closed`` once it passed)."""
        if not self.deadline:
            return
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Closed()
        self.sock.settimeout(min(self.idle_s, left))

    def fill(self, limit: int = RECV_BYTES) -> bytes:
        try:
            self._wait()
            data = self.sock.recv(limit)
        except (TimeoutError, OSError) as e:
            raise Closed() from e
        if not data:
            raise Closed()
        return data

    def head(self) -> bytes | None:
        """The next request's head (without its blank line); None at a clean end between
        requests. 408 when its bytes take longer than ``request_s`` from the first one."""
        self.deadline = 0.0
        try:
            while True:
                self.buf = self.buf.lstrip(b"\r\n")  # RFC 9112 2.2: empty lines before a request
                end = self.buf.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES + 4)
                if end >= 0:
                    head, self.buf = self.buf[:end], self.buf[end + 4 :]
                    return head
                if len(self.buf) >= MAX_HEAD_BYTES + 4:
                    raise BadRequest(431, "request header too large")
                if self.buf and not self.deadline:
                    self.deadline = time.monotonic() + self.request_s
                try:
                    data = self.fill()
                except Closed:
                    if not self.buf:
                        return None
                    if self.deadline and time.monotonic() >= self.deadline - 0.001:
                        raise BadRequest(408, f"request head not sent whole within "
                                              f"{self.request_s:g} s") from None  # fmt: skip
                    raise
                self.buf += data
        finally:
            self.deadline = 0.0
            self.sock.settimeout(self.idle_s)

    def body_deadline(self, length: int, start: float | None = None) -> None:
        """The clock of a body of ``length`` bytes that began at ``start`` (now when None;
        see the class docstring)."""
        t0 = time.monotonic() if start is None else start
        self.deadline = t0 + self.request_s + length / MIN_BODY_RATE

    def prefetch(self, length: int) -> None:
        """Read ahead until the buffer holds ``length`` bytes (less when the client stops or
        its body's deadline passes: the app then reads a short body)."""
        while len(self.buf) < length:
            try:
                self.buf += self.fill(max(length - len(self.buf), 1))
            except Closed:
                return

    def end_body(self) -> None:
        self.deadline = 0.0
        self.sock.settimeout(self.idle_s)

    def continue_once(self) -> None:
        if not self.sent_continue:
            self.sent_continue = True
            self.send(b"HTTP/1.1 100 Continue\r\n\r\n")

    def read_into(self, view: memoryview) -> int:
        """Fill ``view`` from the buffer, then from the socket; bytes read (less at EOF)."""
        self.continue_once()
        n = min(len(self.buf), len(view))
        view[:n] = memoryview(self.buf)[:n]
        self.buf = self.buf[n:]
        while n < len(view):
            try:
                self._wait()
                got = self.sock.recv_into(view[n:], min(len(view) - n, RECV_BYTES))
            except (TimeoutError, OSError, Closed):
                break
            if not got:
                break
            n += got
        return n

    def line(self) -> bytes:
        """One CRLF-ended line of a chunked body (without it)."""
        self.continue_once()
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                out, self.buf = self.buf[:end], self.buf[end + 2 :]
                return out
            if len(self.buf) > 4096:
                raise BadRequest(400, "chunk line too long")
            try:
                self.buf += self.fill()
            except Closed as e:
                raise BadRequest(400, "incomplete chunked body") from e

    def linger(self, limit: int = 1 << 20) -> None:
        """Before closing on an error: stop sending and read (a little of) what the client is
        still sending, so that unread data does not reset the connection before the client
        read the answer."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(1.0)
            while limit > 0 and (data := self.sock.recv(65536)):
                limit -= len(data)
        except OSError:
            pass

    def send(self, *parts: bytes | memoryview) -> None:
        try:
            if len(parts) == 1:
                self.sock.sendall(parts[0])
            elif sum(map(len, parts)) <= RECV_BYTES:  # one write: copying is cheaper
                self.sock.sendall(b"".join(parts))
            else:
                for p in parts:
                    self.sock.sendall(p)
        except OSError as e:
            raise Closed() from e


class Body(io.RawIOBase):
    """``wsgi.input`` of a request with a Content-Length: reads the socket as asked."""

    def __init__(self, conn: Conn, length: int) -> None:
        self.conn = conn
        self.left = length

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")[: self.left]
        if not len(view):
            return 0
        n = self.conn.read_into(view)
        self.left -= n
        if n < len(view):  # the peer closed or stalled mid-body (werkzeug's 400)
            self.left = 0
            self.conn.broken = True
            raise ClientDisconnected()
        return n

    def read(self, size: int = -1) -> bytes:
        want = self.left if size is None or size < 0 else min(size, self.left)
        if want <= 0:
            return b""
        conn = self.conn
        if len(conn.buf) >= want:  # came with the head (a whole ingestion body, usually)
            conn.continue_once()
            data, conn.buf = conn.buf[:want], conn.buf[want:]  # no copy when it is all of it
            self.left -= want
            return data
        out = bytearray(want)
        n = self.readinto(out)
        return bytes(out) if n == want else bytes(out[:n])


def dechunk(conn: Conn, limit: int) -> bytes:
    """A chunked body, at most ``limit`` bytes of it (the rest stays unread)."""
    parts: list[bytes] = []
    have = 0
    start = time.monotonic()
    while True:
        conn.body_deadline(have + 4096, start)  # the chunk's size line
        size_text = conn.line().split(b";", 1)[0].strip()
        if not size_text or len(size_text) > 16 or not all(c in b"0123456789abcdefABCDEF"
                                                           for c in size_text):  # fmt: skip
            raise BadRequest(400, "invalid chunk size")
        size = int(size_text, 16)
        if size == 0:
            while conn.line():  # trailers
                pass
            return b"".join(parts)
        take = min(size, limit - have)
        conn.body_deadline(have + take + 4096, start)
        if take < size:  # past the limit: enough for the app to refuse
            chunk = bytearray(take)
            conn.read_into(memoryview(chunk))
            parts.append(bytes(chunk))
            raise TooLong(b"".join(parts))
        chunk = bytearray(size)
        if conn.read_into(memoryview(chunk)) < size or conn.line() != b"":
            raise BadRequest(400, "incomplete chunked body")
        parts.append(bytes(chunk))
        have += size


class TooLong(Exception):
    """A chunked body cut at the limit (its first ``limit`` bytes): the app refuses it."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data = data


class FileWrapper:
    """``wsgi.file_wrapper``: an ``io.BytesIO`` is sent from its buffer, with no copy."""

    def __init__(self, filelike: Any, block_size: int = 1 << 20) -> None:
        self.filelike = filelike
        self.block_size = block_size
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> Any:
        if isinstance(self.filelike, io.BytesIO):  # unmodified, it holds the bytes given
            yield self.filelike.getvalue()[self.filelike.tell() :]
            return
        while block := self.filelike.read(self.block_size):
            yield block


def error_answer(code: int, message: str) -> tuple[bytes, bytes]:
    body = json.dumps({"status": "error", "errorType": "bad_data", "error": message}).encode()
    head = (f"HTTP/1.1 {code} {HTTP_STATUS_CODES.get(code, 'Error')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode("latin-1")  # fmt: skip
    return head, body
