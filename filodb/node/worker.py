"""Worker entry point: one Celery worker process = one node.

The node starts on ``worker_ready``: first its :class:`~filodb.tasks.leaf.LeafServer` (threads
popping the node's leaf-request list, :mod:`filodb.tasks.rpc`), then the
:class:`~filodb.node.runtime.NodeRuntime`, so every shard the map calls Active on this node
has a server before it is published Active. Shards have no Celery queues: starting or stopping
a shard costs no remote-control round trip, and the server answers "unavailable" for a shard
the node does not own as Active (fencing). The node's Celery queue carries the periodic
downsample run the coordinator sends itself (:mod:`filodb.tasks.periodic`). Flushes run on the node's own executor (one
thread: flushes are column-store writes, one after the other), at most one waiting per shard,
and its log spills on another; both at ``background_nice`` below the node's other threads.
The pool is ``threads``: the ingesters, the node loop and the leaf server share the process
and its memstores (DESIGN.md, process model).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from celery import signals

from filodb.config import Config
from filodb.node.downsampler import DISPATCH_TIMEOUT_S
from filodb.node.niceness import check_nice, lower_this_thread
from filodb.node.runtime import SPILL, NodeRuntime
from filodb.node.warm import warm_read_path
from filodb.procmem import freeze_long_lived
from filodb.tasks.app import make_celery
from filodb.tasks.leaf import LeafCollector, LeafServer
from filodb.tasks.periodic import bind_downsample, node_queue, send_downsample
from filodb.tasks.scheduler import SWITCH_INTERVAL_S

log = logging.getLogger(__name__)


class FlushExecutor:
    """Runs a node's flushes on one thread and its log spills on another; a shard's flush (or
    spill) that is already waiting is not queued twice (the node loop asks again for the next
    group on its schedule)."""

    def __init__(self, nice: int = 0) -> None:
        # both threads run ``nice`` below the node's others (filodb/node/niceness.py)
        low = partial(lower_this_thread, check_nice(nice))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flush",
                                        initializer=low)  # fmt: skip
        # spills (reads and a sequential write, mostly waiting on I/O) do not queue behind a
        # round of flushes for the log's size, which takes seconds over hundreds of shards
        self._spills = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spill",
                                          initializer=low)  # fmt: skip
        self._waiting: set[tuple[str, int]] = set()
        self._spill_keys: set[tuple[str, int]] = set()  # spills asked for, not yet begun
        self._lock = threading.Lock()
        self._closed = False
        self.rt: NodeRuntime | None = None

    def send(self, dataset: str, shard: int, group: int) -> None:
        if group == SPILL:
            self._send_spill((dataset, shard))
            return
        key = (dataset, shard)
        with self._lock:
            if key in self._waiting or self._closed:
                return
            self._waiting.add(key)
        self._pool.submit(self._run, dataset, shard, group)

    def _send_spill(self, key: tuple[str, int]) -> None:
        """Spills wait together: one run takes every shard asked for since the last began
        (one transaction and one fsync for all of them: :meth:`NodeRuntime.spill`)."""
        with self._lock:
            if self._closed:
                return
            first = not self._spill_keys
            self._spill_keys.add(key)
        if first:
            self._spills.submit(self._run_spills)

    def _run_spills(self) -> None:
        with self._lock:
            keys, self._spill_keys = self._spill_keys, set()
        if self.rt is not None and keys:
            self.rt.spill(sorted(keys))

    def _run(self, dataset: str, shard: int, group: int) -> None:
        with self._lock:
            self._waiting.discard((dataset, shard))
        if self.rt is not None:
            self.rt.flush(dataset, shard, group)

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
        self._spills.shutdown(wait=True, cancel_futures=True)
        self._pool.shutdown(wait=True, cancel_futures=True)


def run_worker(cfg: Config) -> None:
    """Run a node until SIGTERM/SIGINT. Blocks."""
    name = cfg.node or f"node-{os.getpid()}"
    sys.setswitchinterval(SWITCH_INTERVAL_S)  # the leaf server's I/O threads get the GIL sooner
    app = make_celery(cfg)
    hostname = f"{name}@{socket.gethostname()}"
    parts: dict[str, object] = {}
    flushes = FlushExecutor(cfg.background_nice)
    bind_downsample(app, lambda: getattr(parts.get("rt"), "downsampling", None))

    def send_ds(run_id: str) -> None:
        send_downsample(app, name, run_id, DISPATCH_TIMEOUT_S)

    def on_ready(sender=None, **_kw):
        rt = NodeRuntime(cfg, name, flushes.send, send_downsample=send_ds)
        flushes.rt = rt
        leaf = parts["leaf"] = LeafServer(rt, cfg.redis_url, name, cfg.worker_threads,
                                          listen=cfg.leaf_listen,
                                          secret=cfg.cluster_secret).start()  # fmt: skip
        rt.advertise["leaf_addr"] = leaf.address  # the web tier's direct connections
        parts["rt"] = rt
        rt.start()
        rt.metrics_server.registry.register(LeafCollector(leaf))
        threading.Thread(target=_warm_and_freeze, name="warm", daemon=True).start()
        log.warning("node %s ready (pid %s)", name, os.getpid())

    def on_shutting_down(sender=None, **_kw):  # before the pool waits for a running task
        rt = parts.get("rt")
        if isinstance(rt, NodeRuntime):
            rt.downsampling.cancel.set()

    def on_shutdown(sender=None, **_kw):
        rt = parts.get("rt")
        if isinstance(rt, NodeRuntime):
            flushes.shutdown()  # the waiting ones: stop() flushes every group anyway
            rt.stop()
        leaf = parts.get("leaf")
        if isinstance(leaf, LeafServer):
            leaf.stop()

    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_shutting_down.connect(on_shutting_down, weak=False)
    signals.worker_shutdown.connect(on_shutdown, weak=False)
    # the worker itself, as `celery worker` builds it, without celery's command line: its
    # click commands pull in click_repl, prompt_toolkit and pygments (~8 MB a worker)
    from celery import platforms

    platforms._setproctitle = None  # keep our command line as the title (ps, filodb.uptree)
    app.Worker(
        hostname=hostname, pool_cls="threads", concurrency=1, queues=[node_queue(name)],
        loglevel="WARNING", without_gossip=True, without_mingle=True, without_heartbeat=True,
    ).start()  # fmt: skip


def _warm_and_freeze() -> None:
    """Load the read path's kernels, then take what the process holds for good (imports,
    numba's registries, the warmed kernels) out of the full collections
    (:func:`~filodb.procmem.freeze_long_lived`): a full collection walked all of it, 40-60 ms
    with the GIL held, in the middle of an ingest step or a query."""
    warm_read_path()
    freeze_long_lived()
