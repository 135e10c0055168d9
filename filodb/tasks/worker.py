"""Worker entry point: one Celery worker process = one node.

The pool is ``threads``: the ingesters, the node loop and the tasks share the process and its
memstores (DESIGN.md, process model). The node starts on ``worker_ready`` and adds each shard's
queue through a remote-control ``add_consumer`` addressed to itself once the shard is Active.
"""

from __future__ import annotations

import logging
import os
import socket

from celery import signals

from filodb.config import Config
from filodb.tasks.app import make_celery
from filodb.tasks.leaf import register_tasks
from filodb.tasks.node import NodeRuntime

log = logging.getLogger(__name__)


def run_worker(cfg: Config) -> None:
    """Run a node until SIGTERM/SIGINT. Blocks."""
    name = cfg.node or f"node-{os.getpid()}"
    app = make_celery(cfg)
    register_tasks(app)
    hostname = f"{name}@{socket.gethostname()}"
    runtime: dict[str, NodeRuntime] = {}

    def add_queue(q: str) -> None:
        app.control.add_consumer(q, destination=[hostname], reply=True, timeout=5)

    def cancel_queue(q: str) -> None:
        app.control.cancel_consumer(q, destination=[hostname], reply=True, timeout=5)

    def on_ready(sender=None, **_kw):  # type: ignore[no-untyped-def]
        rt = NodeRuntime(cfg, name, add_queue, cancel_queue)
        runtime["rt"] = rt
        rt.start()
        log.warning("node %s ready (pid %s)", name, os.getpid())

    def on_shutdown(sender=None, **_kw):  # type: ignore[no-untyped-def]
        if "rt" in runtime:
            runtime["rt"].stop()

    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_shutdown.connect(on_shutdown, weak=False)
    app.worker_main(
        [
            "worker", "--pool=threads", f"--concurrency={cfg.worker_threads}",
            "-n", hostname, "-Q", f"filodb.node.{name}", "-l", "warning",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]
    )  # fmt: skip
