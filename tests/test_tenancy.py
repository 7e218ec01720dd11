"""Tenants do not wait for each other: an organization's open write transaction, or one left open
in another database of the cluster, delays no other organization's mutations, live deliveries or
change feed (PostgreSQL; SQLite writes one transaction at a time by design)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import asyncpg
import pytest

from models import Notification
from tests.conftest import POSTGRES_ADMIN_URL
from tests.helpers import Org, create_opportunity, pk, wait_for_subscriptions
from tests.test_deals import ADD_FOLLOWER, UPDATE_OPPORTUNITY
from tests.test_live import FOLLOWED_EVENTS
from tests.test_partners import new_key, pull
from tests.ws import live_client

pytestmark = pytest.mark.skipif(
    __import__("os").environ.get("TEST_DATABASE", "sqlite") != "postgres",
    reason="SQLite runs one write transaction at a time: nothing to overlap",
)

FAST = 1.5  # seconds: what "not delayed" means here (the held transactions stay open longer)


class Tenant:
    """An organization with an opportunity its admin follows, a partner's key and cursor, and
    the admin's live feed."""

    def __init__(self, org: Org) -> None:
        self.org = org
        self.deal: str = ""
        self.key: Any = None
        self.cursor: str | None = None
        self.feed: Any = None

    async def prepare(self) -> None:
        self.deal = (await create_opportunity(self.org.seller))["id"]
        await self.org.seller.api.data(ADD_FOLLOWER, record=self.deal, user=self.org.admin.id)
        self.key, _ = await new_key(self.org)
        _, self.cursor = await pull(self.key, None)

    async def rename(self, name: str) -> None:
        await self.org.seller.api.data(UPDATE_OPPORTUNITY, input={"id": self.deal, "name": name})

    async def new_changes(self) -> list[str]:
        """The names of the opportunities the partner's next pull upserts."""
        entries, self.cursor = await pull(self.key, self.cursor)
        return [
            entry["node"]["name"]
            for entry in entries
            if entry["recordType"] == "Opportunity" and entry["node"] is not None
        ]


async def within(seconds: float, action: Awaitable[Any]) -> Any:
    began = time.monotonic()
    result = await asyncio.wait_for(action, timeout=10)
    elapsed = time.monotonic() - began
    assert elapsed < seconds, f"took {elapsed:.2f} s, more than {seconds} s"
    return result


async def names_delivered(feed: Any, count: int, seconds: float) -> list[str]:
    payloads = await feed.take(count, timeout=seconds)
    return [p["data"]["followedEvents"]["changes"]["name"]["new"] for p in payloads]


async def check_b_is_not_held(b: Tenant) -> None:
    """B renames its deal while something else is held open: the mutation answers, its follower
    hears of it and its partner pulls it, each at once."""
    await within(FAST, b.rename("B, while A waits"))
    assert await within(FAST, names_delivered(b.feed, 1, FAST)) == ["B, while A waits"]
    assert await within(FAST, b.new_changes()) == ["B, while A waits"]


@asynccontextmanager
async def feeds(live_server: Any, http: Any, *tenants: Tenant) -> AsyncIterator[None]:
    """Each tenant's admin subscribed to the events of what they follow."""
    before = await wait_for_subscriptions(http, 0)
    async with AsyncExitStack() as stack:
        for tenant in tenants:
            client = await stack.enter_async_context(
                live_client(live_server.base_url, tenant.org.admin.api.token)
            )
            tenant.feed = await client.subscribe(FOLLOWED_EVENTS)
        await wait_for_subscriptions(http, before + len(tenants))
        yield


def hold_writes_of(org: Org, release: asyncio.Event) -> Callable[..., Awaitable[Any]]:
    """Notification.bulk_create, held until `release` for the organization's followers: its
    mutation then keeps its transaction open after writing its event and its changes."""
    original = Notification.bulk_create
    admin = pk(org.admin.id)

    async def held(objects: list[Notification], *args: Any, **kwargs: Any) -> Any:
        if any(item.user_id == admin for item in objects):
            await release.wait()
        return await original(objects, *args, **kwargs)

    return held


async def test_an_open_write_of_one_organization_holds_up_no_other(
    live_server, http, org, other_org, monkeypatch
):
    a, b = Tenant(org), Tenant(other_org)
    await a.prepare()
    await b.prepare()
    release = asyncio.Event()
    monkeypatch.setattr(Notification, "bulk_create", hold_writes_of(org, release))
    async with feeds(live_server, http, a, b):
        slow = asyncio.create_task(a.rename("A, committed late"))
        try:
            await asyncio.sleep(0.5)  # A has written its event and holds its transaction open
            assert not slow.done()
            await check_b_is_not_held(b)
            await a.feed.expect_nothing(0.2)  # nothing of A's shows before it commits
        finally:
            release.set()
            await slow
        # Once A commits, its follower and its partner get its change: nothing was lost.
        assert await names_delivered(a.feed, 1, 5.0) == ["A, committed late"]
        assert await a.new_changes() == ["A, committed late"]
        assert await b.new_changes() == []  # and B's was not served twice


async def test_a_transaction_open_in_another_database_holds_up_nothing(live_server, http, org):
    tenant = Tenant(org)
    await tenant.prepare()
    name = f"crm_test_other_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    other = await asyncpg.connect(POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    try:
        async with feeds(live_server, http, tenant):
            transaction = other.transaction()
            await transaction.start()
            await other.execute("CREATE TABLE held (x int); INSERT INTO held VALUES (1)")
            try:
                await check_b_is_not_held(tenant)
            finally:
                await transaction.rollback()
    finally:
        await other.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
