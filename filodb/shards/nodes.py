"""Node registry with heartbeats, and the coordinator lease.

- ``filodb:nodes`` hash: node → ``{"name", "host", "pid", "started"}``
- ``filodb:hb:<node>``: heartbeat key with a TTL; a node whose key expired is dead.
- ``filodb:coordinator``: the leader lease (``SET NX PX``, renewed by its holder only).
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


class NodeRegistry:
    """Register this node, beat, list live nodes, hold the coordinator lease."""

    def __init__(self, url: str, ttl_s: float = 5.0) -> None:
        self.r = redis.Redis.from_url(url, socket_timeout=10)
        self.ttl_ms = int(ttl_s * 1000)
        self._renew = self.r.register_script(_RENEW)

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
        return bool(self._renew(keys=[LEASE_KEY], args=[name, self.ttl_ms]))
