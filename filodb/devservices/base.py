"""Start, find and stop development services; their state lives in one directory.

Each service module (``kafka``, ``cassandra``) provides::

    def start(workdir: Path, cache: Path) -> tuple[subprocess.Popen, dict[str, str]]
        # launch detached (start_new_session=True), data and logs under workdir, wait until the
        # server really answers (raise ServiceError with the log tail if it does not), and
        # return the process and the FILODB_* settings that reach it
    def answers(env: dict[str, str]) -> bool
        # a quick check that a server started earlier still answers

State: ``$FILODB_SERVICES_DIR`` (default ``/tmp/filodb-services-<uid>``) holds ``<name>.json``
(pid, workdir, env) per running service, so ``down`` and later ``up`` calls find it.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SERVICES = ("kafka", "cassandra")


class ServiceError(RuntimeError):
    """A service could not be obtained or started."""


def state_dir() -> Path:
    d = Path(os.environ.get("FILODB_SERVICES_DIR") or f"/tmp/filodb-services-{os.getuid()}")
    d.mkdir(parents=True, exist_ok=True)
    return d


def cache_dir() -> Path:
    return Path(os.environ.get("FILODB_SERVICES_CACHE") or "~/.cache/filodb-services").expanduser()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], bool], timeout: float, what: str, log: Path | None = None,
               proc: subprocess.Popen | None = None) -> None:  # fmt: skip
    """Poll ``check`` until it is true; ServiceError (with the log's tail) on timeout or exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"{what}: process exited with {proc.returncode}\n{tail(log)}")
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not answering yet
            pass
        time.sleep(0.5)
    raise ServiceError(f"{what}: not answering after {timeout:.0f} s\n{tail(log)}")


def tail(log: Path | None, n: int = 40) -> str:
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-n:])


def _module(name: str):
    if name not in SERVICES:
        raise ServiceError(f"unknown service {name!r} (have: {', '.join(SERVICES)})")
    return importlib.import_module(f"filodb.devservices.{name}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie child of this process counts as dead
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def running(name: str) -> dict | None:
    """The state of a started service that still answers, else None (stale state removed)."""
    f = state_dir() / f"{name}.json"
    if not f.exists():
        return None
    st = json.loads(f.read_text())
    if _alive(st["pid"]) and _module(name).answers(st["env"]):
        return st
    stop(name)
    return None


def ensure(name: str) -> dict[str, str]:
    """The settings of a running ``name`` service, starting it first if needed."""
    st = running(name)
    if st is not None:
        return st["env"]
    workdir = Path(tempfile.mkdtemp(prefix=f"filodb-{name}-"))
    proc, env = _module(name).start(workdir, cache_dir())
    (state_dir() / f"{name}.json").write_text(
        json.dumps({"pid": proc.pid, "workdir": str(workdir), "env": env})
    )
    return env


def stop(name: str) -> bool:
    """Stop a started service and delete its data; False if it was not running."""
    f = state_dir() / f"{name}.json"
    if not f.exists():
        return False
    st = json.loads(f.read_text())
    pid = st["pid"]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except OSError:
            break
        deadline = time.monotonic() + 20
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _alive(pid):
            break
    shutil.rmtree(st["workdir"], ignore_errors=True)
    f.unlink(missing_ok=True)
    return True


def exports(env: dict[str, str]) -> str:
    return "\n".join(f"export {k}={v}" for k, v in env.items())
