"""Fair limits: token buckets per API key, user, anonymous address and organization, shared by
every process through Redis when one is configured; login throttling; persisted queries.

A bucket refills at its rate up to its burst; each operation takes one token. With Redis the
bucket lives in one hash per key, updated by a Lua script on Redis's clock, so all processes draw
from the same bucket. Redis is called with a short timeout (REDIS_TIMEOUT_SECONDS) behind a
circuit breaker (purgatory): after REDIS_BREAKER_FAILURES failures in a row the process stops
calling it for REDIS_BREAKER_SECONDS and keeps its own buckets meanwhile. So a hung or dead Redis
costs a request at most one timeout, and only until the breaker opens: a limiter outage never
becomes an API outage, nor a slow API.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis.asyncio as redis
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from redis.exceptions import RedisError
from tortoise.expressions import Subquery

from models import OrganizationQuery, PersistedQuery

log = logging.getLogger("crm.limits")
T = TypeVar("T")

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

# Login failures: how many in a row, and when the last was (Redis's clock). A success clears it.
_FAILURES = """
local now = redis.call('TIME')
local at = tonumber(now[1]) + tonumber(now[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'failures', 'at')
local failures = tonumber(state[1]) or 0
local last = tonumber(state[2]) or 0
if ARGV[1] == 'fail' then
  failures = failures + 1
  redis.call('HSET', KEYS[1], 'failures', failures, 'at', tostring(at))
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
  return {failures, '0'}
end
return {failures, tostring(at - last)}
"""


@dataclass
class _Local:
    tokens: float
    at: float


@dataclass
class _Failures:
    count: int
    at: float


class RateLimiter:
    def __init__(
        self,
        rate: float,
        burst: int,
        redis_url: str = "",
        prefix: str = "crm",
        *,
        timeout: float = 0.1,
        breaker_failures: int = 1,
        breaker_seconds: float = 10.0,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.prefix = f"{prefix}:rate:"
        self.redis = (
            redis.from_url(
                redis_url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry_on_timeout=False,
                retry=None,
            )
            if redis_url
            else None
        )
        self.timeout = timeout
        self._script = self.redis.register_script(_BUCKET) if self.redis else None
        self._failures_script = self.redis.register_script(_FAILURES) if self.redis else None
        self._breakers = AsyncCircuitBreakerFactory(
            default_threshold=breaker_failures, default_ttl=breaker_seconds
        )
        self._local: dict[str, _Local] = {}
        self._local_failures: dict[str, _Failures] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    async def _redis(self, call: Callable[[], Awaitable[T]]) -> T | None:
        """`call` on Redis within the timeout, behind the breaker; None when Redis is not to be
        had (the caller then decides locally)."""
        try:
            breaker = await self._breakers.get_breaker("redis")
            async with breaker:
                try:
                    return await call()
                except (RedisError, OSError, TimeoutError) as error:
                    # Counted by the breaker (re-raised), then answered here.
                    raise _RedisDown(error) from error
        except OpenedState:
            return None
        except _RedisDown as down:
            log.warning("Redis unreachable, deciding in this process: %s", down.__cause__)
            return None

    async def take(
        self, key: str, cost: int = 1, *, rate: float | None = None, burst: int | None = None
    ) -> float:
        """0 when allowed now, else the seconds to wait before retrying. `rate` and `burst`
        default to the limiter's own (the organizations' buckets have theirs)."""
        rate = self.rate if rate is None else rate
        burst = self.burst if burst is None else burst
        if rate <= 0:
            return 0.0
        if self._script is not None:
            script = self._script
            wait = await self._redis(
                lambda: script(keys=[self.prefix + key], args=[rate, burst, cost])
            )
            if wait is not None:
                return float(wait)  # type: ignore[arg-type]
        now = time.monotonic()
        bucket = self._local.setdefault(key, _Local(burst, now))
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return (cost - bucket.tokens) / rate

    async def failures(
        self, key: str, *, fail: bool = False, keep: int = 3600
    ) -> tuple[int, float]:
        """(failures in a row, seconds since the last); with `fail`, count one more first."""
        if self._failures_script is not None:
            script = self._failures_script
            args = ["fail" if fail else "read", keep]
            answer = await self._redis(lambda: script(keys=[self.prefix + key], args=args))
            if answer is not None:
                count, since = answer  # type: ignore[misc]
                return int(count), float(since)
        now = time.monotonic()
        entry = self._local_failures.get(key)
        if entry is not None and now - entry.at > keep:
            entry = None
        if fail:
            entry = _Failures((entry.count if entry else 0) + 1, now)
            self._local_failures[key] = entry
            return entry.count, 0.0
        return (entry.count, now - entry.at) if entry else (0, math.inf)

    async def forget(self, key: str) -> None:
        self._local_failures.pop(key, None)
        if self.redis is not None:
            client = self.redis
            await self._redis(lambda: client.delete(self.prefix + key))

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


class _RedisDown(Exception):
    pass


# Login throttling


@dataclass
class LoginThrottle:
    """Failed logins, counted per account (the email as typed, whether or not it exists, so
    that the answer never tells) and per client address. Past the free failures each attempt
    must wait twice as long as the one before, up to `max_delay` seconds."""

    limiter: RateLimiter
    per_account: int
    per_address: int
    max_delay: int

    def _keys(self, email: str, address: str) -> list[tuple[str, int]]:
        account = hashlib.sha256(email.strip().lower().encode()).hexdigest()
        keys = []
        if self.per_account > 0:
            keys.append((f"login:account:{account}", self.per_account))
        if self.per_address > 0:
            keys.append((f"login:address:{address}", self.per_address))
        return keys

    def _delay(self, failures: int, free: int) -> float:
        if failures < free:
            return 0.0
        return float(min(self.max_delay, 2 ** (failures - free)))

    async def wait(self, email: str, address: str) -> float:
        """Seconds before this login may be tried (0: now)."""
        wait = 0.0
        for key, free in self._keys(email, address):
            failures, since = await self.limiter.failures(key)
            wait = max(wait, self._delay(failures, free) - since)
        return max(0.0, wait)

    async def failed(self, email: str, address: str) -> None:
        for key, _ in self._keys(email, address):
            await self.limiter.failures(key, fail=True, keep=self.max_delay * 4)

    async def succeeded(self, email: str) -> None:
        """A right password clears the account's failures (not the address's)."""
        if self.per_account > 0:
            key, _ = self._keys(email, "")[0]
            await self.limiter.forget(key)


# Persisted queries

HASH_RE = re.compile(r"^[0-9a-f]{64}$")


def query_hash(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


async def known_query(digest: str, organization_id: int | None) -> str | None:
    """The query of a hash: one registered for everyone, else one the caller's organization
    sent before."""
    row: Any = await PersistedQuery.get_or_none(sha256=digest, allowlisted=True)
    if row is None and organization_id is not None:
        row = await OrganizationQuery.get_or_none(organization_id=organization_id, sha256=digest)
        if row is not None:
            await OrganizationQuery.filter(id=row.id).update(used_at=datetime.now(UTC))
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


async def register_query(query: str) -> str:
    """Put a query on the allow-list (manage.py persist-queries), for every organization."""
    digest = query_hash(query)
    row, _ = await PersistedQuery.get_or_create(sha256=digest, defaults={"query": query})
    if not row.allowlisted:
        row.allowlisted = True
        await row.save(update_fields=["allowlisted"])
    return digest


async def remember_query(organization_id: int, query: str, *, keep: int, longest: int) -> bool:
    """Keep a query under its hash for one organization, within `longest` characters and
    `keep` queries (the least recently used beyond it are forgotten). False: too long."""
    if len(query) > longest:
        return False
    digest = query_hash(query)
    now = datetime.now(UTC)
    _, created = await OrganizationQuery.get_or_create(
        organization_id=organization_id,
        sha256=digest,
        defaults={"query": query, "used_at": now},
    )
    if created:
        stale = Subquery(
            OrganizationQuery.filter(organization_id=organization_id)
            .order_by("-used_at", "-id")
            .offset(keep)
            .limit(1_000_000)
            .values("id")
        )
        await OrganizationQuery.filter(organization_id=organization_id, id__in=stale).delete()
    return True
