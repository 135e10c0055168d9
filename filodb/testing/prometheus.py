"""A real Prometheus (Debian's ``prometheus`` package, 2.42) for end-to-end tests: a server
with a generated config and its own TSDB, and the path of promtool. A missing binary fails."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import requests

from filodb.redisproc import free_port
from filodb.testing.wait import wait_for

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"


def need(binary: str) -> None:
    assert os.access(binary, os.X_OK), (
        f"{binary} is required (Debian package 'prometheus'): apt-get install prometheus, "
        "or scripts/setup --test"
    )


class PromServer:
    """A Prometheus process with a generated config and its own TSDB in ``home``."""

    def __init__(self, home: Path, config: dict, extra_args: tuple[str, ...] = ()) -> None:
        """``extra_args``: more flags, e.g. ``--web.enable-remote-write-receiver``."""
        need(PROMETHEUS)
        self.extra_args = list(extra_args)
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        (home / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_s: float = 30) -> PromServer:
        log = open(self.home / "prometheus.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={self.home / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.home / 'tsdb'}", f"--web.listen-address=127.0.0.1:{self.port}",
             *self.extra_args],
            stdout=log, stderr=log,
        )  # fmt: skip
        proc = self.proc

        def ready() -> bool:
            assert proc.poll() is None, f"prometheus exited {proc.returncode}: {self.log()}"
            return requests.get(self.url + "/-/ready", timeout=1).status_code == 200

        wait_for(ready, wait_s, "prometheus ready", self.log, interval=0.1)
        return self

    def log(self) -> str:
        return (self.home / "prometheus.log").read_text(errors="replace")[-3000:]

    def get(self, path: str, **params: Any) -> dict:
        r = requests.get(self.url + path, params=params, timeout=30)
        assert r.status_code == 200, f"prometheus {path}: {r.status_code} {r.text}"
        return r.json()["data"]

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (Prometheus flushes its remote-write queues on the way out) and wait."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
