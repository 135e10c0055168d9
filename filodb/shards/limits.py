"""Cluster-wide state of the limits per dataset, in Redis: series admitted, ingest tokens,
refusal counts. Thin: each call is one script or one pipelined round trip.

Keys:

- ``filodb:series:<dataset>`` sorted set: 8-byte series hash → when a door last saw it (unix
  s); ``filodb:series:<dataset>:m:<metric>`` the same per metric name. Members older than the
  window (the dataset's retention) are dropped before counting, so series that stopped
  writing leave the count as they leave memory.
- ``filodb:bucket:<dataset>`` hash ``tokens``, ``ts``: the ingest token bucket.
- ``filodb:refused:<dataset>`` hash: reason → samples (or queries) refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

# KEYS[1] series zset. ARGV: now, cutoff (0: keep all), max series, max per metric (0: none),
# then (hash, metric) pairs. Returns per pair 1 admitted, 0 refused (max_series), 2 refused
# (max_series_per_metric).
_ADMIT = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local cutoff = tonumber(ARGV[2])
local maxs = tonumber(ARGV[3])
local maxm = tonumber(ARGV[4])
if cutoff > 0 then redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. cutoff) end
local total = redis.call('ZCARD', key)
local per = {}
local out = {}
for i = 5, #ARGV, 2 do
  local h = ARGV[i]
  local mkey = nil
  local mc = 0
  if maxm > 0 then  -- the per-metric sets are kept only for a per-metric limit
    mkey = key .. ':m:' .. ARGV[i + 1]
    mc = per[mkey]
    if mc == nil then
      if cutoff > 0 then redis.call('ZREMRANGEBYSCORE', mkey, '-inf', '(' .. cutoff) end
      mc = redis.call('ZCARD', mkey)
    end
  end
  if redis.call('ZSCORE', key, h) then
    redis.call('ZADD', key, now, h)
    if mkey and redis.call('ZADD', mkey, now, h) == 1 then mc = mc + 1 end
    out[#out + 1] = 1
  elseif maxs > 0 and total >= maxs then
    out[#out + 1] = 0
  elseif maxm > 0 and mc >= maxm then
    out[#out + 1] = 2
  else
    redis.call('ZADD', key, now, h)
    if mkey then redis.call('ZADD', mkey, now, h) end
    total = total + 1
    mc = mc + 1
    out[#out + 1] = 1
  end
  if mkey then per[mkey] = mc end
end
return out
"""

# KEYS[1] bucket hash. ARGV: rate (tokens per second, also the bucket's size), samples.
# A batch is admitted when the bucket holds min(samples, rate) tokens (a batch larger than a
# second's worth waits for a full bucket, then overdraws it). Returns {1, 0} or {0, wait ms}.
_TAKE = """
local rate = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(v[1]) or rate
local ts = tonumber(v[2]) or now
tokens = math.min(rate, tokens + math.max(0, now - ts) * rate)
local need = math.min(n, rate)
if tokens < need then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('EXPIRE', KEYS[1], 3600)
  return {0, math.ceil((need - tokens) / rate * 1000)}
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - n), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], 3600)
return {1, 0}
"""

ADMITTED, OVER_SERIES, OVER_PER_METRIC = 1, 0, 2


def series_key(dataset: str) -> str:
    return f"filodb:series:{dataset}"


def refused_key(dataset: str) -> str:
    return f"filodb:refused:{dataset}"


class LimitsStore:
    """The Redis side of the limits; safe to share between threads."""

    def __init__(self, url: str) -> None:
        self.r = redis.Redis.from_url(url, socket_timeout=10)
        self._admit = self.r.register_script(_ADMIT)
        self._take = self.r.register_script(_TAKE)

    def admit_series(
        self, dataset: str, hashes: Sequence[bytes], metrics: Sequence[str], now: float,
        cutoff: float, max_series: int, max_per_metric: int,
    ) -> list[int]:  # fmt: skip
        """Admit new series (``hashes[i]`` of metric ``metrics[i]``) in order while the
        limits allow; known ones are refreshed. One code per series (``ADMITTED``, ...)."""
        if not hashes:
            return []
        args: list[bytes | str | float | int] = [now, cutoff, max_series, max_per_metric]
        for h, m in zip(hashes, metrics, strict=True):
            args += [h, m]
        return [int(x) for x in self._admit(keys=[series_key(dataset)], args=args)]

    def take_tokens(self, dataset: str, rate: float, n: int) -> float:
        """Take ``n`` samples' tokens from the dataset's bucket; 0 when taken, else the
        seconds to wait before the batch would be admitted."""
        ok, wait_ms = self._take(keys=[f"filodb:bucket:{dataset}"], args=[rate, n])
        return 0.0 if int(ok) else max(0.001, int(wait_ms) / 1000)

    def count_refused(self, dataset: str, reason: str, n: int) -> None:
        self.r.hincrby(refused_key(dataset), reason, n)

    def refused(self, dataset: str) -> dict[str, int]:
        """Samples (or queries) refused per reason, cluster-wide."""
        raw: dict[bytes, bytes] = self.r.hgetall(refused_key(dataset))  # type: ignore[assignment]
        return {k.decode(): int(v) for k, v in raw.items()}

    def series_count(self, dataset: str) -> int:
        """Series the doors count for the dataset's ``max_series``."""
        return int(self.r.zcard(series_key(dataset)))
