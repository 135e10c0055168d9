"""A warmed parent that ``filodb up``'s Python children are forked from.

Each Python child of ``filodb up`` (worker, web, gateway, rules) used to start as its own
interpreter and load the same things: numpy, numba with its typing and target registries,
LLVM's copy of ~150 cached kernels, flask, celery, the query engine. That is ~100 MB of
anonymous memory a process, most of the tree's fixed cost (docs/architecture.md, "What a
process holds besides its series"). The zygote (``python -m filodb zygote``, started by the
supervisor) imports and warms all of it once, takes it out of the garbage collector's walks
(``gc.freeze``: a collection would otherwise touch, and so copy, every page), and then forks a
child for each request: the children share those pages copy-on-write, each ~7 MB of them
private after its first work instead of ~100.

The supervisor asks over a Unix socket pair (:class:`Zygote`): the command line after
``python -m filodb``, the environment, the descriptors the child keeps (its log first, then
the listening sockets at the numbers its arguments name, passed with ``SCM_RIGHTS``). The
zygote forks twice: the middle process exits at once, so the child is re-parented to the
supervisor, a child subreaper (``PR_SET_CHILD_SUBREAPER``), which waits for it and restarts
it as it did a child it had started itself (:class:`ForkedProcess` has the calls of
``subprocess.Popen`` it uses). The child takes its own command line as its title (``ps``, and
what the tests look for, read as before), dies with the supervisor (``PR_SET_PDEATHSIG``) and
runs :func:`filodb.cli.main` with its arguments, as an exec'd child would. This module is
the supervisor's side (it imports nothing heavy); :mod:`filodb.zygote_process` is the
zygote's.

Nothing from the network reaches the zygote: its socket is a pair made by the supervisor.
When it cannot be used (not Linux, the zygote died or did not answer) the supervisor starts
the child by ``exec`` as before; ``fork_children = false`` (``FILODB_FORK_CHILDREN=0``) always
does. The web processes of ``--web-processes N`` are forked too: each picks
prometheus_client's multiprocess counters again (:func:`filodb.web.metrics.multiprocess_values`),
which the zygote's import had chosen without their directory.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from filodb.redisproc import prctl

_PR_SET_CHILD_SUBREAPER = 36
_MAX_FDS = 16
_MSG_BYTES = 1 << 20  # one request: arguments and environment
REPLY_TIMEOUT_S = 600.0  # the first request waits for the warm-up (a cold kernel cache compiles)
_REPARENT_WAIT_S = 10.0


def supported() -> bool:
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds")


def become_subreaper() -> bool:
    """Orphaned descendants (the zygote's children, once their middle process exits) become
    this process's children, so it can wait for them."""
    return supported() and prctl(_PR_SET_CHILD_SUBREAPER, 1)


# --- the supervisor's side ----------------------------------------------------------------


class ForkedProcess:
    """A child the zygote forked, re-parented to this process: the parts of
    ``subprocess.Popen`` the supervisor uses."""

    def __init__(self, pid: int, args: list[str]) -> None:
        self.pid = pid
        self.args = args
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # not ours (should not happen): gone as far as we know
                self.returncode = -1 if _gone(self.pid) else None
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return False
    except ProcessLookupError:
        return True
    except PermissionError:
        return False


class Zygote:
    """The supervisor's handle on its zygote process: :meth:`start` it (it warms up in the
    background), :meth:`fork` children from it."""

    def __init__(self, env: dict[str, str], log_path: Path | None, preexec: Any) -> None:
        self.env = env
        self.log_path = log_path
        self.preexec = preexec
        self.proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None

    def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        log = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115
        try:
            argv = [sys.executable, "-m", "filodb", "zygote", "--fd", str(theirs.fileno())]
            self.proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),),
                                         preexec_fn=self.preexec)  # fmt: skip
        finally:
            theirs.close()
            if log is not None:
                log.close()
        self._sock = ours

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self._sock is not None

    def fork(self, args: list[str], env: dict[str, str], log_path: Path | None,
             pass_fds: tuple[int, ...] = ()) -> ForkedProcess | None:  # fmt: skip
        """A child running ``python -m filodb *args`` with ``env``, its output appended to
        ``log_path``, keeping ``pass_fds`` at their numbers; None when the zygote could not
        (the caller starts the child itself; a zygote that failed is stopped)."""
        if not self.alive() or len(pass_fds) >= _MAX_FDS:
            return None
        assert self._sock is not None
        title = " ".join([sys.executable, "-m", "filodb", *args])
        req = {"args": args, "env": env, "fds": list(pass_fds), "parent": os.getpid(),
               "title": title, "log": log_path is not None}  # fmt: skip
        log = open(log_path, "ab") if log_path else None  # noqa: SIM115
        try:
            fds = ([log.fileno()] if log else []) + list(pass_fds)
            self._sock.settimeout(30.0)
            socket.send_fds(self._sock, [json.dumps(req).encode()], fds)
            reply = self._reply()
            pid = int(json.loads(reply)["pid"]) if reply else 0
        except (OSError, ValueError, KeyError, TypeError):
            pid = 0
        finally:
            if log is not None:
                log.close()
        if pid <= 0:
            self.stop()
            return None
        return ForkedProcess(pid, ["filodb", *args])

    def _reply(self) -> bytes:
        """The zygote's answer; empty if it died first (the first request waits for its
        warm-up, up to :data:`REPLY_TIMEOUT_S`)."""
        assert self._sock is not None
        deadline = time.monotonic() + REPLY_TIMEOUT_S
        self._sock.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                return self._sock.recv(4096)
            except TimeoutError:
                if self.proc is None or self.proc.poll() is not None:
                    return b""
        return b""

    def stop(self, timeout: float = 5.0) -> None:
        if self._sock is not None:
            self._sock.close()  # the zygote's read ends: it exits
            self._sock = None
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
