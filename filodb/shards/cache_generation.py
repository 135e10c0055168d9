"""The generation of a dataset's cached query answers (:mod:`filodb.web.results_cache`):
``filodb:{qc}:gen:<dataset>``, part of every cache key of the dataset. Bumping it forgets
every answer cached before; it sits here, beside the shard map, because nodes bump it too
(the downsampler, when a ds dataset's data moves) and they may not import the web tier."""

from __future__ import annotations

import redis

PREFIX = "filodb:{qc}:"


def generation_key(dataset: str) -> str:
    return f"{PREFIX}gen:{dataset}"


def invalidate(client: redis.Redis, dataset: str) -> int:
    """Forget every cached extent of ``dataset`` (after a delete, samples arriving late, new
    downsampled data): bumps its generation; returns the new one."""
    return int(client.incr(generation_key(dataset)))
