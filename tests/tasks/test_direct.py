"""Direct connections against real sockets: which address the web tier asks when (an injected
clock), and the node's check of the caller's proof of the cluster secret."""

from __future__ import annotations

import socket
import threading

import msgpack
import pytest

from filodb.tasks import direct
from filodb.tasks.direct import Links, Listener
from filodb.testing.wait import wait_for

KEY = b"the cluster secret"


class Lookups:
    """A node registry: the address of each node, and every lookup made."""

    def __init__(self, addrs: dict[str, str | None]) -> None:
        self.addrs = addrs
        self.asked: list[str] = []

    def __call__(self, node: str) -> str | None:
        self.asked.append(node)
        return self.addrs.get(node)


def _listening() -> tuple[socket.socket, str]:
    s = socket.create_server(("127.0.0.1", 0))
    return s, f"127.0.0.1:{s.getsockname()[1]}"


def test_a_node_without_an_address_is_asked_again_only_after_the_retry_time() -> None:
    now = [100.0]
    reg = Lookups({"a": None})
    links = Links(reg, lambda: KEY, retry_after_s=1.0, clock=lambda: now[0])
    assert links.get("a") is None and links.get("a") is None
    assert reg.asked == ["a"]  # not on every request
    now[0] = 101.5
    assert links.get("a") is None and reg.asked == ["a", "a"]


def test_an_unreachable_address_is_looked_up_again_and_a_good_link_is_kept() -> None:
    now = [100.0]
    dead, dead_addr = _listening()
    dead.close()  # nothing listens there any more: refused
    live, live_addr = _listening()
    reg = Lookups({"b": dead_addr})
    links = Links(reg, lambda: KEY, retry_after_s=1.0, clock=lambda: now[0])
    try:
        assert links.get("b") is None and reg.asked == ["b"]
        reg.addrs["b"] = live_addr  # the node restarted on another port
        now[0] = 101.5
        live.settimeout(5)

        def greet() -> None:  # one connection: the node's handshake, then held open
            conn, _ = live.accept()
            assert direct.greet_caller(conn, "b", KEY, 5.0)
            conn.recv(1)

        t = threading.Thread(target=greet, daemon=True)
        t.start()
        link = links.get("b")
        assert link is not None and reg.asked == ["b", "b"]
        assert links.get("b") is link and reg.asked == ["b", "b"]  # one per thread, kept
        links.broken(link)  # broke: the next get() looks the address up again at once
        # and connects, but no hello comes (nobody accepts any more): no link, Redis instead
        assert links.get("b") is None and reg.asked == ["b", "b", "b"]
        t.join(5)
    finally:
        live.close()


class Node:
    """A real :class:`Listener` whose handler records the request frames it is given."""

    def __init__(self, name: str = "n1", auth_timeout_s: float = 5.0) -> None:
        self.got: list[bytes] = []
        self.listener = Listener(name, "127.0.0.1:0", self.handle, KEY, auth_timeout_s).start()

    def handle(self, payload: bytes, sink: direct.ReplySink) -> None:
        self.got.append(payload)
        sink("r", [b"ok:" + payload])

    def connect(self) -> tuple[socket.socket, dict]:
        """A raw connection and the node's hello."""
        sock = socket.create_connection(direct.parse_addr(self.listener.address), timeout=10)
        n = int.from_bytes(sock.recv(4), "little")
        return sock, msgpack.unpackb(sock.recv(n, socket.MSG_WAITALL))


def _closed(sock: socket.socket) -> bool:
    """Whether the peer closes ``sock`` with nothing more sent (the socket has a timeout)."""
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True


def _request(link: direct.Link, payload: bytes) -> list[tuple[str, bytes]]:
    link.send(payload)
    got: list[tuple[str, bytes]] = []
    while not got:
        assert direct.wait_readable([link], 10)
        got += [(rid, bytes(m)) for rid, m in link.pump()]
    return got


def test_a_caller_knowing_the_secret_is_served_through_links() -> None:
    node = Node()
    try:
        links = Links(lambda n: node.listener.address, lambda: KEY)
        link = links.get("n1")
        assert link is not None
        assert _request(link, b"hello node") == [("r", b"ok:hello node")]
        assert _request(link, b"again") == [("r", b"ok:again")]
        assert node.got == [b"hello node", b"again"] and node.listener.refused == 0
        link.close()
    finally:
        node.listener.stop()


