"""The process's connection to the event bus: broadcaster, with backends that survive outages.

The bus carries doorbells only ("the event log has grown", "sessions were revoked"); what
happened is always read back from the event log. So a doorbell that is lost costs latency, never
an event: each process also re-reads the log on a timer, and every backend here announces
`RECONNECTED` when its connection comes back, upon which the hub re-reads the log at once.

broadcaster 0.3.1's own Redis backend never receives anything with redis-py 6+ when the first
subscribe races its listener, and dies silently when Redis drops; its Postgres backend neither
reconnects nor tolerates two concurrent first subscribes. The backends below replace both behind
broadcaster's interface (`Broadcast(backend=...)`); `memory://` keeps broadcaster's own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlparse

import asyncpg
import orjson
from broadcaster import Broadcast, Event
from broadcaster._backends.base import BroadcastBackend
from broadcaster._backends.memory import MemoryBackend
from redis import asyncio as redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from observability import EVENT_BUS_CONNECTED

log = logging.getLogger("crm.bus")

RECONNECTED = "reconnected"  # the message a backend delivers each time it (re)connects
RETRY_SECONDS = (0.1, 0.25, 0.5, 1.0, 2.0)  # backoff between connection attempts, then the last


def _backoff(attempt: int) -> float:
    return RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]


class _ResilientBackend(BroadcastBackend):
    """A listener task that connects, listens until the connection fails, and starts over.

    Subclasses implement `_listen` (connect, subscribe, report ready, then read until an
    error) and `publish`. Channels are fixed at the first `subscribe`: each process subscribes
    to one channel for its whole life.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._channels: set[str] = set()
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._wanted = asyncio.Event()  # set once there is a channel to listen to
        self._connected = False

    async def connect(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"bus listener {self._redacted}")

    async def disconnect(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)
        self._wanted.set()

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    async def next_published(self) -> Event:
        return await self._queue.get()

    @property
    def _redacted(self) -> str:
        parsed = urlparse(self._url)
        return f"{parsed.scheme}://{parsed.hostname}:{parsed.port or ''}"

    def _deliver(self, channel: str, message: str) -> None:
        if channel in self._channels:
            self._queue.put_nowait(Event(channel, message))

    @property
    def connected(self) -> bool:
        return self._connected

    @connected.setter
    def connected(self, value: bool) -> None:
        self._connected = value
        EVENT_BUS_CONNECTED.set(1 if value else 0)

    def _ready(self) -> None:
        """The connection is listening: tell every channel, so readers catch up on the log."""
        self.connected = True
        for channel in self._channels:
            self._deliver(channel, RECONNECTED)

    async def _run(self) -> None:
        await self._wanted.wait()
        attempt = 0
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure of the connection: start over
                was_connected, self.connected = self.connected, False
                if was_connected:
                    attempt = 0
                    log.warning("event bus %s lost: %s; reconnecting", self._redacted, error)
                elif attempt == 0:
                    log.warning("event bus %s unreachable: %s; retrying", self._redacted, error)
            await asyncio.sleep(_backoff(attempt))
            attempt += 1

    async def _listen(self) -> None:
        raise NotImplementedError


class RedisBackend(_ResilientBackend):
    """Redis PUBLISH/SUBSCRIBE, reconnecting by itself when Redis restarts."""

    # A ping on the subscription connection every few seconds; no answer for two of them means
    # a half-open socket (a network drop sends no reset), so the listener starts over.
    PING_SECONDS = 5.0

    def __init__(self, url: str) -> None:
        super().__init__(url)
        # The publisher retries once: its first command after a Redis restart finds the pooled
        # connection dead, and the doorbell should still go out.
        self._publisher = self._client(retries=1)

    def _client(self, retries: int = 0) -> redis.Redis:
        # No silent retries on the listener: a dropped connection must surface here, so that it
        # resubscribes and announces RECONNECTED.
        return redis.Redis.from_url(
            self._url,
            retry=Retry(NoBackoff(), retries),
            socket_connect_timeout=2,
            socket_keepalive=True,
        )

    async def disconnect(self) -> None:
        await super().disconnect()
        await self._publisher.aclose()

    async def publish(self, channel: str, message: Any) -> None:
        await self._publisher.publish(channel, message)

    async def _listen(self) -> None:
        client = self._client()
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(*self._channels)
            self._ready()
            loop = asyncio.get_running_loop()
            heard = next_ping = loop.time()
            while True:
                message = await pubsub.get_message(timeout=1.0)
                now = loop.time()
                if message is not None:
                    heard = now  # a message or the answer to a ping
                    if message["type"] == "message":
                        self._deliver(message["channel"].decode(), message["data"].decode())
                if now - heard > 2 * self.PING_SECONDS:
                    raise ConnectionError("Redis stopped answering pings")
                if now >= next_ping:
                    await pubsub.ping()
                    next_ping = now + self.PING_SECONDS
        finally:
            try:
                await pubsub.aclose()
                await client.aclose()
            except (RedisError, OSError):
                pass


