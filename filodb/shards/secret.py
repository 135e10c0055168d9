"""The cluster's shared secret: what a node's direct leaf port (:mod:`filodb.tasks.direct`)
asks its callers to prove they know.

``cluster_secret`` set in the config wins; else the secret is ``filodb:cluster_secret`` in
Redis, made (random, ``SET NX``) by the first process that asks, so ``filodb up`` and any
cluster sharing a Redis work without setup. Whoever can read Redis can already put leaf
requests on a node's Redis list, so the key grants nothing more than Redis access does.
"""

from __future__ import annotations

import secrets

import redis

SECRET_KEY = "filodb:cluster_secret"


def cluster_secret(r: redis.Redis, configured: str = "") -> bytes:
    """The secret: ``configured`` when set, else the one in Redis (made on first use)."""
    if configured:
        return configured.encode()
    r.set(SECRET_KEY, secrets.token_hex(32), nx=True)
    got = r.get(SECRET_KEY)
    if not got:
        raise redis.RedisError(f"{SECRET_KEY} vanished")
    return got if isinstance(got, bytes) else str(got).encode()
