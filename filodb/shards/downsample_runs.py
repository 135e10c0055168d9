"""The cluster's periodic downsample run as Redis state beside the shard map: the last run's
record and the lock that keeps runs one at a time cluster-wide.

- ``filodb:downsample:run`` hash, the last run: ``id``, ``state`` (``sent``: the coordinator
  sent its Celery task; ``running``; ``done``), ``node``, ``sent_at``, ``started_at``,
  ``finished_at`` (Unix seconds), ``seconds``, ``raw_samples``, ``ds_samples``,
  ``ds_chunks``, ``errors`` (datasets that failed in it), ``error`` (the last failure), and
  the totals ``runs``, ``failed_runs``, ``raw_samples_total`` and ``ds_samples_total``.
- ``filodb:downsample:lock``: the id of the run holding it, with an expiry the run renews.

Everything that changes both is a Lua script (one step for every other client), and a task
runs only the run the record names: a task sent twice, or sent again after the coordinator
gave up on it, cannot start a second run. A run whose process dies leaves ``running`` in the
record and its lock expires; :func:`run_due` then says the next tick sends a new run.

A run started by hand (``filodb downsample``) takes the same lock without a record
(:meth:`DownsampleRuns.take`), so it never overlaps a periodic run or another by hand: their
watermark updates cannot race.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import redis

log = logging.getLogger(__name__)

RUN_KEY = "filodb:downsample:run"
LOCK_KEY = "filodb:downsample:lock"

# KEYS: run, lock; ARGV: id, node, now, ttl_ms. The named run takes the lock: 1, else 0.
_ACQUIRE = """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return 0 end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[4]) then return 0 end
redis.call('HSET', KEYS[1], 'state', 'running', 'node', ARGV[2], 'started_at', ARGV[3])
return 1
"""
# KEYS: lock; ARGV: id, ttl_ms. Extend the lock while this run holds it.
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
# KEYS: lock; ARGV: id. Release the lock while this run holds it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: run, lock; ARGV: id, failed (0/1), then field, value pairs. Record the run's end (when
# the record is still this run's) and release its lock.
_FINISH = """
if redis.call('HGET', KEYS[1], 'id') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'state', 'done', unpack(ARGV, 3))
  redis.call('HINCRBY', KEYS[1], 'runs', 1)
  redis.call('HINCRBY', KEYS[1], 'failed_runs', tonumber(ARGV[2]))
  for i = 3, #ARGV, 2 do
    if ARGV[i] == 'raw_samples' or ARGV[i] == 'ds_samples' then
      redis.call('HINCRBY', KEYS[1], ARGV[i] .. '_total', tonumber(ARGV[i + 1]))
    end
  end
end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""


def run_due(rec: Mapping[str, str], locked: bool, now: float, interval: float,
            dispatch_timeout: float) -> bool:  # fmt: skip
    """Whether the coordinator sends a run now: never while one holds the lock; at once when
    none ever ran or the last one died (``running`` without its lock); when a sent task has
    not started within ``dispatch_timeout`` s; else ``interval`` s after the last run started."""
    if locked:
        return False
    state = rec.get("state")
    if state is None:
        return True
    if state == "sent":
        return now - float(rec.get("sent_at", 0)) >= dispatch_timeout
    if state == "running":
        return True
    return now - float(rec.get("started_at", 0)) >= interval


def _text(d: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in d.items()
    }


class DownsampleRuns:
    """The run record and lock on ``client`` (a client answering bytes); thread-safe."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._finish = client.register_script(_FINISH)
        self._release = client.register_script(_RELEASE)

    def snapshot(self) -> tuple[dict[str, str], bool]:
        """The record and whether the lock is held, read at one instant (``MULTI``)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hgetall(RUN_KEY)
        pipe.exists(LOCK_KEY)
        rec, locked = pipe.execute()
        return _text(rec), bool(locked)

    def sent(self, run_id: str, node: str, now: float) -> None:
        """The coordinator sent run ``run_id`` to ``node``: the record names it from now on."""
        self.r.hset(RUN_KEY, mapping={"id": run_id, "state": "sent", "node": node,
                                      "sent_at": repr(now)})  # fmt: skip

    def acquire(self, run_id: str, node: str, now: float, ttl_s: float) -> bool:
        """Take the lock for ``run_id``; False when another run holds it or the record names
        another run (this task is stale)."""
        ttl_ms = max(1, int(ttl_s * 1000))
        return bool(self._acquire(keys=[RUN_KEY, LOCK_KEY], args=[run_id, node, repr(now), ttl_ms]))

    def take(self, run_id: str, ttl_s: float) -> bool:
        """Take the lock for a run by hand (no record: the periodic schedule is not moved);
        False when a run holds it. :meth:`release` gives it back."""
        return bool(self.r.set(LOCK_KEY, run_id, nx=True, px=max(1, int(ttl_s * 1000))))

    def holder(self) -> str | None:
        """The id of the run holding the lock, if any."""
        v = self.r.get(LOCK_KEY)
        return v.decode() if isinstance(v, bytes) else v

    def release(self, run_id: str) -> None:
        """Give back a lock :meth:`take` took (nothing when it expired and another holds it)."""
        self._release(keys=[LOCK_KEY], args=[run_id])

    def renew(self, run_id: str, ttl_s: float) -> bool:
        """Extend the lock; False when ``run_id`` no longer holds it (it expired)."""
        return bool(self._renew(keys=[LOCK_KEY], args=[run_id, max(1, int(ttl_s * 1000))]))

    def finish(self, run_id: str, stats: Mapping[str, float | int | str]) -> None:
        """Record the end of ``run_id`` (``stats``: ``finished_at``, ``seconds``, the sample
        counts, ``errors``, ``error``) and release its lock."""
        pairs = [str(x) for kv in stats.items() for x in kv]
        failed = 1 if int(stats.get("errors", 0)) else 0
        self._finish(keys=[RUN_KEY, LOCK_KEY], args=[run_id, failed, *pairs])


@contextmanager
def renewing(runs: DownsampleRuns, run_id: str, ttl_s: float) -> Iterator[threading.Event]:
    """While the block runs, a thread renews ``run_id``'s lock every third of ``ttl_s``; the
    event yielded is set when the lock was lost (it expired and another run took it), so the
    run can stop between its tasks."""
    done, lost = threading.Event(), threading.Event()

    def renew() -> None:
        while not done.wait(ttl_s / 3):
            try:
                if not runs.renew(run_id, ttl_s):
                    log.warning("downsample run %s lost its lock: stopping", run_id)
                    lost.set()
                    return
            except Exception as e:  # noqa: BLE001 - Redis away: the lock may expire; try again
                log.warning("downsample run %s: lock not renewed: %s", run_id, e)

    t = threading.Thread(target=renew, name="downsample-lock", daemon=True)
    t.start()
    try:
        yield lost
    finally:
        done.set()
        t.join()
