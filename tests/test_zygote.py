"""filodb.zygote's supervisor side, in a child interpreter (a subreaper is one for good): the
orphans a descendant leaves are waited for, the children the supervisor watches are left to
their handles, and a forked child's handle answers as ``Popen`` does."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from filodb.zygote import supported

pytestmark = pytest.mark.skipif(not supported(), reason="the zygote needs Linux")

SCRIPT = textwrap.dedent(
    """
    import os, signal, subprocess
    from filodb.config import Config
    from filodb.supervisor import Supervisor
    from filodb.zygote import ForkedProcess, become_subreaper

    assert become_subreaper()
    sup = Supervisor(Config(), echo=print)
    sup._subreaper = True
    # a watched child that exits: its handle, not the orphan reaper, must see its status
    watched = os.fork()
    if watched == 0:
        os._exit(7)
    # an orphan: the middle process exits, the grandchild is re-parented to us and exits
    r, w = os.pipe()
    pr, pw = os.pipe()
    middle = os.fork()
    if middle == 0:
        grandchild = os.fork()
        if grandchild == 0:
            os.read(r, 1)  # until the test lets it go
            os._exit(0)
        os.write(pw, str(grandchild).encode())
        os._exit(0)
    os.waitpid(middle, 0)
    orphan = int(os.read(pr, 32))
    handle = ForkedProcess(watched, ["watched"])
    sup.children = [type("C", (), {"proc": handle})()]
    os.write(w, b"x")
    os.waitid(os.P_PID, watched, os.WEXITED | os.WNOWAIT)  # both exited, neither reaped
    os.waitid(os.P_PID, orphan, os.WEXITED | os.WNOWAIT)
    sup._reap_orphans()  # the watched one may come first: then it stops there
    assert handle.poll() == 7, handle.returncode  # not reaped by the orphan reaper
    sup._reap_orphans()
    try:
        left = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG)
    except ChildProcessError:
        left = None
    assert left is None, left
    # a handle on a live child: wait times out, terminate ends it with -SIGTERM
    live = os.fork()
    if live == 0:
        signal.pause()
        os._exit(0)
    h = ForkedProcess(live, ["live"])
    try:
        h.wait(0.05)
        raise AssertionError("wait returned for a live child")
    except subprocess.TimeoutExpired:
        pass
    h.terminate()
    assert h.wait(10) == -signal.SIGTERM
    print("ok")
    """
)


def test_orphans_are_reaped_and_watched_children_left_to_their_handles() -> None:
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
