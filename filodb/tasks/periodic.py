"""The cluster's periodic jobs as Celery tasks on a node's own queue (``filodb.node.<name>``,
which the node's worker consumes): today the downsample run.

The coordinator decides when a run is due and sends it to its own queue
(:func:`send_downsample`); the worker's task calls the runner bound at start
(:func:`bind_downsample`), so this module knows nothing of what a node is. Arguments are
plain strings (msgpack); the task expires if not started in time, and the coordinator sends
a new one after that (``filodb.shards.downsample_runs``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from celery import Celery

log = logging.getLogger(__name__)

DOWNSAMPLE_TASK = "filodb.downsample"


def node_queue(node: str) -> str:
    """The Celery queue a node's worker consumes."""
    return f"filodb.node.{node}"


class DownsampleRunner(Protocol):
    def run_task(self, run_id: str) -> None: ...


def bind_downsample(app: Celery, runner: Callable[[], DownsampleRunner | None]) -> None:
    """Register the downsample task on ``app`` (before the worker starts: a task registered
    later is refused as unknown); it runs ``runner().run_task``, once the node is ready."""

    @app.task(name=DOWNSAMPLE_TASK, ignore_result=True)
    def downsample(run_id: str) -> None:
        rt = runner()
        if rt is None:  # the node is not ready yet: the coordinator sends it again
            log.warning("downsample run %s arrived before the node was ready", run_id)
            return
        rt.run_task(str(run_id))


def send_downsample(app: Celery, node: str, run_id: str, expires_s: float) -> None:
    """Send run ``run_id`` to ``node``'s queue; it is dropped unstarted after ``expires_s``."""
    app.send_task(DOWNSAMPLE_TASK, args=[run_id], queue=node_queue(node), expires=expires_s)