def test_a_wrong_or_missing_proof_closes_the_connection_before_any_request_is_read() -> None:
    node = Node()
    mine = bytes(range(16))
    try:
        # a wrong secret, then a request that would be served
        sock, hello = node.connect()
        assert hello["node"] == "n1" and len(hello["nonce"]) == 16
        bad = direct.proof(b"not the secret", b"caller", "n1", hello["nonce"])
        sock.sendall(direct.frame(msgpack.packb({"auth": bad, "nonce": mine}))
                     + direct.frame(b"request"))  # fmt: skip
        assert _closed(sock)
        # no proof at all: the request itself is taken for one, and refused
        sock, hello = node.connect()
        sock.sendall(direct.frame(b"request"))
        assert _closed(sock)
        # the right proof for another connection's nonce (a replay): refused
        sock, _ = node.connect()
        old = direct.proof(KEY, b"caller", "n1", hello["nonce"])
        sock.sendall(direct.frame(msgpack.packb({"auth": old, "nonce": mine})))
        assert _closed(sock)
        # the node's own answer sent back as the caller's proof (a reflection): refused
        sock, hello = node.connect()
        refl = direct.proof(KEY, b"node", "n1", hello["nonce"])
        sock.sendall(direct.frame(msgpack.packb({"auth": refl, "nonce": mine})))
        assert _closed(sock)
        # an oversized first frame is not read
        sock, _ = node.connect()
        sock.sendall((direct.MAX_AUTH + 1).to_bytes(4, "little") + b"x" * 1000)
        assert _closed(sock)
        assert node.got == [] and node.listener.refused == 5
        # the right proof: the node answers with its own, and serves
        sock, hello = node.connect()
        good = direct.proof(KEY, b"caller", "n1", hello["nonce"])
        sock.sendall(direct.frame(msgpack.packb({"auth": good, "nonce": mine})))
        n = int.from_bytes(sock.recv(4), "little")
        ack = msgpack.unpackb(sock.recv(n, socket.MSG_WAITALL))
        assert ack == {"auth": direct.proof(KEY, b"node", "n1", mine)}
        sock.close()
        # Links with the wrong secret: no link (its requests then go by Redis)
        now = [0.0]
        links = Links(lambda n: node.listener.address, lambda: b"wrong", clock=lambda: now[0])
        assert links.get("n1") is None
        assert node.got == [] and node.listener.refused == 6
    finally:
        node.listener.stop()


def test_a_node_that_cannot_prove_the_secret_is_not_used() -> None:
    sock, addr = _listening()
    sock.settimeout(5)

    def impostor() -> None:  # greets, takes any proof, answers with a made-up one
        conn, _ = sock.accept()
        conn.sendall(direct.frame(msgpack.packb({"node": "n1", "nonce": bytes(16)})))
        n = int.from_bytes(conn.recv(4), "little")
        conn.recv(n, socket.MSG_WAITALL)
        conn.sendall(direct.frame(msgpack.packb({"auth": bytes(32)})))
        conn.recv(1)

    t = threading.Thread(target=impostor, daemon=True)
    t.start()
    try:
        assert Links(lambda n: addr, lambda: KEY).get("n1") is None
        t.join(5)
    finally:
        sock.close()


def test_a_silent_caller_is_closed_after_the_auth_timeout() -> None:
    node = Node(auth_timeout_s=0.2)
    try:
        sock, _ = node.connect()  # sends nothing
        assert _closed(sock)
        wait_for(lambda: node.listener.refused == 1, 5, "the refusal counted")
        assert node.got == []
    finally:
        node.listener.stop()


def test_a_listener_without_a_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        Listener("n1", "127.0.0.1:0", lambda p, s: None, b"")


def test_send_all_sends_every_buffer_in_order_through_partial_sends() -> None:
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # many partial sendmsg calls
    parts = [bytes([i % 251]) * (i * 37 % 5000) for i in range(1500)]  # past one iovec batch
    parts.append(bytes(range(256)) * 20_000)  # 5 MB
    got = bytearray()

    def read() -> None:
        want = sum(map(len, parts))
        while len(got) < want:
            got.extend(b.recv(1 << 16))

    t = threading.Thread(target=read, daemon=True)
    t.start()
    direct.send_all(a, parts)
    t.join(30)
    assert bytes(got) == b"".join(parts)
    a.close()
    b.close()
