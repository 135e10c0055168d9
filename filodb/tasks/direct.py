"""Leaf requests over a direct TCP connection from the web tier to a node: no Redis hop.

A node's :class:`~filodb.tasks.leaf.LeafServer` listens on ``leaf_listen`` (:class:`Listener`)
and its registry entry advertises the bound address as ``leaf_addr``. The web tier's
:class:`Links` keeps one connection per node per thread; a request goes down it and its
replies come back up it, so a trivial query costs two process wake-ups (web, node) instead of
four (web, Redis, node, Redis). The Redis lists (:mod:`filodb.tasks.rpc`) stay the fallback:
for a node that advertises no address, that cannot be reached (retried after
``RETRY_AFTER_S``), or whose connection breaks while it owes answers (the caller sends the
request again on the node's list, :meth:`~filodb.tasks.fanout_state.FanoutState.lost`).

Frames are ``u32 length (little-endian) | payload``, msgpack and :mod:`filodb.tasks.wire`
only (nothing is unpickled):

- node → client, once on accept: ``{"node": name, "nonce": 16 random bytes}`` (msgpack); the
  client checks the name, so an address reused by another node is never taken for the one it
  looked up;
- client → node, once: ``{"auth": proof("caller", nonce), "nonce": 16 random bytes}``
  (msgpack), where ``proof(role, nonce)`` is HMAC-SHA256 of the cluster's secret
  (:mod:`filodb.shards.secret`) over ``"filodb-leaf" | role | node | nonce``. The node reads
  this frame (at most ``MAX_AUTH`` bytes, within ``AUTH_TIMEOUT_S``) before any request and
  closes a connection whose proof is missing or wrong;
- node → client, once: ``{"auth": proof("node", the client's nonce)}``, so the caller knows
  it talks to a node of its cluster. The secret never crosses the wire, a proof is good for
  its one connection only, and the exchange happens once per connection, not per request;
- client → node: a :class:`~filodb.tasks.rpc.LeafRequest` (``reply`` is the caller's id of the
  request);
- node → client: ``u8 id length | reply id | one wire message`` (a receipt or an answer);
  the client drops messages of another id (a receipt that crossed its answer, say).

A request frame over ``MAX_REQUEST`` bytes, or one that does not unpack, closes the connection.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable

import msgpack

from filodb.errors import BadInputError

log = logging.getLogger(__name__)

MAX_REQUEST = 16 << 20  # bytes of one request frame a node reads
MAX_REPLY = 1 << 31  # bytes of one reply frame a client reads
MAX_AUTH = 256  # bytes of the client's proof frame a node reads
AUTH_TIMEOUT_S = 5.0  # a node waits this long for the proof, then closes the connection
CONNECT_TIMEOUT_S = 1.0  # connecting and reading the hello
RETRY_AFTER_S = 1.0  # a node that could not be reached is tried again after this
SEND_TIMEOUT_S = 30  # a peer that reads nothing this long is dropped (SO_SNDTIMEO)
_LEN = struct.Struct("<I")
_CHUNK = 64 << 10  # read at once; a larger frame is read straight into a buffer of its size

ReplySink = Callable[[str, list[bytes]], None]
"""Where a node sends a request's replies: ``sink(reply_id, messages)``."""


def frame(payload: bytes) -> bytes:
    return _LEN.pack(len(payload)) + payload


def reply_frames(reply_id: str, msgs: list[bytes]) -> list[bytes]:
    """The frames of ``msgs``, each tagged with ``reply_id``, as the buffers to send in turn
    (:func:`send_all`: a large answer is not copied to be framed)."""
    rid = reply_id.encode()
    if len(rid) > 255:
        raise ValueError("reply id too long")
    tag = bytes([len(rid)]) + rid
    return [x for m in msgs for x in (_LEN.pack(len(tag) + len(m)) + tag, m)]


_IOV_MAX = 512  # buffers per sendmsg (Linux takes 1024)


def send_all(sock: socket.socket, parts: list[bytes]) -> None:
    """``sock.sendall`` of the buffers one after another, without joining them (sendmsg)."""
    views = [memoryview(p) for p in parts if len(p)]
    i = 0
    while i < len(views):
        n = sock.sendmsg(views[i : i + _IOV_MAX])
        while n and n >= len(views[i]):
            n -= len(views[i])
            i += 1
        if n:
            views[i] = views[i][n:]


