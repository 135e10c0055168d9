"""``filodb up``'s supervisor only supervises, so it carries none of the libraries the servers
need: it is the CLI ``exec``'d into :func:`filodb.supervisor.main`, speaks RESP itself
(:class:`~filodb.redisproc.Resp`), and writes the shard map from a short-lived child
(:mod:`filodb.shards.bootstrap`)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis

from filodb.config import Config
from filodb.errors import BadInputError, UnavailableError
from filodb.redisproc import Resp, RespError, free_port, redis_answers, start_redis
from filodb.shards.redis_map import ShardMapStore
from filodb.shards.state import ShardStatus
from filodb.supervisor import Supervisor

HEAVY = ("numpy", "numba", "llvmlite", "redis", "hiredis", "click", "rich", "orjson",
         "requests", "ssl", "_ssl", "_hashlib", "http.client", "lark", "xxhash")  # fmt: skip


def test_the_supervisor_imports_none_of_the_servers_libraries() -> None:
    code = ("import os, sys; os.environ['_FILODB_UP_CONFIG'] = '{}'\n"
            "import filodb.supervisor, filodb.redisproc\nprint('\\n'.join(sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()  # fmt: skip
    assert "filodb.supervisor" in out
    loaded = sorted(m for m in out if m in HEAVY or m.split(".")[0] in HEAVY)
    assert loaded == [], loaded


@pytest.fixture(scope="module")
def rp(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    proc = start_redis(tmp_path_factory.mktemp("redis"))
    yield proc
    proc.stop()


def test_resp_client_speaks_to_redis(rp) -> None:  # type: ignore[no-untyped-def]
    c = Resp.from_url(rp.url, 5.0)
    try:
        assert c.call("PING") == "PONG"
        assert c.call("SET", "lean:k", "v\r\nw") == "OK"
        assert c.call("GET", "lean:k") == b"v\r\nw"
        assert c.call("GET", "lean:absent") is None
        assert c.call("RPUSH", "lean:l", "a", "b") == 2
        assert c.call("LRANGE", "lean:l", "0", "-1") == [b"a", b"b"]
        with pytest.raises(RespError, match="wrong number of arguments"):
            c.call("GET")
        assert c.call("PING") == "PONG"  # an error reply leaves the connection usable
        info = c.info("persistence")
        assert info["aof_enabled"] == 1 and isinstance(info["aof_current_size"], int)
        ref = redis.Redis.from_url(rp.url).info("persistence")  # as redis-py parses it
        assert set(info) == set(ref)
        assert all(type(info[k]) is type(ref[k]) for k in ref), [(k, info[k], ref[k]) for k in ref]
    finally:
        c.close()


def test_redis_answers_as_redis_py_does(rp) -> None:  # type: ignore[no-untyped-def]
    assert redis_answers(rp.url)
    assert redis_answers(f"redis://localhost:{rp.port}")  # default db, name resolved
    assert not redis_answers(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    # a password the server does not want is an error reply: not an answering server
    assert not redis_answers(f"redis://:secret@127.0.0.1:{rp.port}/0")
    assert not redis_answers("redis://127.0.0.1:notaport/0")


def test_a_server_still_loading_does_not_answer() -> None:
    """A server that replies ``-LOADING`` (it reads its files) is not up yet."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]

    def loading() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.recv(64)
            conn.sendall(b"-LOADING Redis is loading the dataset in memory\r\n")

    t = threading.Thread(target=loading, daemon=True)
    t.start()
    try:
        assert not redis_answers(f"redis://127.0.0.1:{port}/0", timeout=5.0)
    finally:
        t.join(5)
        srv.close()


def _sup(tmp_path: Path, url: str, **cfg: object) -> Supervisor:
    return Supervisor(Config(data_dir=str(tmp_path), redis_url=url, **cfg),  # type: ignore[arg-type]
                      echo=lambda _m: None)  # fmt: skip


def test_the_shard_map_is_written_by_a_child(rp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec = {"url": rp.url, "dataset": "lean", "shards": 4, "spread": 1, "downsample": "",
            "retention": 3600.0}  # fmt: skip
    sup = _sup(tmp_path, rp.url)
    sup._shard_map("create", json.dumps(spec))
    store = ShardMapStore(rp.url)
    assert store.dataset("lean").shards == 4
    assert [s.status for s in store.shard_states("lean")] == [ShardStatus.UNASSIGNED] * 4
    sup._shard_map("create", json.dumps(spec))  # again, alike: unchanged
    with pytest.raises(BadInputError, match="dataset 'lean' exists with 4 shards, not 8"):
        sup._shard_map("create", json.dumps({**spec, "shards": 8}))

    store.move(store.shard_state("lean", 1), ShardStatus.ASSIGNED, node="node-9")
    store.claim("node-9", [("lean", 1)], 60_000)
    sup._mark_node_down("node-9")  # what a worker's death does
    assert store.shard_state("lean", 1).status == ShardStatus.DOWN
    assert store.lease_holder("lean", 1) == ""
    assert store.shard_state("lean", 0).status == ShardStatus.UNASSIGNED  # not that node's


def test_a_shard_map_write_that_fails_says_why(tmp_path: Path) -> None:
    said: list[str] = []
    url = f"redis://127.0.0.1:{free_port()}/0"
    sup = Supervisor(Config(data_dir=str(tmp_path), redis_url=url), echo=said.append)
    with pytest.raises(UnavailableError, match="onnect"):
        sup._shard_map("create", json.dumps({"url": url, "dataset": "x", "shards": 4,
                                             "spread": 1, "downsample": "", "retention": 0}))  # fmt: skip
    sup._mark_node_down("node-1")
    assert len(said) == 1 and said[0].startswith("could not mark node-1's shards Down: "), said


def test_up_after_its_checks_is_the_lean_supervisor_and_fails_like_the_cli(tmp_path: Path) -> None:
    """The exec'd supervisor reports what the CLI reported: here the web port is taken (exit 2,
    nothing started)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "filodb", "up", "--data-dir", str(tmp_path / "d"),
             "--port", str(port), "--influx-port", "0", "--graphite-port", "0"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    assert (
        r.stderr.strip()
        == f"error: port {port} on 127.0.0.1 is in use (another filodb up?); pass --port"
    )
    assert not (tmp_path / "d" / "redis").exists()
