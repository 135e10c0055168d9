"""``filodb up --auth-file`` against real clients: Debian's Prometheus 2.42 remote-writing and
remote-reading with ``authorization`` (bearer) and with ``basic_auth``, promtool with
the token as basic auth in its URL, the CLI with ``--token``/``FILODB_TOKEN``, the Influx TCP door with
and without its token, and the UI asking for a token in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.redisproc import free_port
from filodb.testing.cluster import UpProcess
from filodb.testing.prometheus import PROMTOOL, PromServer, need
from filodb.testing.wait import eventually, wait_for

pytestmark = pytest.mark.e2e

AUTH = """
[[tokens]]
name = "prom"
token = "prom-tok"
datasets = ["*"]
scopes = ["read", "write"]

[[tokens]]
name = "basic"
token = "basic-tok"
datasets = ["prometheus"]
scopes = ["read", "write"]

[[tokens]]
name = "reader"
token = "read-tok"
datasets = ["prometheus"]
scopes = ["read"]

[[tokens]]
name = "telegraf"
token = "tcp-tok"
datasets = ["prometheus"]
scopes = ["write"]

[gateway]
influx_token = "telegraf"
"""
READ = {"Authorization": "Bearer read-tok"}
WRITE = {"Authorization": "Bearer prom-tok"}


class SecuredUp(UpProcess):
    influx_port: int


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> SecuredUp:
    home = tmp_path_factory.mktemp("auth-e2e")
    (home / "auth.toml").write_text(AUTH)
    influx = free_port()
    proc = SecuredUp(home / "data", shards=4, extra=[
        "--auth-file", str(home / "auth.toml"), "--influx-port", str(influx),
        "--graphite-port", "0"])  # fmt: skip
    proc.influx_port = influx
    proc.start()
    yield proc
    proc.stop()


def _get(up: UpProcess, path: str, headers: dict | None = None, **params: object) -> dict:
    r = requests.get(up.url + path, params=params, headers=READ if headers is None else headers,
                     timeout=30)  # fmt: skip
    assert r.status_code == 200, f"{path}: {r.status_code} {r.text}"
    return r.json()["data"]


def _result(up: UpProcess, query: str, **params: object) -> list:
    return _get(up, "/api/v1/query", query=query, **params)["result"]


def test_the_tree_is_healthy_but_closed(up: SecuredUp) -> None:
    assert requests.get(up.url + "/admin/health", timeout=10).status_code == 200
    r = requests.get(up.url + "/api/v1/query", params={"query": "up"}, timeout=10)
    assert r.status_code == 401 and r.json()["errorType"] == "unauthorized"
    assert "Bearer" in r.headers["WWW-Authenticate"]
    r = requests.post(up.url + "/api/v1/write", data=b"", headers=READ, timeout=10)
    assert r.status_code == 403 and "no write scope on dataset 'prometheus'" in r.json()["error"]


@pytest.mark.parametrize("kind", ["bearer", "basic"])
def test_prometheus_writes_and_reads_with_its_credentials(up: SecuredUp, tmp_path: Path,
                                                          kind: str) -> None:  # fmt: skip
    cred = ({"authorization": {"credentials": "prom-tok"}} if kind == "bearer"
            else {"basic_auth": {"username": "prometheus", "password": "basic-tok"}})  # fmt: skip
    # remote read: samples only FiloDB has (Prometheus scrapes nothing by that name)
    base = (int(time.time()) // 60 - 20) * 60_000
    name = f"auth_rr_{kind}"
    series = [make_labels({"__name__": name, "host": h}) for h in ("a", "b")]
    ts = base + 15_000 * np.arange(20)
    vals = np.concatenate([np.arange(20.0), -np.arange(20.0)])
    batch = SampleBatch(series, np.repeat([0, 1], 20), np.tile(ts, 2), vals)
    r = requests.post(up.url + "/api/v1/write", data=encode_write_request(batch), headers=WRITE,
                      timeout=30)  # fmt: skip
    assert r.status_code == 204, r.text
    t_end = (int(ts[-1]) + 1) / 1000
    eventually(lambda: _n(_result(up, f"count({name})", time=t_end), 2), 30)

    web = up.url.removeprefix("http://")
    prom = PromServer(tmp_path / f"prom-{kind}", {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{"job_name": f"filodb-{kind}", "static_configs": [{"targets": [web]}]}],
        "remote_write": [
            {"url": up.url + "/api/v1/write", "queue_config": {"batch_send_deadline": "1s"}, **cred},
            {"url": up.url + "/api/v1/write", "name": "read-only",  # refused with 403
             "authorization": {"credentials": "read-tok"}},
        ],
        "remote_read": [{"url": up.url + "/api/v1/read", "read_recent": True, **cred}],
    }).start()  # fmt: skip
    try:
        got = prom.get("/api/v1/query", query=f"{name}[15m]", time=t_end)["result"]
        assert {s["metric"]["host"]: [float(v) for _, v in s["values"]] for s in got} == {
            "a": list(np.arange(20.0)), "b": list(-np.arange(20.0))}  # fmt: skip
        # remote write: what Prometheus scrapes (FiloDB's own /metrics, open) reaches FiloDB
        wait_for(lambda: _result(up, f'up{{job="filodb-{kind}"}}'), 60,
                 f"Prometheus's {kind} remote write in FiloDB", prom.log)  # fmt: skip
        metrics = requests.get(up.url + "/metrics", timeout=10).text
        assert 'code="403",method="POST",route="/api/v1/write"' in metrics  # the read-only queue
    finally:
        assert prom.stop() == 0, prom.log()


def _n(result: list, n: int) -> None:
    assert result and float(result[0]["value"][1]) == n, result


def test_promtool_sends_the_token_as_basic_auth_in_the_url(up: SecuredUp) -> None:
    # promtool 2.42 (Debian) has no --http.config.file (it came in 2.43); its Go client sends a
    # URL's user:password as HTTP basic auth, and the password is the token
    need(PROMTOOL)
    expr = "vector(42)"
    p = subprocess.run([PROMTOOL, "query", "instant", up.url.replace("://", "://promtool:read-tok@"),
                        expr], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().startswith("{} => 42 @["), p.stdout
    p = subprocess.run([PROMTOOL, "query", "instant", up.url, expr],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert p.returncode != 0 and "401" in p.stderr, (p.stdout, p.stderr)
    p = subprocess.run([PROMTOOL, "query", "instant", up.url.replace("://", "://x:wrong@"), expr],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert p.returncode != 0 and "401" in p.stderr, (p.stdout, p.stderr)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("FILODB_")}
    return subprocess.run([sys.executable, "-m", "filodb", *args], capture_output=True,
                          text=True, timeout=60, env={**base, **(env or {})})  # fmt: skip


def test_cli_commands_send_the_token(up: SecuredUp, tmp_path: Path) -> None:
    p = _cli("query", "--url", up.url, "vector(7)", "--json")
    assert p.returncode == 2 and "needs a token" in p.stderr, p.stderr
    p = _cli("query", "--url", up.url, "vector(7)", "--json", "--token", "read-tok")
    assert p.returncode == 0 and json.loads(p.stdout)["data"]["result"][0]["value"][1] == "7", (
        p.stdout
    )
    p = _cli("status", "--url", up.url, env={"FILODB_TOKEN": "read-tok"})
    assert p.returncode == 0 and "Active" in p.stdout, p.stderr
    p = _cli("dataset", "create", "--url", up.url, "--shards", "2", "authds", "--token", "read-tok")
    assert p.returncode == 2 and "no admin scope on dataset 'authds'" in p.stderr, p.stderr
    prom_file = tmp_path / "in.prom"
    prom_file.write_text("cli_import_probe 5 1700000000000\n")
    p = _cli("import", str(prom_file), "--url", up.url, "--token", "read-tok")
    said = p.stdout + p.stderr
    assert p.returncode == 1 and "no write scope on dataset 'prometheus'" in said, said
    p = _cli("import", str(prom_file), "--url", up.url, env={"FILODB_TOKEN": "prom-tok"})
    assert p.returncode == 0, p.stderr
    wait_for(lambda: _get(up, "/api/v1/series", **{"match[]": "cli_import_probe",
                                                   "start": "1699999999", "end": "1700000001"}),
             30, "the imported series")  # fmt: skip
    p = _cli("export", "cli_import_probe", "--url", up.url, "--start", "1699999999",
             "--end", "1700000001", "--token", "read-tok")  # fmt: skip
    assert p.returncode == 0 and "cli_import_probe 5" in p.stdout, (p.stdout, p.stderr)


def _tcp(port: int, body: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(body)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while data := s.recv(4096):
            out += data
        return out


def test_the_influx_tcp_door_needs_its_token(up: SecuredUp) -> None:
    t_ns = (int(time.time()) - 60) * 1_000_000_000
    assert _tcp(up.influx_port, f"tcp_noauth_probe value=1 {t_ns}\n".encode()) == b""
    assert _tcp(up.influx_port, f"auth read-tok\ntcp_noauth_probe value=1 {t_ns}\n".encode()) == b""
    _tcp(up.influx_port, f"auth tcp-tok\ntcp_auth_probe value=2 {t_ns}\n".encode())
    got = wait_for(lambda: _result(up, "tcp_auth_probe"), 30, "the authenticated line")
    assert float(got[0]["value"][1]) == 2.0
    # the refused connections were closed before the accepted one was sent: nothing of theirs
    assert _result(up, "tcp_noauth_probe") == []


def test_the_ui_asks_for_a_token_once_per_session(up: SecuredUp) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    assert chromium and driver, "UI tests need Debian's chromium and chromium-driver"
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        opts.add_argument(a)
    opts.set_capability("unhandledPromptBehavior", "ignore")
    b = webdriver.Chrome(service=Service(driver), options=opts)

    def until(cond, timeout: float = 20.0):  # type: ignore[no-untyped-def]
        return WebDriverWait(b, timeout, poll_frequency=0.1).until(lambda d: cond(d))

    def alert(d):  # type: ignore[no-untyped-def]
        try:
            return d.switch_to.alert
        except Exception:  # noqa: BLE001 - NoAlertPresentException
            return False

    try:
        b.get(up.url + "/")
        prompt = until(alert)  # the page's first data request (build info) was refused
        assert "needs a token" in prompt.text
        prompt.send_keys("read-tok")
        prompt.accept()
        until(lambda d: not alert(d))
        expr = b.find_element(By.ID, "expr")
        expr.clear()
        expr.send_keys("vector(1234)")
        b.find_element(By.ID, "run").click()
        until(lambda d: "1234" in d.find_element(By.ID, "result-table").text)
        assert b.find_element(By.ID, "error").get_attribute("hidden")
        assert b.execute_script("return sessionStorage.getItem('filodb.token')") == "read-tok"
        # another page of the same session: no prompt, the data routes answer
        b.get(up.url + "/cluster?live=0")
        until(
            lambda d: (
                alert(d) or len(d.find_elements(By.CSS_SELECTOR, "#datasets .status-Active")) >= 4
            )
        )
        assert not alert(b)
        # live mode: the shard event stream is read through fetch, with the session's token
        b.get(up.url + "/cluster")
        until(lambda d: "on" in d.find_element(By.ID, "live").get_attribute("class").split())
        assert not alert(b)
    finally:
        b.quit()
