"""The event log: history (the audit trail) and followers' notifications."""

from __future__ import annotations

from tests.helpers import create_contact, create_lead, create_opportunity
from tests.test_deals import (
    ADD_FOLLOWER,
    ADD_PARTICIPANT,
    COMMENT,
    REMOVE_PARTICIPANT,
    SET_PRIMARY,
    STAGES,
    UPDATE_OPPORTUNITY,
)

HISTORY = """
query($id: ID!) {
  node(id: $id) {
    ... on Deal { history(first: 50) { totalCount edges { node {
      kind changes recordType recordId actor { id }
    } } } }
  }
}"""
NOTIFICATIONS = """
query($unreadOnly: Boolean) {
  unreadNotificationCount
  notifications(first: 50, unreadOnly: $unreadOnly) {
    totalCount
    edges { node { id readAt event { kind recordId actor { id } record { id } } } }
  }
}"""
MARK_READ = "mutation($ids: [ID!]) { markNotificationsRead(ids: $ids) }"


async def history(member, record_id):
    data = await member.api.data(HISTORY, id=record_id)
    return [edge["node"] for edge in data["node"]["history"]["edges"]]


async def test_every_change_is_in_the_history_newest_first(org):
    stages = (await org.seller.api.data(STAGES))["pipelineStages"]
    opportunity = await create_opportunity(org.seller, amount="100.00")
    cfo = await create_contact(org.seller)
    buyer = await create_contact(org.seller)
    record = opportunity["id"]
    await org.seller.api.data(
        UPDATE_OPPORTUNITY, input={"id": record, "amount": "250.50", "name": "Bigger"}
    )
    await org.seller.api.data(UPDATE_OPPORTUNITY, input={"id": record, "stageId": stages[2]["id"]})
    await org.seller.api.data(
        ADD_PARTICIPANT, input={"recordId": record, "contactId": cfo["id"], "role": "CFO"}
    )
    await org.seller.api.data(REMOVE_PARTICIPANT, record=record, contact=cfo["id"])
    await org.seller.api.data(SET_PRIMARY, record=record, contact=buyer["id"])
    await org.seller.api.data(ADD_FOLLOWER, record=record, user=org.teammate.id)
    await org.teammate.api.data(COMMENT, record=record, body="Looks good")
    await org.seller.api.data(UPDATE_OPPORTUNITY, input={"id": record, "stageId": stages[4]["id"]})

    events = await history(org.seller, record)
    assert [event["kind"] for event in events] == [
        "WON",
        "COMMENT_ADDED",
        "FOLLOWER_ADDED",
        "PRIMARY_CONTACT_SET",
        "PARTICIPANT_REMOVED",
        "PARTICIPANT_ADDED",
        "STAGE_CHANGED",
        "UPDATED",
        "CREATED",
    ]
    assert all(
        event["recordId"] == record and event["recordType"] == "Opportunity" for event in events
    )
    won, comment, follower, primary, removed, added, stage, updated, created = events
    assert updated["changes"] == {
        "amount": {"old": "100.00", "new": "250.50"},
        "name": {"old": opportunity["name"], "new": "Bigger"},
    }
    assert stage["changes"]["stageId"] == {"old": stages[0]["id"], "new": stages[2]["id"]}
    assert stage["changes"]["probability"] == {"old": 10, "new": 50}
    assert won["changes"]["status"] == {"old": "OPEN", "new": "WON"}
    assert added["changes"] == {"contactId": cfo["id"], "role": "CFO"}
    assert removed["changes"] == {"contactId": cfo["id"]}
    assert primary["changes"] == {"contactId": {"old": None, "new": buyer["id"]}}
    assert follower["changes"] == {"userId": org.teammate.id}
    assert comment["changes"]["body"] == "Looks good"
    assert comment["actor"] == {"id": org.teammate.id}
    assert created["changes"]["amount"] == {"old": None, "new": "100.00"}
    assert {event["actor"]["id"] for event in events} == {org.seller.id, org.teammate.id}


async def test_a_failed_mutation_writes_no_event(org):
    opportunity = await create_opportunity(org.seller)
    record = opportunity["id"]
    before = await history(org.seller, record)
    stale = {"id": record, "expectedVersion": opportunity["version"] - 1, "name": "X"}
    assert await org.seller.api.error_code(UPDATE_OPPORTUNITY, input=stale) == "CONFLICT"
    bad = {"id": record, "name": "Renamed", "amount": "-5"}
    assert await org.seller.api.error_code(UPDATE_OPPORTUNITY, input=bad) == "BAD_USER_INPUT"
    forbidden = {"id": record, "name": "Not mine"}
    assert await org.teammate.api.error_code(UPDATE_OPPORTUNITY, input=forbidden) == "FORBIDDEN"
    assert await history(org.seller, record) == before


