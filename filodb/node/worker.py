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
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from celery import signals

from filodb.config import Config
from filodb.errors import UnavailableError
from filodb.node.runtime import NodeRuntime
from filodb.tasks.app import FLUSH_TASK, make_celery, shard_queue
from filodb.tasks.leaf import register_tasks

log = logging.getLogger(__name__)

ADD_QUEUE_WAIT_S = 60.0
CANCEL_QUEUE_WAIT_S = 300.0


def run_worker(cfg: Config) -> None:
    """Run a node until SIGTERM/SIGINT. Blocks."""
    name = cfg.node or f"node-{os.getpid()}"
    app = make_celery(cfg)
    hostname = f"{name}@{socket.gethostname()}"
    runtime: dict[str, NodeRuntime] = {}
    register_tasks(app, lambda: runtime.get("rt"))

    # Queue changes go through one thread, in order: a cancel never waits in a node's tick or
    # under its lock (with the broker down, kombu retries a control message for a long time),
    # and an add of the same queue that follows it runs after it, never before.
    queue_ops = ThreadPoolExecutor(max_workers=1, thread_name_prefix="queue-ops")

    def _add(q: str) -> None:
        # A broadcast sent before the worker's control channel is subscribed is lost (Redis
        # pub/sub keeps nothing), so the add is repeated until this worker confirms it.
        deadline = time.monotonic() + ADD_QUEUE_WAIT_S
        while True:
            if app.control.add_consumer(q, destination=[hostname], reply=True, timeout=1):
                return
            if time.monotonic() > deadline:
                raise UnavailableError(f"worker {hostname} did not confirm consuming {q}")
            time.sleep(0.2)

    wanted: dict[str, bool] = {}  # the latest wish per queue, set when the op is queued

    def add_queue(q: str) -> None:
        wanted[q] = True
        try:
            queue_ops.submit(_add, q).result(ADD_QUEUE_WAIT_S + 10)
        except FutureTimeout as e:
            raise UnavailableError(f"worker {hostname}: adding {q} did not finish") from e

    def _cancel(q: str) -> None:
        # Repeated until confirmed, like the add: a cancel lost while the broker was down
        # would leave this worker consuming a shard's queue it no longer serves (answering
        # "not active" for the shard's new owner). Skipped once the queue is wanted again.
        deadline = time.monotonic() + CANCEL_QUEUE_WAIT_S
        while time.monotonic() < deadline and not wanted.get(q):
            try:
                if app.control.cancel_consumer(q, destination=[hostname], reply=True, timeout=2):
                    return
            except Exception:  # noqa: BLE001 - broker unreachable: try again
                pass
            time.sleep(0.5)
        if not wanted.get(q):
            log.error("worker %s could not confirm it stopped consuming %s", hostname, q)

    def cancel_queue(q: str) -> None:
        wanted[q] = False
        queue_ops.submit(_cancel, q)

    def send_flush(dataset: str, shard: int, group: int) -> None:
        app.send_task(FLUSH_TASK, args=(dataset, shard, group), queue=shard_queue(dataset, shard),
                      ignore_result=True)  # fmt: skip

    def on_ready(sender=None, **_kw):
        rt = NodeRuntime(cfg, name, add_queue, cancel_queue, send_flush)
        runtime["rt"] = rt
        rt.start()
        log.warning("node %s ready (pid %s)", name, os.getpid())

    def on_shutdown(sender=None, **_kw):
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
