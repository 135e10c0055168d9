"""The web port is bound on every address its host name gives (``filodb.listen``), as
waitress did before the tier's own server: ``localhost`` answers on 127.0.0.1 and on ::1
where the machine has both, ``*`` on every interface, and a taken port is an OSError."""

from __future__ import annotations

import socket

import pytest

from filodb.listen import bind, listen_addresses


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _connect(family: int, host: str, port: int) -> None:
    with socket.socket(family, socket.SOCK_STREAM) as c:
        c.settimeout(5)
        c.connect((host, port))


def test_every_address_of_the_host_listens_on_one_port() -> None:
    want = {(f, a[0]) for f, _, _, a in listen_addresses("localhost", 0)}
    assert (socket.AF_INET, "127.0.0.1") in want
    socks = bind("localhost", 0)
    try:
        assert {(s.family, s.getsockname()[0]) for s in socks} == want
        ports = {s.getsockname()[1] for s in socks}
        assert len(ports) == 1  # port 0: the first address's port for the others
        port = ports.pop()
        _connect(socket.AF_INET, "127.0.0.1", port)
        if (socket.AF_INET6, "::1") in want:
            _connect(socket.AF_INET6, "::1", port)
        assert not any(s.get_inheritable() for s in socks)
        with pytest.raises(OSError):
            bind("127.0.0.1", port)  # taken
    finally:
        for s in socks:
            s.close()


def test_star_means_every_interface_and_inheritable_sockets_for_children() -> None:
    socks = bind("*", 0, inheritable=True)
    try:
        names = {s.getsockname()[0] for s in socks}
        assert "0.0.0.0" in names
        if _has_ipv6_loopback():
            assert "::" in names
        assert all(s.get_inheritable() for s in socks)
        _connect(socket.AF_INET, "127.0.0.1", socks[0].getsockname()[1])
    finally:
        for s in socks:
            s.close()


def test_a_name_with_no_address_is_an_error() -> None:
    with pytest.raises(OSError):
        bind("no-such-host.invalid", 0)
