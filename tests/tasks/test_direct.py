"""The web tier's side of direct connections: which address is asked when, with an injected
clock, against real sockets."""

from __future__ import annotations

import socket
import threading

import msgpack

from filodb.tasks import direct
from filodb.tasks.direct import Links


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
    links = Links(reg, retry_after_s=1.0, clock=lambda: now[0])
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
    links = Links(reg, retry_after_s=1.0, clock=lambda: now[0])
    try:
        assert links.get("b") is None and reg.asked == ["b"]
        reg.addrs["b"] = live_addr  # the node restarted on another port
        now[0] = 101.5
        live.settimeout(5)

        def greet() -> None:  # one connection: the node's hello, then held open
            conn, _ = live.accept()
            conn.sendall(direct.frame(msgpack.packb({"node": "b"})))
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
