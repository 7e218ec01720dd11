"""The rules of the live feeds, one at a time, on one protocol (test_live.py runs the common paths
on both). Some reach into the suite's in-process server to make a rare case happen on demand:
a replay longer than a page, a commit larger than the hub's batch, an event that commits late."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from models import Notification, User
from subscriptions import feeds, hub
from tests.helpers import (
    create_contact,
    create_lead,
    create_opportunity,
    pk,
    wait_for_subscriptions,
)
from tests.test_deals import ADD_FOLLOWER, COMMENT, SET_PRIMARY
from tests.test_live import (
    DEACTIVATE,
    FOLLOWED_EVENTS,
    LIVE_CURSOR,
    LOGOUT,
    NOTIFICATION_ADDED,
    RECORD_EVENTS,
    UPDATE_LEAD,
    cursor,
    event,
)
from tests.ws import OperationError, live_client


async def test_replay_longer_than_a_page(live_server, org, monkeypatch):
    monkeypatch.setattr(feeds, "REPLAY_PAGE", 2)
    lead = await create_lead(org.seller)
    await org.seller.api.data(ADD_FOLLOWER, record=lead["id"], user=org.teammate.id)
    mark = await cursor(org.teammate)
    for n in range(5):
        await org.seller.api.data(COMMENT, record=lead["id"], body=f"m{n}")
    async with live_client(live_server.base_url, org.teammate.api.token) as client:
        feed = await client.subscribe(FOLLOWED_EVENTS, {"after": mark})
        got = [event(p, "followedEvents") for p in await feed.take(5, timeout=1.0)]
        assert [e["changes"]["body"] for e in got] == [f"m{n}" for n in range(5)]


async def test_one_commit_larger_than_a_hub_batch(live_server, http, org, monkeypatch):
    monkeypatch.setattr(hub, "BATCH", 2)
    contact = await create_contact(org.seller)
    leads = [(await create_lead(org.seller))["id"] for _ in range(5)]
    for lead in leads:
        await org.seller.api.data(SET_PRIMARY, record=lead, contact=contact["id"])
        await org.seller.api.data(ADD_FOLLOWER, record=lead, user=org.teammate.id)
    async with live_client(live_server.base_url, org.teammate.api.token) as client:
        before = await wait_for_subscriptions(http, 0)
        feed = await client.subscribe(FOLLOWED_EVENTS)
        await wait_for_subscriptions(http, before + 1)
        await org.seller.api.data(
            "mutation($id: ID!) { deleteContact(id: $id) { id } }", id=contact["id"]
        )
        got = [event(p, "followedEvents") for p in await feed.take(5, timeout=1.0)]
        assert sorted(e["recordId"] for e in got) == sorted(leads)


async def test_each_follower_gets_their_own_notification(live_server, http, org):
    lead = await create_lead(org.seller)
    for member in (org.teammate, org.manager):
        await org.seller.api.data(ADD_FOLLOWER, record=lead["id"], user=member.id)
    async with (
        live_client(live_server.base_url, org.teammate.api.token) as t,
        live_client(live_server.base_url, org.manager.api.token) as m,
    ):
        before = await wait_for_subscriptions(http, 0)
        subs = [await t.subscribe(NOTIFICATION_ADDED), await m.subscribe(NOTIFICATION_ADDED)]
        await wait_for_subscriptions(http, before + 2)
        await org.teammate.api.data(COMMENT, record=lead["id"], body="by the teammate")
        await subs[0].expect_nothing(0.3)  # the manager's notification is not the teammate's
        await org.seller.api.data(COMMENT, record=lead["id"], body="by the seller")
        for member, sub, count in ((org.teammate, subs[0], 1), (org.manager, subs[1], 2)):
            notes = [event(p, "notificationAdded") for p in await sub.take(count, timeout=1.0)]
            mine = await member.api.data("{ notifications(first: 5) { nodes { id } } }")
            assert {n["id"] for n in notes} <= {n["id"] for n in mine["notifications"]["nodes"]}


async def test_a_logged_out_connection_cannot_subscribe(live_server, org):
    member = await org.add_user("SELLER")
    async with live_client(live_server.base_url, member.api.token) as client:
        await member.api.data(LOGOUT)  # over HTTP, while no subscription is open
        sub = await client.subscribe(FOLLOWED_EVENTS)
        with pytest.raises(OperationError) as error:
            await sub.next(timeout=1.0)
        assert error.value.errors[0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_replay_holds_only_followed_records(live_server, org):
    followed, other = await create_lead(org.seller), await create_lead(org.seller)
    await org.seller.api.data(ADD_FOLLOWER, record=followed["id"], user=org.teammate.id)
    mark = await cursor(org.teammate)
    await org.seller.api.data(COMMENT, record=other["id"], body="not followed")
    await org.seller.api.data(COMMENT, record=followed["id"], body="followed")
    async with live_client(live_server.base_url, org.teammate.api.token) as client:
        feed = await client.subscribe(FOLLOWED_EVENTS, {"after": mark})
        assert event(await feed.next(timeout=1.0), "followedEvents")["changes"]["body"] == (
            "followed"
        )
        await feed.expect_nothing(0.3)


async def test_record_events_ignore_the_other_kind_with_the_same_pk(live_server, http, org):
    lead, opportunity = await create_lead(org.seller), await create_opportunity(org.seller)
    for _ in range(500):  # align the two tables' ids
        if pk(lead["id"]) == pk(opportunity["id"]):
            break
        if pk(lead["id"]) < pk(opportunity["id"]):
            lead = await create_lead(org.seller)
        else:
            opportunity = await create_opportunity(org.seller)
    assert pk(lead["id"]) == pk(opportunity["id"])
    async with live_client(live_server.base_url, org.seller.api.token) as client:
        before = await wait_for_subscriptions(http, 0)
        feed = await client.subscribe(RECORD_EVENTS, {"id": lead["id"]})
        await wait_for_subscriptions(http, before + 1)
        await org.seller.api.data(COMMENT, record=opportunity["id"], body="on the opportunity")
        await org.seller.api.data(COMMENT, record=lead["id"], body="on the lead")
        got = event(await feed.next(timeout=1.0), "recordEvents")
        assert (got["recordId"], got["changes"]["body"]) == (lead["id"], "on the lead")


async def test_a_deletion_reaches_the_records_followers(live_server, http, org):
    lead = await create_lead(org.seller)
    await org.seller.api.data(ADD_FOLLOWER, record=lead["id"], user=org.teammate.id)
    async with live_client(live_server.base_url, org.teammate.api.token) as client:
        before = await wait_for_subscriptions(http, 0)
        subscriptions = [
            await client.subscribe(FOLLOWED_EVENTS),
            await client.subscribe(RECORD_EVENTS, {"id": lead["id"]}),
        ]
        await wait_for_subscriptions(http, before + 2)
        await org.seller.api.data(
            "mutation($id: ID!) { deleteLead(id: $id) { id } }", id=lead["id"]
        )
        for feed, field in zip(subscriptions, ("followedEvents", "recordEvents"), strict=True):
            assert event(await feed.next(timeout=1.0), field)["kind"] == "DELETED"


async def test_live_cursor_ignores_other_organizations(live_server, org, other_org):
    await create_lead(org.seller)
    mark = (await org.seller.api.data(LIVE_CURSOR))["liveCursor"]
    await create_lead(other_org.seller)
    assert (await org.seller.api.data(LIVE_CURSOR))["liveCursor"] == mark


async def test_a_user_deactivated_without_token_revocation_is_cut_off(live_server, http, org):
    member = await org.add_user("SELLER")
    lead = await create_lead(org.seller)
    await org.seller.api.data(ADD_FOLLOWER, record=lead["id"], user=member.id)
    async with live_client(live_server.base_url, member.api.token) as client:
        before = await wait_for_subscriptions(http, 0)
        feed = await client.subscribe(FOLLOWED_EVENTS)
        await wait_for_subscriptions(http, before + 1)
        await User.filter(id=pk(member.id)).update(is_active=False)  # e.g. by an operator
        await org.seller.api.data(COMMENT, record=lead["id"], body="not for them")
        ended = await feed.closed_or_completed(timeout=1.0)
        assert ended.payloads[-1]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.skipif(
    os.environ.get("TEST_DATABASE", "sqlite") != "postgres",
    reason="commit order vs id order matters on PostgreSQL",
)
async def test_an_event_that_commits_late_is_not_skipped(live_server, http, org, monkeypatch):
    lead, other = await create_lead(org.seller), await create_lead(org.teammate)
    await org.seller.api.data(ADD_FOLLOWER, record=lead["id"], user=org.admin.id)
    await org.teammate.api.data(ADD_FOLLOWER, record=other["id"], user=org.admin.id)
    original, calls = Notification.bulk_create, []

    async def slow_first(objects, *args, **kwargs):  # between the event's INSERT and COMMIT
        calls.append(1)
        if len(calls) == 1:
            await asyncio.sleep(0.5)
        return await original(objects, *args, **kwargs)

    async with live_client(live_server.base_url, org.admin.api.token) as client:
        before = await wait_for_subscriptions(http, 0)
        feed = await client.subscribe(FOLLOWED_EVENTS)
        await wait_for_subscriptions(http, before + 1)
        monkeypatch.setattr(Notification, "bulk_create", slow_first)
        slow = asyncio.create_task(org.seller.api.data(COMMENT, record=lead["id"], body="slow"))
        await asyncio.sleep(0.1)
        await org.teammate.api.data(COMMENT, record=other["id"], body="fast")  # no row lock shared
        await slow
        got = [event(p, "followedEvents") for p in await feed.take(2, timeout=1.5)]
        assert sorted(e["changes"]["body"] for e in got) == ["fast", "slow"]


def test_sees_deal_never_crosses_organizations():
    from types import SimpleNamespace as NS

    from models import Role, Visibility
    from resolvers.access import sees

    admin: Any = NS(id=1, organization_id=1, role=Role.ADMIN)
    deal: Any = NS(organization_id=2, visibility=Visibility.ORGANIZATION, owner_id=1)
    assert not sees(admin, {1}, deal, follows=True)


LEAD_TITLE = "query($id: ID!) { node(id: $id) { ... on Lead { title visibility } } }"
VIEWER = "{ viewer { id role } }"


async def run_once(client, query: str, variables: dict | None = None) -> dict:
    """A query or mutation over the websocket (graphql-transport-ws carries them; Strawberry's
    legacy graphql-ws takes subscriptions only)."""
    return await (await client.subscribe(query, variables)).next(timeout=2.0)


async def test_every_operation_on_a_websocket_sees_the_session_and_rows_of_now(
    live_server,
    org,
):
    member = await org.add_user("SELLER", org.manager)
    lead = await create_lead(org.seller)
    async with live_client(live_server.base_url, member.api.token) as client:
        # Rows: the connection read the lead once; it turns private; the next read is refused,
        # as over HTTP, and no replay of its events gets through either.
        mark = await cursor(member)
        assert (await run_once(client, LEAD_TITLE, {"id": lead["id"]}))["data"]["node"] == {
            "title": lead["title"],
            "visibility": "ORGANIZATION",
        }
        await org.seller.api.data(UPDATE_LEAD, input={"id": lead["id"], "visibility": "PRIVATE"})
        await org.seller.api.data(COMMENT, record=lead["id"], body="confidential")
        answer = await run_once(client, LEAD_TITLE, {"id": lead["id"]})
        assert answer["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        replay = await client.subscribe(RECORD_EVENTS, {"id": lead["id"], "after": mark})
        with pytest.raises(OperationError) as error:
            await replay.next()
        assert error.value.errors[0]["extensions"]["code"] == "NOT_FOUND"

        # Session: signed out elsewhere, the connection can neither read nor write.
        assert (await run_once(client, VIEWER))["data"]["viewer"]["id"] == member.id
        await member.api.data(LOGOUT)
        for query, variables in ((VIEWER, None), (COMMENT, {"record": lead["id"], "body": "x"})):
            answer = await run_once(client, query, variables)
            assert answer["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_deactivated_or_demoted_user_loses_their_rights_on_an_open_websocket(
    live_server,
    org,
):
    admin = await org.add_user("ADMIN")
    lead = await create_lead(org.seller)
    demote = """mutation($id: ID!) { updateUser(input: {id: $id, role: SELLER}) { id } }"""
    async with live_client(live_server.base_url, admin.api.token) as client:
        assert (await run_once(client, VIEWER))["data"]["viewer"]["role"] == "ADMIN"
        await org.admin.api.data(demote, id=admin.id)
        assert (await run_once(client, VIEWER))["data"]["viewer"]["role"] == "SELLER"
        rename = {"input": {"id": lead["id"], "title": "Not theirs"}}
        answer = await run_once(client, UPDATE_LEAD, rename)
        assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        await org.admin.api.data(DEACTIVATE, id=admin.id)
        answer = await run_once(client, COMMENT, {"record": lead["id"], "body": "x"})
        assert answer["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
