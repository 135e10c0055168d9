"""Node registry with heartbeats, and the coordinator lease.

- ``filodb:nodes`` hash: node → ``{"name", "host", "pid", "started"}``
- ``filodb:hb:<node>``: heartbeat key with a TTL; a node whose key expired is dead.
- ``filodb:coordinator``: the leader lease (``SET NX PX``, renewed by its holder only).

:class:`Lease` is that lease for any key (the rule evaluator's ``filodb:rules:lease`` too).
"""

from __future__ import annotations

import os
import socket
import time

import orjson
import redis

NODES_KEY = "filodb:nodes"
LEASE_KEY = "filodb:coordinator"

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    """A lease on one Redis key: held by one name at a time, for ``ttl_s`` after each renewal;
    a holder that stops renewing (killed, cut off) loses it when the TTL runs out."""

    def __init__(self, r: redis.Redis, key: str, ttl_s: float) -> None:
        self.r, self.key, self.ttl_ms = r, key, int(ttl_s * 1000)
        self._renew = r.register_script(_RENEW)
        self._release = r.register_script(_RELEASE)

    def hold(self, name: str) -> bool:
        """Take or renew the lease; True while ``name`` holds it."""
        return bool(self._renew(keys=[self.key], args=[name, self.ttl_ms]))

    def release(self, name: str) -> None:
        """Give the lease up now if ``name`` holds it (a graceful stop)."""
        self._release(keys=[self.key], args=[name])

    def holder(self) -> str | None:
        v = self.r.get(self.key)
        return v.decode() if isinstance(v, bytes) else v


class NodeRegistry:
    """Register this node, beat, list live nodes, hold the coordinator lease."""

    def __init__(self, url: str, ttl_s: float = 5.0) -> None:
        self.r = redis.Redis.from_url(url, socket_timeout=10)
        self.ttl_ms = int(ttl_s * 1000)
        self._lease = Lease(self.r, LEASE_KEY, ttl_s)

    def register(self, name: str, **extra: object) -> dict:
        """Record this node (``extra`` keys such as ``metrics_port`` go into its entry)."""
        info = {"name": name, "host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
                **extra}  # fmt: skip
        self.r.hset(NODES_KEY, name, orjson.dumps(info))
        self.heartbeat(name)
        return info

    def heartbeat(self, name: str) -> None:
        self.r.set(f"filodb:hb:{name}", repr(time.time()), px=self.ttl_ms)

    def expire(self, name: str) -> None:
        """Forget a node's heartbeat now (it is known dead); it stays registered."""
        self.r.delete(f"filodb:hb:{name}")

    def deregister(self, name: str) -> None:
        self.r.delete(f"filodb:hb:{name}")
        self.r.hdel(NODES_KEY, name)

    def info(self, name: str) -> dict | None:
        """``name``'s registry entry as it registered it (None: not registered)."""
        return node_info(self.r, name)

    def nodes(self) -> list[dict]:
        """Every registered node (live or not) with ``alive`` and ``last_heartbeat``."""
        infos = [orjson.loads(v) for v in self.r.hgetall(NODES_KEY).values()]
        if not infos:
            return []
        beats = self.r.mget([f"filodb:hb:{i['name']}" for i in infos])
        for i, b in zip(infos, beats, strict=True):
            i["alive"] = b is not None
            i["last_heartbeat"] = float(b) if b else None
        return sorted(infos, key=lambda i: i["started"])

    def live_nodes(self) -> list[str]:
        """Names of nodes with a live heartbeat, oldest start first."""
        return [n["name"] for n in self.nodes() if n["alive"]]

    def hold_lease(self, name: str) -> bool:
        """Take or renew the coordinator lease; True while this node is the leader."""
        return self._lease.hold(name)


def node_info(r: redis.Redis, name: str) -> dict | None:
    """A node's registry entry (:meth:`NodeRegistry.register`), None when it has none or the
    entry is not a JSON object."""
    raw = r.hget(NODES_KEY, name)
    if not raw:
        return None
    try:
        info = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return info if isinstance(info, dict) else None
