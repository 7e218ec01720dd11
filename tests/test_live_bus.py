"""Live updates across server processes, on the real Redis and Postgres buses; outages; overflow.

Each test starts its own server processes on the suite's database (or, where one process is
enough, an app beside the suite's in this process). Their poll of the event log is
set to a minute, so an event that arrives within a second came through the bus (or, after an
outage, through the re-read the reconnection triggers), never through the poll.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
import redis.asyncio as redis

from tests.conftest import POSTGRES_ADMIN_URL, LiveServer
from tests.helpers import (
    Member,
    Org,
    create_contact,
    create_lead,
    live_subscriptions,
    wait_for_subscriptions,
)
from tests.processes import RedisServer, ServerProcess
from tests.test_deals import ADD_FOLLOWER, COMMENT, SET_PRIMARY
from tests.test_live import FOLLOWED_EVENTS, LIVE_CURSOR, LOGOUT, event
from tests.ws import PROTOCOLS, Subscription, live_client

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SLOW_POLL = {"EVENT_POLL_SECONDS": "60", "AUTH_RECHECK_SECONDS": "60"}
# The same for an app served in this process, on a memory bus of its own.
SLOW = {"event_poll_seconds": 60.0, "auth_recheck_seconds": 60.0, "broadcast_url": "memory://"}


async def _require_redis() -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except (OSError, redis.RedisError) as error:
        message = f"Redis is not reachable at {REDIS_URL}: {error}"
        if os.environ.get("CI"):
            pytest.fail(message)  # under CI a missing Redis is a failure, never a skip
        pytest.skip(message)
    finally:
        await client.aclose()


def _env(live_server: LiveServer, broadcast_url: str, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": live_server.database_url,
        "BROADCAST_URL": broadcast_url,
        "BUS_CHANNEL": f"crm-test-{uuid.uuid4().hex[:8]}",  # no crosstalk between tests
        **SLOW_POLL,
        **extra,
    }


async def _pair(live_server: LiveServer, broadcast_url: str) -> AsyncIterator[tuple[str, str]]:
    env = _env(live_server, broadcast_url)
    async with ServerProcess(env) as first, ServerProcess(env) as second:
        yield first.base_url, second.base_url


@pytest.fixture(params=["redis", "postgres"])
async def two_processes(request, live_server) -> AsyncIterator[tuple[str, str]]:
    if request.param == "redis":
        await _require_redis()
        url = REDIS_URL
    else:
        url = POSTGRES_ADMIN_URL
    async for pair in _pair(live_server, url):
        yield pair


async def _metrics(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=10, trust_env=False)


async def _comment(base_url: str, member, record: str, body: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=10, trust_env=False) as http:
        response = await http.post(
            "/graphql",
            json={"query": COMMENT, "variables": {"record": record, "body": body}},
            headers={"authorization": f"Bearer {member.api.token}"},
        )
    assert response.status_code == 200 and not response.json().get("errors"), response.text


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_change_on_one_process_reaches_a_follower_on_another(
    two_processes, org, other_org, protocol
):
    writer_url, reader_url = two_processes
    lead = await create_lead(org.seller)
    await org.seller.api.data(ADD_FOLLOWER, record=lead["id"], user=org.teammate.id)
    async with (
        await _metrics(reader_url) as reader,
        live_client(reader_url, org.teammate.api.token, protocol) as follower,
        live_client(reader_url, other_org.admin.api.token, protocol) as stranger,
    ):
        before = await wait_for_subscriptions(reader, 0)
        feed = await follower.subscribe(FOLLOWED_EVENTS)
        elsewhere = await stranger.subscribe(FOLLOWED_EVENTS)
        await wait_for_subscriptions(reader, before + 2)
        for n in range(3):
            await _comment(writer_url, org.seller, lead["id"], f"from the other process {n}")
        got = [event(p, "followedEvents") for p in await feed.take(3, timeout=1.0)]
        assert [e["changes"]["body"] for e in got] == [
            f"from the other process {n}" for n in range(3)
        ]
        await elsewhere.expect_nothing(0.3)

        # Logging out on one process ends the subscriptions on the other at once.
        async with httpx.AsyncClient(base_url=writer_url, trust_env=False) as http:
            await http.post(
                "/graphql",
                json={"query": LOGOUT},
                headers={"authorization": f"Bearer {org.teammate.api.token}"},
            )
        ended = await feed.closed_or_completed(timeout=2.0)
        assert ended.how == "completed"
        assert ended.payloads[-1]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


@dataclass
class Follower:
    """A follower of a lead subscribed on one process, while changes are made on another."""

    lead: str
    writer_url: str
    reader: httpx.AsyncClient  # the subscriber's process
    feed: Subscription
    seller: Member
    channel: str  # the processes' bus channel

    async def comment(self, body: str) -> None:
        await _comment(self.writer_url, self.seller, self.lead, body)

    async def bodies(self, count: int, seconds: float) -> list[str]:
        payloads = await self.feed.take(count, timeout=seconds)
        return [event(p, "followedEvents")["changes"]["body"] for p in payloads]


@asynccontextmanager
async def follower_across_processes(
    live_server: LiveServer, org: Org, broadcast_url: str
) -> AsyncIterator[Follower]:
    lead = await create_lead(org.seller)
    await org.seller.api.data(ADD_FOLLOWER, record=lead["id"], user=org.teammate.id)
    env = _env(live_server, broadcast_url)
    async with (
        ServerProcess(env) as writer,
        ServerProcess(env) as reader,
        await _metrics(reader.base_url) as reader_http,
        live_client(reader.base_url, org.teammate.api.token) as client,
    ):
        before = await wait_for_subscriptions(reader_http, 0)
        feed = await client.subscribe(FOLLOWED_EVENTS)
        await wait_for_subscriptions(reader_http, before + 1)
        follower = Follower(
            lead["id"], writer.base_url, reader_http, feed, org.seller, env["BUS_CHANNEL"]
        )
        await follower.comment("before")
        assert await follower.bodies(1, seconds=1.0) == ["before"]
        yield follower


async def test_redis_restarting_loses_nothing(live_server, org):
    async with (
        RedisServer() as bus,
        follower_across_processes(live_server, org, bus.url) as follower,
    ):
        await bus.stop()
        # Writes go on while the bus is down: they commit, they just cannot ring.
        for n in range(3):
            await follower.comment(f"during {n}")
        assert (await follower.reader.get("/readyz")).json()["bus"] == "reconnecting"
        await follower.feed.expect_nothing(0.5)

        await bus.start()
        assert await follower.bodies(3, seconds=5.0) == [f"during {n}" for n in range(3)]
        assert (await follower.reader.get("/readyz")).json()["bus"] == "ok"
        # ... and the doorbell works again, between both processes.
        await follower.comment("after")
        assert await follower.bodies(1, seconds=2.0) == ["after"]
        await follower.feed.expect_nothing(0.3)


async def test_postgres_bus_reconnects_after_its_connection_is_killed(live_server, org):
    async with follower_across_processes(live_server, org, POSTGRES_ADMIN_URL) as follower:
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            killed = await admin.fetchval(
                # The listeners: their last statement is a LISTEN, or the liveness probe
                # (SELECT 1, every 5 s) once setup took longer; the publishers' is pg_notify.
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'crm-bus' "
                "AND (query ILIKE 'LISTEN%' OR query = 'SELECT 1')"
            )
        finally:
            await admin.close()
        assert killed >= 2  # both processes' listeners
        for n in range(2):
            await follower.comment(f"around the drop {n}")
        # Within a second: the termination listener notices at once (the probe would take 5 s).
        assert await follower.bodies(2, seconds=1.0) == [f"around the drop {n}" for n in range(2)]
        await follower.comment("after")
        assert await follower.bodies(1, seconds=2.0) == ["after"]


async def test_a_subscriber_that_falls_behind_is_cut_off_and_resumes_without_loss(live_server, org):
    # One commit writes 8 events (a contact that is the primary contact of 8 leads is deleted):
    # the hub hands them over at once, and a queue of 3 overflows whatever the client does.
    contact = await create_contact(org.seller)
    leads = [(await create_lead(org.seller))["id"] for _ in range(8)]
    for lead in leads:
        await org.seller.api.data(SET_PRIMARY, record=lead, contact=contact["id"])
        await org.seller.api.data(ADD_FOLLOWER, record=lead, user=org.teammate.id)
    async with (
        live_server.serve(**SLOW, subscription_queue_size=3) as server,
        await _metrics(server.base_url) as http,
        live_client(server.base_url, org.teammate.api.token) as follower,
    ):
        before = await wait_for_subscriptions(http, 0)
        feed = await follower.subscribe(FOLLOWED_EVENTS)
        await wait_for_subscriptions(http, before + 1)
        response = await http.post(
            "/graphql",
            json={
                "query": "mutation($id: ID!) { deleteContact(id: $id) { id } }",
                "variables": {"id": contact["id"]},
            },
            headers={"authorization": f"Bearer {org.seller.api.token}"},
        )
        assert not response.json().get("errors"), response.text
        delivered = [event(p, "followedEvents") for p in await feed.take(3, timeout=2.0)]
        # The error comes as the stream's last result (an execution error), then it completes.
        ended = await feed.closed_or_completed(timeout=2.0)
        assert ended.how == "completed"
        assert [p["data"] for p in ended.payloads] == [None]
        extensions = ended.payloads[0]["errors"][0]["extensions"]
        assert extensions["code"] == "SUBSCRIPTION_OVERFLOW"
        assert extensions["resumeAfter"] == delivered[-1]["cursor"]
        assert await live_subscriptions(http) == before  # the server let go of it

        resumed = await follower.subscribe(FOLLOWED_EVENTS, {"after": extensions["resumeAfter"]})
        rest = [event(p, "followedEvents") for p in await resumed.take(5, timeout=2.0)]
        await resumed.expect_nothing(0.3)
    records = [e["recordId"] for e in delivered + rest]
    assert sorted(records) == sorted(leads)
    assert {e["kind"] for e in delivered + rest} == {"PRIMARY_CONTACT_SET"}
    mark = (await org.teammate.api.data(LIVE_CURSOR))["liveCursor"]
    # The log ends with the contact's own DELETED event, which the teammate does not follow.
    assert _position(mark) == _position(rest[-1]["cursor"]) + 1


def _position(cursor: str) -> int:
    """The event id an event cursor stands after (["ID", n], base64url)."""
    return int(json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))[1])


async def test_a_feed_without_after_starts_now_on_a_process_behind_the_log(live_server, http, org):
    # The other app hears nothing of what the suite's own app writes (separate memory buses)
    # and polls once a minute: its hub is behind the log when the follower subscribes.
    lead = await create_lead(org.seller)
    await org.seller.api.data(ADD_FOLLOWER, record=lead["id"], user=org.teammate.id)
    async with (
        live_server.serve(**SLOW) as server,
        await _metrics(server.base_url) as server_http,
        live_client(server.base_url, org.teammate.api.token) as client,
    ):
        await org.seller.api.data(COMMENT, record=lead["id"], body="before subscribing")
        before = await wait_for_subscriptions(server_http, 0)
        feed = await client.subscribe(FOLLOWED_EVENTS)
        await wait_for_subscriptions(server_http, before + 1)
        await _comment(server.base_url, org.seller, lead["id"], "after subscribing")
        got = event(await feed.next(timeout=1.0), "followedEvents")
        assert got["changes"]["body"] == "after subscribing"
        await feed.expect_nothing(0.3)


async def test_garbage_on_the_bus_channel_is_ignored(live_server, org):
    await _require_redis()
    async with follower_across_processes(live_server, org, REDIS_URL) as follower:
        client = redis.Redis.from_url(REDIS_URL)
        try:
            for garbage in ("1", "not json", "[]", '{"events": "yes"'):
                await client.publish(follower.channel, garbage)
        finally:
            await client.aclose()
        await follower.comment("after the garbage")
        assert await follower.bodies(1, seconds=1.0) == ["after the garbage"]
