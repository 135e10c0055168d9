"""Listening sockets for the web tier: every address a host name gives, as a server should
bind them (``localhost`` is 127.0.0.1 and ::1 where both exist). Standard library only: the
supervisor binds the web port with it before any web process starts (``filodb up`` hands the
sockets down), and stays a small process.
"""

from __future__ import annotations

import socket
from typing import Any


def listen_addresses(host: str, port: int) -> list[tuple[int, int, int, Any]]:
    """(family, type, proto, address) of every TCP address ``host:port`` names for listening
    (``getaddrinfo`` with ``AI_PASSIVE``; ``*`` or empty: every interface), each once; a
    host of ``localhost`` gives both 127.0.0.1 and ::1 where both exist."""
    name = None if host in ("", "*") else host.strip("[]")
    out, seen = [], set()
    for family, kind, proto, _, addr in socket.getaddrinfo(
        name, port, socket.AF_UNSPEC, socket.SOCK_STREAM, socket.IPPROTO_TCP, socket.AI_PASSIVE
    ):
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        key = (family, str(addr[0]).split("%")[0], addr[1])  # the same address, once
        if key not in seen:
            seen.add(key)
            out.append((int(family), int(kind), proto, addr))
    return out


def bind(host: str, port: int, backlog: int = 1024, inheritable: bool = False
         ) -> list[socket.socket]:  # fmt: skip
    """Listening sockets on every address of ``host:port`` (:func:`listen_addresses`;
    ``SO_REUSEADDR``, IPv6 sockets IPv6 only); ``inheritable`` to hand them to child processes.
    Raises ``OSError`` when the port is taken; a port of 0 on several addresses takes the
    first one's port for the others."""
    out: list[socket.socket] = []
    try:
        for family, kind, proto, addr in listen_addresses(host, port):
            if out and port == 0:
                addr = (addr[0], out[0].getsockname()[1], *addr[2:])
            s = socket.socket(family, kind, proto)
            out.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(addr)
            s.listen(backlog)
            s.set_inheritable(inheritable)
    except OSError:
        for s in out:
            s.close()
        raise
    if not out:
        raise OSError(f"no address to listen on for {host!r}")
    return out