def parse_reply(payload: bytes | bytearray) -> tuple[str, memoryview]:
    """A reply frame's id and message; :class:`BadInputError` when malformed."""
    mv = memoryview(payload)
    if not mv or len(mv) < 1 + mv[0]:
        raise BadInputError("malformed reply frame")
    n = mv[0]
    return bytes(mv[1 : 1 + n]).decode(errors="replace"), mv[1 + n :]


def proof(secret: bytes, role: bytes, node: str, nonce: bytes) -> bytes:
    """What the ``role`` side (``b"caller"`` or ``b"node"``) of a connection to node ``node``
    sends, answering the other side's ``nonce``."""
    msg = b"filodb-leaf\0" + role + b"\0" + node.encode() + b"\0" + nonce
    return hmac.new(secret, msg, hashlib.sha256).digest()


def _nonce(msg: object) -> bytes | None:
    """The nonce of a hello or proof frame (16 bytes or more), else None."""
    got = msg.get("nonce") if isinstance(msg, dict) else None
    return got if isinstance(got, bytes) and 16 <= len(got) <= 64 else None


def _tune(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", SEND_TIMEOUT_S, 0))


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            raise ConnectionError("connection closed")
        got += k
    return bytes(buf)


def parse_addr(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as a pair; :class:`BadInputError` otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise BadInputError(f"not host:port: {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


HOSTNAME = socket.gethostname()  # as the node registry records it


def on_loopback(addr: str) -> bool:
    """Whether ``host:port`` is a loopback address (reachable only on its own machine)."""
    host = parse_addr(addr)[0]
    return host == "localhost" or host.startswith("127.") or host == "::1"


# --- the node's side -------------------------------------------------------------------


class Listener:
    """Accepts the web tier's connections for node ``node`` and hands each request frame to
    ``handle(payload, sink)`` on the connection's own thread (a cheap request is answered
    right there, :meth:`~filodb.tasks.leaf.LeafServer.handle`), once the caller proved it
    knows ``secret``."""

    def __init__(
        self, node: str, listen: str, handle: Callable[[bytes, ReplySink], None], secret: bytes,
        auth_timeout_s: float = AUTH_TIMEOUT_S,
    ) -> None:  # fmt: skip
        if not secret:
            raise ValueError("a leaf listener needs the cluster secret")
        host, port = parse_addr(listen)
        self.node = node
        self.handle = handle
        self._secret = secret
        self.auth_timeout_s = auth_timeout_s
        self.refused = 0  # connections closed for a missing or wrong proof
        self._sock = socket.create_server((host, port), backlog=128)
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        bound = self._sock.getsockname()
        adv = host if host not in ("0.0.0.0", "::", "") else HOSTNAME
        self.address = f"[{adv}]:{bound[1]}" if ":" in adv else f"{adv}:{bound[1]}"
        self._thread = threading.Thread(target=self._accept_loop, name="leaf-accept", daemon=True)

    def start(self) -> Listener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._stop.is_set():
                    return
                time.sleep(0.05)  # e.g. out of descriptors: try again shortly
                continue
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name="leaf-conn",
                             daemon=True).start()  # fmt: skip

    def _serve(self, conn: socket.socket) -> None:
        lock = threading.Lock()  # runner threads and the receipt thread write here too
        closed = threading.Event()

        def sink(reply_id: str, msgs: list[bytes]) -> None:
            if closed.is_set():
                return  # the caller is gone: nobody waits for these
            data = reply_frames(reply_id, msgs)
            try:
                with lock:
                    send_all(conn, data)
            except OSError:
                closed.set()
                _close(conn)

        try:
            _tune(conn)
            if not greet_caller(conn, self.node, self._secret, self.auth_timeout_s):
                self.refused += 1
                return
            while not self._stop.is_set():
                n = _LEN.unpack(_read_exact(conn, 4))[0]
                if n > MAX_REQUEST:
                    log.warning("leaf connection: a %d-byte request frame; closing", n)
                    return
                try:
                    self.handle(_read_exact(conn, n), sink)
                except (OSError, ConnectionError):
                    raise
                except Exception:  # noqa: BLE001 - one bad request never stops the connection
                    log.exception("leaf connection of node %s", self.node)
        except (OSError, ConnectionError):
            pass  # the client went away (or stop())
        finally:
            closed.set()
            with self._lock:
                self._conns.discard(conn)
            _close(conn)


def greet_caller(conn: socket.socket, node: str, secret: bytes, timeout_s: float) -> bool:
    """The node's side of the handshake on an accepted ``conn``: greet it with a fresh nonce,
    check its proof (nothing else is read first; False: refused) and answer with the node's."""
    nonce = os.urandom(16)
    conn.settimeout(timeout_s)
    conn.sendall(frame(msgpack.packb({"node": node, "nonce": nonce})))
    msg: object = None
    try:
        n = _LEN.unpack(_read_exact(conn, 4))[0]
        if n <= MAX_AUTH:
            msg = msgpack.unpackb(_read_exact(conn, n), raw=False)
    except (ValueError, TypeError, msgpack.UnpackException, TimeoutError):  # or silent
        msg = None
    got = msg.get("auth") if isinstance(msg, dict) else None
    theirs = _nonce(msg)
    want = proof(secret, b"caller", node, nonce)
    if not isinstance(got, bytes) or not hmac.compare_digest(got, want) or theirs is None:
        log.warning("leaf connection of node %s from %s: no valid proof of the cluster "
                    "secret; closing", node, _peer(conn))  # fmt: skip
        return False
    conn.sendall(frame(msgpack.packb({"auth": proof(secret, b"node", node, theirs)})))
    conn.settimeout(None)
    return True


def _peer(sock: socket.socket) -> str:
    try:
        return str(sock.getpeername())
    except OSError:
        return "?"


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


# --- the web tier's side -----------------------------------------------------------------


class Link:
    """One connection to a node (used by one thread at a time)."""

    def __init__(self, node: str, sock: socket.socket) -> None:
        self.node = node
        self.sock = sock
        self._buf = bytearray()  # bytes read that make no whole frame yet
        self._scratch = memoryview(bytearray(_CHUNK))
        self._body: bytearray | None = None  # a large frame read straight into its buffer
        self._got = 0  # of it

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, payload: bytes) -> None:
        self.sock.sendall(frame(payload))

    def _recv(self, into: memoryview) -> int:
        """What the socket holds, up to ``len(into)`` bytes (0: nothing now); never blocks."""
        try:
            n = self.sock.recv_into(into, len(into), socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return 0
        if n == 0:
            raise ConnectionError(f"node {self.node} closed the connection")
        return n

    def pump(self) -> list[tuple[str, memoryview]]:
        """The reply frames that have arrived in full (reads what the socket holds, never
        blocks); :class:`ConnectionError` once the node closed the connection."""
        out: list[tuple[str, memoryview]] = []
        while True:
            if self._body is not None:
                n = self._recv(memoryview(self._body)[self._got :])
                self._got += n
                if self._got == len(self._body):
                    out.append(parse_reply(self._body))
                    self._body = None
                    continue
                return out
            n = self._recv(self._scratch)
            if n == 0:
                return out
            self._buf += self._scratch[:n]
            self._frames(out)
            if n < _CHUNK and self._body is None:
                return out  # drained (a large frame's body is read on)

    def _frames(self, out: list[tuple[str, memoryview]]) -> None:
        """Move the whole frames in ``_buf`` to ``out``; a large frame begun moves to ``_body``."""
        buf, pos = self._buf, 0
        while len(buf) - pos >= 4:
            size = _LEN.unpack_from(buf, pos)[0]
            if size > MAX_REPLY:
                raise ConnectionError(f"node {self.node}: a {size}-byte reply frame")
            have = len(buf) - pos - 4
            if have >= size:
                out.append(parse_reply(bytes(memoryview(buf)[pos + 4 : pos + 4 + size])))
                pos += 4 + size
                continue
            if size > _CHUNK:
                self._body = bytearray(size)
                self._body[:have] = memoryview(buf)[pos + 4 :]
                self._got, pos = have, len(buf)
            break
        if pos:
            del buf[:pos]

    def close(self) -> None:
        _close(self.sock)


def wait_readable(links: list[Link], timeout_s: float) -> list[Link]:
    """The links with something to read (or closed) within ``timeout_s``."""
    if not links:
        return []
    poll = select.poll()  # not select(): a busy web process has descriptors past 1024
    by_fd = {}
    for link in links:
        by_fd[link.fileno()] = link
        poll.register(link.fileno(), select.POLLIN)
    return [by_fd[fd] for fd, _ in poll.poll(max(0.0, timeout_s) * 1000)]


class Links:
    """The web tier's connections: one per node per thread, made on first use. ``address``
    gives a node's advertised ``host:port`` (None: it has none); a node that could not be
    reached is not tried again for ``retry_after_s`` (its requests go through Redis);
    ``secret`` gives the cluster's secret, asked on each new connection (it may raise
    :class:`ConnectionError`: Redis cannot say now)."""

    def __init__(
        self, address: Callable[[str], str | None], secret: Callable[[], bytes],
        retry_after_s: float = RETRY_AFTER_S, clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.address = address
        self.secret = secret
        self.retry_after_s = retry_after_s
        self.clock = clock
        self._local = threading.local()
        self._addrs: dict[str, str | None] = {}  # cached lookups (shared by threads)
        self._failed: dict[str, float] = {}  # node -> when it last could not be reached

    def _mine(self) -> dict[str, Link]:
        links = getattr(self._local, "links", None)
        if links is None:
            links = self._local.links = {}
        return links

    def get(self, node: str) -> Link | None:
        """This thread's link to ``node``, connecting if needed; None: use Redis."""
        link = self._mine().get(node)
        if link is not None:
            return link
        failed = self._failed.get(node)
        if failed is not None and self.clock() - failed < self.retry_after_s:
            return None
        if node not in self._addrs or failed is not None:  # a failure re-reads the registry
            self._addrs[node] = self.address(node)
        addr = self._addrs[node]
        if not addr:
            self._failed[node] = self.clock()
            return None
        try:
            link = self._connect(node, addr)
        except (OSError, ConnectionError, BadInputError, ValueError, TypeError) as e:
            log.info("no direct connection to node %s at %s: %s", node, addr, e)
            self._failed[node] = self.clock()
            return None
        self._failed.pop(node, None)
        self._mine()[node] = link
        return link

    def _connect(self, node: str, addr: str) -> Link:
        sock = socket.create_connection(parse_addr(addr), timeout=CONNECT_TIMEOUT_S)
        try:
            _tune(sock)
            n = _LEN.unpack(_read_exact(sock, 4))[0]
            hello = msgpack.unpackb(_read_exact(sock, min(n, 4096)), raw=False)
            if not isinstance(hello, dict) or hello.get("node") != node:
                raise BadInputError(f"{addr} is not node {node}: {hello!r}")
            nonce = _nonce(hello)
            if nonce is None:
                raise BadInputError(f"{addr}: a hello without a nonce")
            secret, mine = self.secret(), os.urandom(16)
            mac = proof(secret, b"caller", node, nonce)
            sock.sendall(frame(msgpack.packb({"auth": mac, "nonce": mine})))
            n = _LEN.unpack(_read_exact(sock, 4))[0]
            ack = msgpack.unpackb(_read_exact(sock, min(n, MAX_AUTH)), raw=False)
            got = ack.get("auth") if isinstance(ack, dict) else None
            want = proof(secret, b"node", node, mine)
            if not isinstance(got, bytes) or not hmac.compare_digest(got, want):
                raise BadInputError(f"{addr}: node {node} does not prove the cluster secret")
            sock.settimeout(None)
        except BaseException:
            _close(sock)
            raise
        return Link(node, sock)

    def drop(self, link: Link) -> None:
        """Close ``link`` (broken, or owing answers nobody will read); the next request to its
        node connects anew."""
        link.close()
        mine = self._mine()
        if mine.get(link.node) is link:
            del mine[link.node]

    def broken(self, link: Link) -> None:
        """``link`` broke: drop it and look the node's address up again before reconnecting."""
        self.drop(link)
        self._failed[link.node] = self.clock() - self.retry_after_s  # retry now, re-read
