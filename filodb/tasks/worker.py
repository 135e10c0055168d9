"""Worker entry point: one Celery worker process = one node.

The pool is ``threads``: the ingesters, the node loop and the tasks share the process and its
memstores (DESIGN.md, process model). The node starts on ``worker_ready`` and adds each shard's
queue through a remote-control ``add_consumer`` addressed to itself, confirmed by the worker's
reply, before the shard is published Active: a shard the map calls Active has a consumer.
"""

from __future__ import annotations

import logging
import os
import socket
import time

from celery import signals

from filodb.config import Config
from filodb.errors import UnavailableError
from filodb.tasks.app import FLUSH_TASK, make_celery, shard_queue
from filodb.tasks.leaf import register_tasks
from filodb.tasks.node import NodeRuntime

log = logging.getLogger(__name__)

ADD_QUEUE_WAIT_S = 60.0


def run_worker(cfg: Config) -> None:
    """Run a node until SIGTERM/SIGINT. Blocks."""
    name = cfg.node or f"node-{os.getpid()}"
    app = make_celery(cfg)
    register_tasks(app)
    hostname = f"{name}@{socket.gethostname()}"
    runtime: dict[str, NodeRuntime] = {}

    def add_queue(q: str) -> None:
        # A broadcast sent before the worker's control channel is subscribed is lost (Redis
        # pub/sub keeps nothing), so the add is repeated until this worker confirms it.
        deadline = time.monotonic() + ADD_QUEUE_WAIT_S
        while True:
            if app.control.add_consumer(q, destination=[hostname], reply=True, timeout=1):
                return
            if time.monotonic() > deadline:
                raise UnavailableError(f"worker {hostname} did not confirm consuming {q}")
            time.sleep(0.2)

    def cancel_queue(q: str) -> None:
        app.control.cancel_consumer(q, destination=[hostname], reply=True, timeout=5)

    def send_flush(dataset: str, shard: int, group: int) -> None:
        app.send_task(FLUSH_TASK, args=(dataset, shard, group), queue=shard_queue(dataset, shard),
                      ignore_result=True)  # fmt: skip

    def on_ready(sender=None, **_kw):  # type: ignore[no-untyped-def]
        rt = NodeRuntime(cfg, name, add_queue, cancel_queue, send_flush)
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
