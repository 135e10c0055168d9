"""The filodb command's own checks, before it talks to any server."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from filodb.cli import main
from filodb.redisproc import free_port


@pytest.mark.parametrize("name", ["ünï", "x" * 300, "../x", "-x"])
def test_dataset_create_refuses_a_bad_name_with_exit_2(name: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: an HTTP attempt would exit 1
    r = CliRunner().invoke(main, ["dataset", "create", "--shards", "2", "--url", url, "--", name])
    assert r.exit_code == 2, r.output
    assert "invalid dataset name" in r.output


BAD_AUTH = '[[tokens]]\ntoken = "x"\ndatasets = ["*"]\nscopes = ["read", "sudo"]\n'
GOOD_AUTH = '[[tokens]]\ntoken = "x"\ndatasets = ["*"]\nscopes = ["read"]\n'


@pytest.mark.parametrize("command", [["up"], ["web", "--redis-url", "redis://127.0.0.1:1"],
                                     ["gateway", "--redis-url", "redis://127.0.0.1:1"]])  # fmt: skip
def test_servers_refuse_a_bad_auth_file_with_exit_2(tmp_path, command: list[str]) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "auth.toml"
    p.write_text(BAD_AUTH)
    r = CliRunner().invoke(main, [*command, "--auth-file", str(p), "--data-dir", str(tmp_path)]
                           if command == ["up"] else [*command, "--auth-file", str(p)])  # fmt: skip
    assert r.exit_code == 2, r.output
    assert f"auth file {p}: [[tokens]] #1: unknown scope(s) ['sudo']" in r.output


@pytest.mark.parametrize(("auth", "warned"), [(None, True), (GOOD_AUTH, False)])
def test_up_beyond_loopback_without_an_auth_file_warns(
    tmp_path, auth: str | None, warned: bool
) -> None:  # type: ignore[no-untyped-def]
    args = ["up", "--host", "0.0.0.0", "--store", "bogus", "--data-dir", str(tmp_path)]
    if auth:
        (tmp_path / "auth.toml").write_text(auth)
        args += ["--auth-file", str(tmp_path / "auth.toml")]
    r = CliRunner().invoke(main, args)  # the bad store stops it right after the check
    assert r.exit_code == 2 and "unknown column store 'bogus'" in r.output, r.output
    assert ("listens on 0.0.0.0 without an auth file" in r.output) == warned, r.output


@pytest.mark.parametrize(("args", "env", "said"), [
    (["--worker-threads", "0"], {}, "'--worker-threads': 0 is not in the range x>=1"),
    (["--web-threads", "-1"], {}, "'--web-threads': -1 is not in the range x>=1"),
    ([], {"FILODB_WEB_THREADS": "0"}, "web_threads must be at least 1, not 0"),
    (["--web-connections", "0"], {}, "'--web-connections': 0 is not in the range x>=1"),
    ([], {"FILODB_WEB_CONNECTIONS": "0"}, "web_connections must be at least 1, not 0"),
    ([], {"FILODB_WORKER_THREADS": "0"}, "worker_threads must be at least 1, not 0"),
    (["--leaf-listen", "localhost"], {}, "leaf_listen: not host:port: 'localhost'"),
    ([], {"FILODB_LEAF_LISTEN": "127.0.0.1:99999"}, "leaf_listen: not host:port"),
    (["--web-in-worker", "--workers", "2"], {}, "web_in_worker needs workers = 1 and web_processes = 1"),
    (["--web-processes", "2"], {"FILODB_WEB_IN_WORKER": "1"}, "not 1 and 2"),
])  # fmt: skip
def test_up_refuses_bad_thread_counts_or_leaf_listen_with_exit_2(tmp_path, args, env, said) -> None:  # type: ignore[no-untyped-def]
    r = CliRunner().invoke(main, ["up", "--data-dir", str(tmp_path), *args], env=env)
    assert r.exit_code == 2 and said in r.output, r.output
    assert not (tmp_path / "redis").exists()  # refused before anything started


def test_up_hands_its_thread_counts_to_the_web_and_worker_processes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from filodb.config import load_config
    from filodb.supervisor import Supervisor

    cfg = load_config(None, {"web_threads": 3, "worker_threads": 2, "web_connections": 7,
                             "data_dir": str(tmp_path)})  # fmt: skip
    env = Supervisor(cfg)._child_env()
    assert (env["FILODB_WEB_THREADS"], env["FILODB_WORKER_THREADS"]) == ("3", "2")
    assert env["FILODB_WEB_CONNECTIONS"] == "7"
    assert load_config(None, {}, environ=env).worker_threads == 2  # how a child reads them back


def test_the_web_server_takes_its_connection_and_thread_limits_from_the_config(
    tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import filodb.web
    from filodb.cli import _web_server
    from filodb.config import load_config

    monkeypatch.setattr(filodb.web, "create_app", lambda cfg, **kw: lambda env, sr: [])
    cfg = load_config(None, {"web_threads": 3, "web_connections": 7, "port": 0,
                             "host": "127.0.0.1", "data_dir": str(tmp_path)})  # fmt: skip
    server = _web_server(cfg, (), None)
    try:
        assert server.connection_limit == 7 and server.calls._value == 3  # type: ignore[attr-defined]
    finally:
        server.close(0)
