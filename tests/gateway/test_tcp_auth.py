"""TCP doors with a token, against a real Redis: a connection must open with ``auth <token>``;
otherwise it is closed, counted as rejected, and nothing it sent reaches the log. A door
without a token on the same gateway stays as it was; the CLI refuses a bad [gateway] table."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from filodb.gateway.router import IngestRouter
from filodb.gateway.tcp import GatewayOptions, TcpGateway
from filodb.ingest.redis_streams import RedisStreamsLog
from filodb.model.batch import SampleBatch
from filodb.redisproc import free_port
from filodb.shards.redis_map import ShardMapStore
from filodb.testing.wait import eventually

DS = "prometheus"
TOKEN = b"tcp-s3cret"


@pytest.fixture
def gw(redis_url: str):  # type: ignore[no-untyped-def]
    ShardMapStore(redis_url).create_dataset(DS, 2, 1)
    router = IngestRouter(ShardMapStore(redis_url), RedisStreamsLog(redis_url))
    g = TcpGateway(router, DS, "127.0.0.1", {"influx": free_port(), "graphite": free_port()},
                   GatewayOptions(auth_timeout_s=0.5), tokens={"influx": TOKEN}).start()  # fmt: skip
    yield g
    g.stop()


def _names(url: str) -> Counter:
    got = RedisStreamsLog(url).read(DS, {0: 0, 1: 0}, 100_000, 0)
    out: Counter = Counter()
    for recs in got.values():
        for _, raw in recs:
            b = SampleBatch.from_bytes(raw)
            out.update(dict(b.series[s])["__name__"] for s in b.sidx.tolist())
    return out


def _session(port: int, *chunks: bytes) -> bytes:
    """Send ``chunks``, half-close, and return what the server sent until it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for c in chunks:
            s.sendall(c)
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:  # the server may have closed already
            pass
        out = b""
        while data := s.recv(4096):
            out += data
        return out


def _rejected(gw: TcpGateway, n: int) -> None:
    st = gw.stats.snapshot()["influx"]
    assert st["connections_rejected"] == n and st["connections_open"] == 0, st


@pytest.mark.parametrize("first", [b"", b"auth wrong\n", b"auth\n", b"AUTH tcp-s3cret\n",
                                   b"tcp-s3cret\n", b"auth tcp-s3cret-and-more\n"])  # fmt: skip
def test_a_connection_without_the_token_is_closed_and_writes_nothing(
    gw: TcpGateway, redis_url: str, first: bytes
) -> None:
    assert _session(gw.ports["influx"], first + b"bad_probe value=1 1\n") == b""
    eventually(lambda: _rejected(gw, 1), 10, 0.05)
    # the door still serves: an authenticated connection lands, and only its line
    _session(gw.ports["influx"], b"auth tcp-s3cret\r\ngood_probe value=1 1\n")
    got = eventually(lambda: _names(redis_url) if _names(redis_url) else _fail(), 10, 0.05)
    assert got == Counter({"good_probe": 1})
    assert gw.stats.snapshot()["influx"]["lines_accepted"] == 1


def _fail() -> Counter:
    raise AssertionError("nothing in the log yet")


def test_the_token_line_may_arrive_in_pieces_and_is_not_data(
    gw: TcpGateway, redis_url: str
) -> None:
    _session(gw.ports["influx"], b"auth tcp-", b"s3cret\na value=1 1\nb value=2 2\n")
    eventually(lambda: _names(redis_url) == Counter({"a": 1, "b": 1}) or _fail(), 10, 0.05)
    st = gw.stats.snapshot()["influx"]
    assert st["lines_rejected"] == {} and st["connections_rejected"] == 0


def test_a_silent_connection_is_closed_after_the_auth_timeout(gw: TcpGateway) -> None:
    with socket.create_connection(("127.0.0.1", gw.ports["influx"]), timeout=10) as s:
        assert s.recv(10) == b""  # closed by the server (auth_timeout_s 0.5), not our timeout
    eventually(lambda: _rejected(gw, 1), 10, 0.05)


def test_a_door_without_a_token_takes_plain_lines(gw: TcpGateway, redis_url: str) -> None:
    _session(gw.ports["graphite"], b"plain.metric 1 1\n")
    eventually(lambda: _names(redis_url) == Counter({"plain_metric": 1}) or _fail(), 10, 0.05)
    assert gw.stats.snapshot()["graphite"]["connections_rejected"] == 0


def test_gateway_cli_refuses_a_door_token_that_cannot_write(redis_url: str, tmp_path: Path) -> None:
    auth = tmp_path / "auth.toml"
    auth.write_text('[[tokens]]\nname = "t"\ntoken = "x"\ndatasets = ["other"]\nscopes = ["write"]\n'
                    '[gateway]\ninflux_token = "t"\n')  # fmt: skip
    p = subprocess.run([sys.executable, "-m", "filodb", "gateway", "--redis-url", redis_url,
                        "--influx-port", str(free_port()), "--auth-file", str(auth)],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert p.returncode == 2, p.stdout + p.stderr
    assert (
        "[gateway] influx_token names token 't', which may not write to dataset 'prometheus'"
        in p.stderr
    )
