"""The zygote process of ``filodb up`` (``python -m filodb zygote --fd N``): it warms up,
then forks a child for each request of the supervisor (:mod:`filodb.zygote` has the protocol
and the supervisor's side). :func:`serve` returns only in a forked child, with its request;
the CLI's ``zygote`` command then runs the child's command line."""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import sys
import time
from typing import Any

from filodb.redisproc import PR_SET_PDEATHSIG, prctl
from filodb.zygote import _MAX_FDS, _MSG_BYTES, _REPARENT_WAIT_S


def warm() -> None:
    """Import what the children run and load their kernels (each warm-up is the one the
    child itself runs first; their failures are logged there and do not stop the zygote)."""
    import filodb.node.worker  # noqa: F401
    import filodb.web  # noqa: F401
    from filodb.gateway import graphite, influx
    from filodb.node.warm import warm_read_path
    from filodb.prom import remote_write

    warm_read_path()
    remote_write.warm()
    influx.warm()
    graphite.warm()


def serve(fd: int) -> dict[str, Any] | None:
    """Warm up, then fork a child for each request on ``fd`` until the supervisor closes it.
    Returns in a forked child only: its request, its descriptors moved into place."""
    sock = socket.socket(fileno=fd)  # it dies with the supervisor: its Popen's preexec_fn
    from filodb import numbalink

    numbalink.install()
    warm()
    gc.collect()
    gc.freeze()  # what is held now stays out of the collections: their walks copy pages
    _trim()
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, _MSG_BYTES, _MAX_FDS)
        except InterruptedError:
            continue
        if not msg:
            return None  # the supervisor closed its end
        try:
            req = json.loads(msg)
        except ValueError:
            _close(fds)
            sock.send(b'{"pid": 0}')
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        r, w = os.pipe()
        middle = os.fork()
        if middle == 0:  # the middle process: fork the child, tell its pid, go
            child = os.fork()
            if child == 0:
                os.close(r)
                os.close(w)
                sock.close()
                _settle_child(req, fds)
                return req
            os.write(w, str(child).encode())
            os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as pipe:
            got = pipe.read()
        os.waitpid(middle, 0)  # the child is the supervisor's now
        _close(fds)
        sock.send(json.dumps({"pid": int(got or 0)}).encode())


def _trim() -> None:
    """Free heap pages back to the system and LLVM's clean library pages out of the resident
    set, as the children's trimmer does in them (this process runs no thread: it forks)."""
    from filodb.procmem import _libc, drop_library_pages

    lib = _libc()
    if lib is not None:
        lib.malloc_trim(0)
    drop_library_pages()


def _close(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _settle_child(req: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: wait to be the supervisor's, die with it, take the descriptors,
    the environment and the title the exec'd child would have had."""
    parent = int(req["parent"])
    deadline = time.monotonic() + _REPARENT_WAIT_S
    while os.getppid() != parent:  # the middle process is exiting
        if time.monotonic() > deadline:
            os._exit(1)
        time.sleep(0.001)
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os._exit(1)
    # descriptors: out of the way first (a received one may sit on a target number)
    moved = [fcntl_dup_high(fd) for fd in fds]
    _close(fds)
    if req.get("log"):
        log, *moved = moved
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    for target, fd in zip(req["fds"], moved, strict=True):
        os.dup2(fd, int(target), inheritable=True)
        os.close(fd)
    try:  # before the environment changes: it moves the environment's strings to make room
        import setproctitle

        setproctitle.setproctitle(req["title"])
    except ImportError:
        pass
    os.environ.clear()
    os.environ.update(req["env"])
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.argv = ["filodb", *req["args"]]


def fcntl_dup_high(fd: int, low: int = 256) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)