async def test_deleting_a_contact_is_logged_on_the_records_it_leaves(org):
    lead = await create_lead(org.seller)
    contact = await create_contact(org.seller)
    await org.seller.api.data(SET_PRIMARY, record=lead["id"], contact=contact["id"])
    await org.seller.api.data(
        "mutation($id: ID!) { deleteContact(id: $id) { id } }", id=contact["id"]
    )
    latest = (await history(org.seller, lead["id"]))[0]
    assert latest["kind"] == "PRIMARY_CONTACT_SET"
    assert latest["changes"] == {"contactId": {"old": contact["id"], "new": None}}


async def test_followers_are_notified_of_others_changes_only(org):
    opportunity = await create_opportunity(org.seller)
    record = opportunity["id"]
    await org.seller.api.data(ADD_FOLLOWER, record=record, user=org.teammate.id)
    await org.outsider.api.data("mutation($r: ID!) { followRecord(recordId: $r) { id } }", r=record)
    await org.teammate.api.data(COMMENT, record=record, body="Mine")  # the teammate's own act
    await org.seller.api.data(UPDATE_OPPORTUNITY, input={"id": record, "name": "Renamed"})

    teammate = await org.teammate.api.data(NOTIFICATIONS)
    kinds = [edge["node"]["event"]["kind"] for edge in teammate["notifications"]["edges"]]
    # Added as a follower (by the seller), the outsider following, the rename: not the comment.
    assert kinds == ["UPDATED", "FOLLOWER_ADDED", "FOLLOWER_ADDED"]
    assert teammate["unreadNotificationCount"] == 3
    latest = teammate["notifications"]["edges"][0]["node"]
    assert latest["event"]["actor"] == {"id": org.seller.id}
    assert latest["event"]["record"] == {"id": record}

    outsider = await org.outsider.api.data(NOTIFICATIONS)
    assert [e["node"]["event"]["kind"] for e in outsider["notifications"]["edges"]] == [
        "UPDATED",
        "COMMENT_ADDED",
    ]
    # The seller owns it, and so follows it: told of the others' acts, not of its own.
    seller = await org.seller.api.data(NOTIFICATIONS)
    assert [e["node"]["event"]["kind"] for e in seller["notifications"]["edges"]] == [
        "COMMENT_ADDED",
        "FOLLOWER_ADDED",
    ]


async def test_marking_notifications_read(org, other_org):
    opportunity = await create_opportunity(org.seller)
    record = opportunity["id"]
    await org.seller.api.data(ADD_FOLLOWER, record=record, user=org.teammate.id)
    for name in ("One", "Two", "Three"):
        await org.seller.api.data(UPDATE_OPPORTUNITY, input={"id": record, "name": name})
    seen = await org.teammate.api.data(NOTIFICATIONS)
    ids = [edge["node"]["id"] for edge in seen["notifications"]["edges"]]
    assert len(ids) == 4

    # Another user's notification ids change nothing.
    assert (await other_org.admin.api.data(MARK_READ, ids=ids))["markNotificationsRead"] == 0
    assert (await org.manager.api.data(MARK_READ, ids=ids))["markNotificationsRead"] == 0

    assert (await org.teammate.api.data(MARK_READ, ids=ids[:2]))["markNotificationsRead"] == 2
    unread = await org.teammate.api.data(NOTIFICATIONS, unreadOnly=True)
    assert unread["unreadNotificationCount"] == 2
    assert [edge["node"]["id"] for edge in unread["notifications"]["edges"]] == ids[2:]
    assert (await org.teammate.api.data(MARK_READ))["markNotificationsRead"] == 2
    everything = await org.teammate.api.data(NOTIFICATIONS)
    assert everything["unreadNotificationCount"] == 0
    assert everything["notifications"]["totalCount"] == 4
    assert all(edge["node"]["readAt"] for edge in everything["notifications"]["edges"])


async def test_history_and_notifications_stay_in_their_organization(org, other_org):
    opportunity = await create_opportunity(org.seller)
    events = await history(org.seller, opportunity["id"])
    assert len(events) == 1
    foreign = await other_org.admin.api.error(HISTORY, id=opportunity["id"])
    assert foreign["extensions"]["code"] == "NOT_FOUND"
    assert (await other_org.admin.api.data(NOTIFICATIONS))["notifications"]["totalCount"] == 0
