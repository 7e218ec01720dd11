"""Fair limits: a token bucket per API key, per user and per anonymous client address, shared
by every process through Redis when one is configured; and persisted queries.

The bucket refills at RATE_LIMIT_PER_SECOND up to RATE_LIMIT_BURST tokens; each operation takes
one. With Redis the bucket lives in one hash per key, updated by a Lua script on Redis's clock,
so all processes draw from the same bucket. If Redis cannot be reached the request is let
through (and logged): a limiter outage must not become an API outage.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass

import redis.asyncio as redis
from redis.exceptions import RedisError

from models import PersistedQuery

log = logging.getLogger("crm.limits")

_BUCKET = """
local now = redis.call('TIME')
local at = tonumber(now[1]) + tonumber(now[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local last = tonumber(state[2]) or at
tokens = math.min(burst, tokens + math.max(0, at - last) * rate)
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
else
  wait = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(at))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return tostring(wait)
"""


@dataclass
class _Local:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, rate: float, burst: int, redis_url: str = "", prefix: str = "crm") -> None:
        self.rate = rate
        self.burst = burst
        self.prefix = f"{prefix}:rate:"
        self.redis = redis.from_url(redis_url) if redis_url else None
        self._script = self.redis.register_script(_BUCKET) if self.redis else None
        self._local: dict[str, _Local] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    async def take(self, key: str, cost: int = 1) -> float:
        """0 when allowed now, else the seconds to wait before retrying."""
        if not self.enabled:
            return 0.0
        if self._script is not None:
            try:
                wait = await self._script(
                    keys=[self.prefix + key], args=[self.rate, self.burst, cost]
                )
                return float(wait)
            except RedisError as error:
                log.warning("rate limiter: Redis unreachable, letting requests through: %s", error)
                return 0.0
        now = time.monotonic()
        bucket = self._local.setdefault(key, _Local(self.burst, now))
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return (cost - bucket.tokens) / self.rate

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


# Persisted queries

HASH_RE = re.compile(r"^[0-9a-f]{64}$")


def query_hash(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


async def known_query(digest: str) -> str | None:
    row = await PersistedQuery.get_or_none(sha256=digest)
    return None if row is None else row.query


# Hashes known to be on the allow-list. Registrations are never taken back, so a hash found
# once stays valid: every operation of a frontend under PERSISTED_QUERIES=allowlist would
# otherwise cost a statement.
_allowed: set[str] = set()


async def allowlisted(digest: str) -> bool:
    if digest not in _allowed:
        if not await PersistedQuery.filter(sha256=digest, allowlisted=True).exists():
            return False
        _allowed.add(digest)
    return True


async def remember_query(query: str, *, allowlist: bool = False) -> str:
    """Keep a query under its hash; `allowlist` (manage.py persist-queries) puts it on the
    allow-list too. Queries remembered automatically never are."""
    digest = query_hash(query)
    row, _ = await PersistedQuery.get_or_create(sha256=digest, defaults={"query": query})
    if allowlist and not row.allowlisted:
        row.allowlisted = True
        await row.save(update_fields=["allowlisted"])
    return digest
