"""A real Alertmanager (Debian's ``prometheus-alertmanager``) for end-to-end tests: one process
with a do-nothing receiver, no clustering, its own storage. A missing binary fails."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import requests

from filodb.redisproc import free_port
from filodb.testing.wait import wait_for

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
_CONFIG = """route:
  receiver: none
  group_wait: 0s
  group_interval: 1s
receivers:
  - name: none
"""


class AlertmanagerServer:
    def __init__(self, home: Path) -> None:
        assert os.access(ALERTMANAGER, os.X_OK), (
            f"{ALERTMANAGER} is required: apt-get install prometheus-alertmanager"
        )
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        (home / "am.yml").write_text(_CONFIG)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_s: float = 30) -> AlertmanagerServer:
        log = open(self.home / "am.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [ALERTMANAGER, f"--config.file={self.home / 'am.yml'}",
             f"--storage.path={self.home / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--cluster.listen-address="],
            stdout=log, stderr=log,
        )  # fmt: skip
        proc = self.proc

        def ready() -> bool:
            assert proc.poll() is None, f"alertmanager exited {proc.returncode}: {self.log()}"
            return requests.get(self.url + "/-/ready", timeout=1).status_code == 200

        wait_for(ready, wait_s, "alertmanager ready", self.log, interval=0.1)
        return self

    def log(self) -> str:
        return (self.home / "am.log").read_text(errors="replace")[-3000:]

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds as active (a resolved one is no longer listed)."""
        r = requests.get(self.url + "/api/v2/alerts", timeout=5)
        r.raise_for_status()
        out: list[dict[str, Any]] = r.json()
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
