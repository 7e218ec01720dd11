"""Live subscriptions over real websockets, both protocols, against the suite's server (one
process, memory bus). The multi-process buses are in test_live_bus.py."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import (
    create_contact,
    create_lead,
    create_opportunity,
    global_id,
    wait_for_subscriptions,
)
from tests.test_deals import (
    ADD_FOLLOWER,
    ADD_PARTICIPANT,
    COMMENT,
    FOLLOW,
    REMOVE_PARTICIPANT,
    STAGES,
    UNFOLLOW,
    UPDATE_OPPORTUNITY,
)
from tests.test_events import HISTORY
from tests.ws import (
    PROTOCOLS,
    TRANSPORT_WS,
    OperationError,
    expect_rejected,
    live_client,
)

EVENT_FIELDS = "kind cursor recordId changes actor { id }"
RECORD_EVENTS = f"""subscription($id: ID!, $after: String) {{
  recordEvents(recordId: $id, after: $after) {{ {EVENT_FIELDS} }}
}}"""
FOLLOWED_EVENTS = f"""subscription($after: String) {{
  followedEvents(after: $after) {{ {EVENT_FIELDS} }}
}}"""
NOTIFICATION_ADDED = """subscription {
  notificationAdded { id readAt event { kind recordId actor { id } record { id } } }
}"""
LIVE_CURSOR = "{ liveCursor }"
UPDATE_LEAD = "mutation($input: UpdateLeadInput!) { updateLead(input: $input) { id } }"
LOGOUT = "mutation { logout }"
DEACTIVATE = """mutation($id: ID!) { updateUser(input: {id: $id, isActive: false}) { id } }"""

pytestmark = pytest.mark.parametrize("protocol", PROTOCOLS)


def event(payload: dict, field: str) -> dict:
    assert not payload.get("errors"), payload
    return payload["data"][field]


async def cursor(member) -> str:
    return (await member.api.data(LIVE_CURSOR))["liveCursor"]


async def test_a_follower_sees_stage_comment_and_participant_changes_within_a_second(
    live_server, http, org, protocol
):
    stages = (await org.seller.api.data(STAGES))["pipelineStages"]
    opportunity = await create_opportunity(org.seller)
    record = opportunity["id"]
    cfo = await create_contact(org.seller)
    await org.seller.api.data(ADD_FOLLOWER, record=record, user=org.teammate.id)
    async with live_client(live_server.base_url, org.teammate.api.token, protocol) as client:
        before = await wait_for_subscriptions(http, 0)
        followed = await client.subscribe(FOLLOWED_EVENTS)
        one = await client.subscribe(RECORD_EVENTS, {"id": record})
        await wait_for_subscriptions(http, before + 2)

        await org.seller.api.data(
            UPDATE_OPPORTUNITY, input={"id": record, "stageId": stages[2]["id"]}
        )
        await org.seller.api.data(COMMENT, record=record, body="Budget approved")
        await org.seller.api.data(
            ADD_PARTICIPANT, input={"recordId": record, "contactId": cfo["id"], "role": "CFO"}
        )
        await org.seller.api.data(REMOVE_PARTICIPANT, record=record, contact=cfo["id"])

        for sub, field in ((followed, "followedEvents"), (one, "recordEvents")):
            got = [event(p, field) for p in await sub.take(4, timeout=1.0)]
            assert [e["kind"] for e in got] == [
                "STAGE_CHANGED",
                "COMMENT_ADDED",
                "PARTICIPANT_ADDED",
                "PARTICIPANT_REMOVED",
            ]
            assert {e["recordId"] for e in got} == {record}
            assert {e["actor"]["id"] for e in got} == {org.seller.id}
            assert got[0]["changes"]["stageId"] == {"old": stages[0]["id"], "new": stages[2]["id"]}
            assert got[1]["changes"]["body"] == "Budget approved"
            assert got[2]["changes"] == {"contactId": cfo["id"], "role": "CFO"}
        # Nothing else, and the same events as the audit trail.
        await followed.expect_nothing(0.3)
        history = (await org.teammate.api.data(HISTORY, id=record))["node"]["history"]
        assert [edge["node"]["kind"] for edge in history["edges"][:4]] == [
            "PARTICIPANT_REMOVED",
            "PARTICIPANT_ADDED",
            "COMMENT_ADDED",
            "STAGE_CHANGED",
        ]


async def test_non_followers_and_other_organizations_see_nothing(
    live_server, http, org, other_org, protocol
):
    lead = await create_lead(org.seller)
    await org.seller.api.data(ADD_FOLLOWER, record=lead["id"], user=org.teammate.id)
    async with (
        live_client(live_server.base_url, org.teammate.api.token, protocol) as follower,
        live_client(live_server.base_url, org.outsider.api.token, protocol) as colleague,
        live_client(live_server.base_url, other_org.admin.api.token, protocol) as stranger,
    ):
        before = await wait_for_subscriptions(http, 0)
        watching = await follower.subscribe(FOLLOWED_EVENTS)
        not_following = await colleague.subscribe(FOLLOWED_EVENTS)
        other_admin = await stranger.subscribe(FOLLOWED_EVENTS)
        await wait_for_subscriptions(http, before + 3)
        # The other organization's admin cannot even name the record.
        refused = await stranger.subscribe(RECORD_EVENTS, {"id": lead["id"]})
        with pytest.raises(OperationError) as error:
            await refused.next()
        assert error.value.errors[0]["extensions"]["code"] == "NOT_FOUND"

        await org.seller.api.data(COMMENT, record=lead["id"], body="Internal")
        assert event(await watching.next(timeout=1.0), "followedEvents")["kind"] == "COMMENT_ADDED"
        await not_following.expect_nothing(0.3)
        await other_admin.expect_nothing(0.1)


async def test_a_private_record_is_live_only_for_its_readers(live_server, http, org, protocol):
    lead = await create_lead(org.seller, visibility="PRIVATE")
    # The teammate may not read it: not even its events.
    async with live_client(live_server.base_url, org.teammate.api.token, protocol) as client:
        sub = await client.subscribe(RECORD_EVENTS, {"id": lead["id"]})
        with pytest.raises(OperationError) as error:
            await sub.next()
        assert error.value.errors[0]["extensions"]["code"] == "NOT_FOUND"

    # A reader who loses access (the record turns private) is told, and receives no more.
    shared = await create_lead(org.seller)
    async with live_client(live_server.base_url, org.teammate.api.token, protocol) as client:
        before = await wait_for_subscriptions(http, 0)
        sub = await client.subscribe(RECORD_EVENTS, {"id": shared["id"]})
        await wait_for_subscriptions(http, before + 1)
        await org.seller.api.data(COMMENT, record=shared["id"], body="Everyone sees this")
        assert event(await sub.next(timeout=1.0), "recordEvents")["kind"] == "COMMENT_ADDED"
        await org.seller.api.data(UPDATE_LEAD, input={"id": shared["id"], "visibility": "PRIVATE"})
        await org.seller.api.data(COMMENT, record=shared["id"], body="Only my team sees this")
        ended = await sub.closed_or_completed(timeout=2.0)
        assert [payload["data"] for payload in ended.payloads] == [None]
        assert ended.payloads[0]["errors"][0]["extensions"]["code"] == "RECORD_UNREADABLE"
        # ... while the manager, who reads the seller's private records, does receive them.
        async with live_client(live_server.base_url, org.manager.api.token, protocol) as boss:
            held = await wait_for_subscriptions(http, 0)
            manager = await boss.subscribe(RECORD_EVENTS, {"id": shared["id"]})
            await wait_for_subscriptions(http, held + 1)
            await org.seller.api.data(COMMENT, record=shared["id"], body="Second")
            got = event(await manager.next(timeout=1.0), "recordEvents")
            assert got["changes"]["body"] == "Second"


async def test_following_and_unfollowing_take_effect_without_reconnecting(
    live_server, http, org, protocol
):
    lead = await create_lead(org.seller)
    async with live_client(live_server.base_url, org.outsider.api.token, protocol) as client:
        before = await wait_for_subscriptions(http, 0)
        feed = await client.subscribe(FOLLOWED_EVENTS)
        await wait_for_subscriptions(http, before + 1)
        await org.seller.api.data(COMMENT, record=lead["id"], body="Before following")
        await feed.expect_nothing(0.3)

        await org.outsider.api.data(FOLLOW, record=lead["id"])
        followed = event(await feed.next(timeout=1.0), "followedEvents")
        assert (followed["kind"], followed["actor"]["id"]) == ("FOLLOWER_ADDED", org.outsider.id)
        await org.seller.api.data(COMMENT, record=lead["id"], body="While following")
        got = event(await feed.next(timeout=1.0), "followedEvents")
        assert got["changes"]["body"] == "While following"

        await org.outsider.api.data(UNFOLLOW, record=lead["id"])
        await org.seller.api.data(COMMENT, record=lead["id"], body="After unfollowing")
        await feed.expect_nothing(0.5)


async def test_resuming_with_after_yields_exactly_the_missed_events(
    live_server, http, org, protocol
):
    opportunity = await create_opportunity(org.seller)
    record = opportunity["id"]
    await org.seller.api.data(ADD_FOLLOWER, record=record, user=org.teammate.id)
    async with live_client(live_server.base_url, org.teammate.api.token, protocol) as client:
        mark = await cursor(org.teammate)
        feed = await client.subscribe(FOLLOWED_EVENTS, {"after": mark})
        await org.seller.api.data(COMMENT, record=record, body="seen live")
        last_seen = event(await feed.next(timeout=1.0), "followedEvents")
    # Away: three changes happen.
    for n in range(3):
        await org.seller.api.data(COMMENT, record=record, body=f"missed {n}")
    async with live_client(live_server.base_url, org.teammate.api.token, protocol) as client:
        feed = await client.subscribe(FOLLOWED_EVENTS, {"after": last_seen["cursor"]})
        missed = [event(p, "followedEvents") for p in await feed.take(3, timeout=1.0)]
        assert [e["changes"]["body"] for e in missed] == ["missed 0", "missed 1", "missed 2"]
        # ... then live, without a duplicate.
        await org.seller.api.data(COMMENT, record=record, body="live again")
        assert event(await feed.next(timeout=1.0), "followedEvents")["changes"]["body"] == (
            "live again"
        )
        await feed.expect_nothing(0.3)

    # A `history` edge cursor resumes a record's feed the same way.
    history = (await org.teammate.api.data(HISTORY, id=record))["node"]["history"]["edges"]
    third_newest = next(e for e in history if e["node"]["changes"].get("body") == "missed 1")
    async with live_client(live_server.base_url, org.teammate.api.token, protocol) as client:
        edge_cursor = (
            await org.teammate.api.data(
                "query($id: ID!) { node(id: $id) { ... on Deal { history(first: 3) { "
                "edges { cursor node { cursor } } } } } }",
                id=record,
            )
        )["node"]["history"]["edges"]
        assert edge_cursor[0]["cursor"] == edge_cursor[0]["node"]["cursor"]
        feed = await client.subscribe(
            RECORD_EVENTS, {"id": record, "after": edge_cursor[2]["cursor"]}
        )
        replay = [event(p, "recordEvents")["changes"]["body"] for p in await feed.take(2)]
        assert replay == ["missed 2", "live again"]
    assert third_newest["node"]["kind"] == "COMMENT_ADDED"


async def test_concurrent_writers_reach_a_follower_once_each_in_log_order(
    live_server, http, org, protocol
):
    records = [(await create_lead(org.seller))["id"] for _ in range(3)]
    for record in records:
        await org.seller.api.data(ADD_FOLLOWER, record=record, user=org.admin.id)
    writers = [org.seller, org.teammate, org.manager]
    async with live_client(live_server.base_url, org.admin.api.token, protocol) as client:
        mark = await cursor(org.admin)
        feed = await client.subscribe(FOLLOWED_EVENTS, {"after": mark})
        await asyncio.gather(
            *(
                writer.api.data(COMMENT, record=records[n % 3], body=f"c{n}")
                for n, writer in enumerate(writers * 8)
            )
        )
        got = [event(p, "followedEvents") for p in await feed.take(24, timeout=2.0)]
        await feed.expect_nothing(0.3)
    bodies = [e["changes"]["body"] for e in got]
    assert sorted(bodies) == sorted(f"c{n}" for n in range(24))  # each exactly once
    ids = [int(e["cursor"] and _event_id(e["cursor"])) for e in got]
    assert ids == sorted(ids)
    # Replaying the same stretch gives the same sequence.
    async with live_client(live_server.base_url, org.admin.api.token, protocol) as client:
        feed = await client.subscribe(FOLLOWED_EVENTS, {"after": mark})
        replayed = [event(p, "followedEvents") for p in await feed.take(24, timeout=2.0)]
    assert [e["cursor"] for e in replayed] == [e["cursor"] for e in got]


def _event_id(cursor: str) -> int:
    import base64
    import json

    return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))[-1]


async def test_notifications_arrive_live_but_never_for_ones_own_acts(
    live_server, http, org, protocol
):
    lead = await create_lead(org.seller)
    await org.seller.api.data(ADD_FOLLOWER, record=lead["id"], user=org.teammate.id)
    async with live_client(live_server.base_url, org.teammate.api.token, protocol) as client:
        before = await wait_for_subscriptions(http, 0)
        notifications = await client.subscribe(NOTIFICATION_ADDED)
        feed = await client.subscribe(FOLLOWED_EVENTS)
        await wait_for_subscriptions(http, before + 2)
        await org.teammate.api.data(COMMENT, record=lead["id"], body="my own")
        own = event(await feed.next(timeout=1.0), "followedEvents")  # in the feed...
        assert own["actor"]["id"] == org.teammate.id
        await notifications.expect_nothing(0.3)  # ... but no notification
        await org.seller.api.data(COMMENT, record=lead["id"], body="from the seller")
        note = event(await notifications.next(timeout=1.0), "notificationAdded")
        assert note["readAt"] is None
        assert note["event"]["kind"] == "COMMENT_ADDED"
        assert note["event"]["actor"]["id"] == org.seller.id
        assert note["event"]["record"]["id"] == lead["id"]
        unread = await org.teammate.api.data("{ notifications(first: 1) { nodes { id } } }")
        assert unread["notifications"]["nodes"][0]["id"] == note["id"]


async def test_connections_without_a_valid_token_are_refused(live_server, org, protocol):
    for token in (None, "crm_not-a-real-token"):
        refused = await expect_rejected(live_server.base_url, token, protocol)
        if protocol == TRANSPORT_WS:
            assert (refused.code, refused.reason) == (4401, "Unauthorized")
        else:
            assert refused.connection_error
            assert refused.payload["extensions"]["code"] == "UNAUTHENTICATED"
    # A token that was valid once, logged out.
    member = await org.add_user("SELLER")
    await member.api.data(LOGOUT)
    refused = await expect_rejected(live_server.base_url, member.api.token, protocol)
    assert refused.code == 4401 if protocol == TRANSPORT_WS else refused.connection_error


async def test_a_revoked_token_or_deactivated_user_ends_subscriptions(
    live_server, http, org, protocol
):
    lead = await create_lead(org.seller)
    for how in ("logout", "deactivate"):
        member = await org.add_user("SELLER", org.manager)
        await org.seller.api.data(ADD_FOLLOWER, record=lead["id"], user=member.id)
        async with live_client(live_server.base_url, member.api.token, protocol) as client:
            before = await wait_for_subscriptions(http, 0)
            feed = await client.subscribe(FOLLOWED_EVENTS)
            await wait_for_subscriptions(http, before + 1)
            if how == "logout":
                await member.api.data(LOGOUT)
            else:
                await org.admin.api.data(DEACTIVATE, id=member.id)
            # The stream's last result is the error; then it completes.
            ended = await feed.closed_or_completed(timeout=2.0)
            assert ended.how == "completed"
            assert ended.payloads[-1]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
            # Nothing more reaches this connection, nor can it subscribe again.
            await org.seller.api.data(COMMENT, record=lead["id"], body="after")
            again = await client.subscribe(FOLLOWED_EVENTS)
            with pytest.raises(OperationError) as error:
                await again.next(timeout=1.0)
            assert error.value.errors[0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_cross_origin_websockets_follow_the_configured_origins(live_server, org, protocol):
    allowed = "https://app.example"  # CORS_ORIGINS of the suite (conftest)
    async with live_client(
        live_server.base_url, org.seller.api.token, protocol, origin=allowed
    ) as client:
        assert client.protocol == protocol
    refused = await expect_rejected(
        live_server.base_url, org.seller.api.token, protocol, origin="https://evil.example"
    )
    assert refused.status == 403


async def test_bad_subscription_arguments_name_their_field(live_server, org, protocol):
    lead = await create_lead(org.seller)
    async with live_client(live_server.base_url, org.seller.api.token, protocol) as client:
        cases = [
            (RECORD_EVENTS, {"id": "nonsense"}, "recordId"),
            (RECORD_EVENTS, {"id": global_id("Comment", 1)}, "recordId"),
            (RECORD_EVENTS, {"id": lead["id"], "after": "not-a-cursor"}, "after"),
            (FOLLOWED_EVENTS, {"after": "WyJJRCIsLTFd"}, "after"),  # ["ID",-1]
            # ["ID", 2**40]: a cursor ahead of the log (another deployment's, say)
            (FOLLOWED_EVENTS, {"after": "WyJJRCIsMTA5OTUxMTYyNzc3Nl0"}, "after"),
        ]
        for query, variables, field in cases:
            sub = await client.subscribe(query, variables)
            with pytest.raises(OperationError) as error:
                await sub.next()
            extensions = error.value.errors[0]["extensions"]
            assert (extensions["code"], extensions["field"]) == ("BAD_USER_INPUT", field)
