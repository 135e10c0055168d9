"""What the servers of ``filodb up`` import stays lean: a module's code stays in memory for the
life of a process, so a worker or web process must not carry libraries it never runs (celery's
interactive shell and rich's console cost ~10 MB a process; docs/architecture.md, "What a
process holds besides its series")."""

from __future__ import annotations

import os
import time
from pathlib import Path

import requests

from filodb.testing.cluster import UpProcess
from filodb.testing.wait import wait_for

# a sitecustomize on PYTHONPATH: every filodb worker, web or zygote process (and each child the
# zygote forks, once its arguments are set) writes the top-level
# packages it has imported to <dir>/<role>-<pid>.txt, again every 0.1 s, with the time of writing
HOOK = """
import os, sys, threading, time
def _role():  # a forked child's arguments are set after the fork (filodb.zygote)
    return next((a for a in sys.argv[1:3] if a in ("worker", "web", "zygote")), None)
def _dump():
    while True:
        role = _role()
        if role:
            path = os.path.join(os.environ["IMPORTS_DUMP_DIR"], f"{role}-{os.getpid()}.txt")
            names = sorted({m.split(".")[0] for m in list(sys.modules)})
            with open(path + ".tmp", "w") as f:
                f.write(repr(time.time()) + "\\n" + "\\n".join(names))
            os.replace(path + ".tmp", path)
        time.sleep(0.1)
def _start():
    threading.Thread(target=_dump, daemon=True).start()
if "filodb" in " ".join(sys.orig_argv):
    _start()
    os.register_at_fork(after_in_child=_start)
"""

UNNEEDED = {"prompt_toolkit", "click_repl", "pygments", "rich"}


def _imports_since(where: Path, role: str, since: float) -> set[str] | None:
    """The packages a ``role`` process had imported at a dump written after ``since``."""
    for f in where.glob(f"{role}-*.txt"):
        stamp, _, names = f.read_text().partition("\n")
        if float(stamp) > since:
            return set(names.split())
    return None


def test_the_worker_and_the_web_do_not_import_what_they_never_run(tmp_path: Path) -> None:
    hook, dumps = tmp_path / "hook", tmp_path / "imports"
    hook.mkdir()
    dumps.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path, "IMPORTS_DUMP_DIR": str(dumps)}
    up = UpProcess(tmp_path / "data", shards=2, env=env).start()
    try:
        r = requests.get(f"{up.url}/api/v1/query", params={"query": "count(up)"}, timeout=30)
        assert r.status_code == 200, r.text  # a query through the web tier and the worker
        answered = time.time()
        for role, server in (("worker", "celery"), ("web", "flask")):
            got = wait_for(lambda role=role: _imports_since(dumps, role, answered), 30,
                           f"the {role}'s imports", up.log_tail)  # fmt: skip
            assert "filodb" in got and server in got, sorted(got)  # the dump is the server's
            assert got & UNNEEDED == set(), sorted(got & UNNEEDED)
    finally:
        up.stop()