class PostgresBackend(_ResilientBackend):
    """PostgreSQL LISTEN/NOTIFY on a dedicated connection, reconnecting when it drops."""

    APPLICATION_NAME = "crm-bus"  # how the listening connection shows in pg_stat_activity

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._publisher: asyncpg.Connection | None = None
        self._publish_lock = asyncio.Lock()

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            self._url, timeout=5, server_settings={"application_name": self.APPLICATION_NAME}
        )

    async def disconnect(self) -> None:
        await super().disconnect()
        if self._publisher is not None:
            await self._publisher.close()

    async def publish(self, channel: str, message: Any) -> None:
        # One connection, one statement at a time (asyncpg refuses concurrent use).
        async with self._publish_lock:
            if self._publisher is None or self._publisher.is_closed():
                self._publisher = await self._connect()
            try:
                await self._publisher.execute("SELECT pg_notify($1, $2)", channel, message)
            except (asyncpg.PostgresConnectionError, OSError):
                self._publisher.terminate()
                self._publisher = None
                raise

    async def _listen(self) -> None:
        connection = await self._connect()
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _: lost.set())
        try:
            for channel in self._channels:
                await connection.add_listener(channel, self._on_notify)
            self._ready()
            while not lost.is_set():
                try:
                    async with asyncio.timeout(5.0):
                        await lost.wait()
                except TimeoutError:
                    # A query finds a connection the server has dropped without a word.
                    await connection.fetchval("SELECT 1", timeout=5)
            raise ConnectionError("the LISTEN connection was closed")
        finally:
            connection.terminate()

    def _on_notify(self, _connection: Any, _pid: int, channel: str, payload: str) -> None:
        self._deliver(channel, payload)


class _MemoryBackend(MemoryBackend):
    """broadcaster's in-process backend; it is always connected."""

    connected = True

    async def connect(self) -> None:
        await super().connect()
        EVENT_BUS_CONNECTED.set(1)

    async def subscribe(self, channel: str) -> None:
        await super().subscribe(channel)
        await self.publish(channel, RECONNECTED)


class Doorbell:
    """Rings the processes' hubs over a bus, without waiting: a hub's announcements, and those
    of a `manage.py worker`, which has no hub of its own (its jobs' events and campaign
    progress). A message names the organizations whose event log grew, whether sessions were
    revoked, and the campaigns whose progress moved:
    {"events": true, "organizations": [3], "sessions": false, "campaigns": [12]}."""

    def __init__(self, broadcast: Broadcast, channel: str) -> None:
        self.broadcast = broadcast
        self.channel = channel
        self._publishes: set[asyncio.Task[None]] = set()

    def announce(
        self,
        *,
        organizations: Iterable[int] = (),
        sessions: bool = False,
        campaigns: Iterable[int] = (),
    ) -> None:
        """Ring, after a commit. The bus is not waited for: a doorbell that does not get
        through only delays the other processes until their next poll."""
        rung = sorted(set(organizations))
        doorbell: dict[str, Any] = {"events": bool(rung), "organizations": rung}
        doorbell["sessions"] = sessions
        if campaigns:
            doorbell["campaigns"] = sorted(set(campaigns))
        task = asyncio.create_task(self._publish(orjson.dumps(doorbell).decode()))
        self._publishes.add(task)
        task.add_done_callback(self._publishes.discard)

    async def _publish(self, message: str) -> None:
        try:
            async with asyncio.timeout(5):
                await self.broadcast.publish(self.channel, message)
        except Exception as error:  # the bus is down: the poll covers for the doorbell
            log.warning("could not ring the event bus: %s", error)

    async def close(self) -> None:
        """Drop the rings still under way."""
        for task in self._publishes:
            task.cancel()
        await asyncio.gather(*self._publishes, return_exceptions=True)


def create_bus(url: str) -> tuple[Broadcast, BroadcastBackend]:
    """memory:// (one process, the default), redis:// or postgres:// (many processes)."""
    scheme = urlparse(url).scheme
    backend: BroadcastBackend
    if scheme in ("redis", "rediss"):
        backend = RedisBackend(url)
    elif scheme in ("postgres", "postgresql"):
        backend = PostgresBackend(url)
    elif scheme == "memory":
        backend = _MemoryBackend(url)
    else:
        raise ValueError(f"BROADCAST_URL: unsupported scheme {scheme!r}")
    return Broadcast(backend=backend), backend
