"""Timelines: activities, comments and changes of accounts, contacts, leads and opportunities in
one connection, newest first."""

from __future__ import annotations

import base64
import json
from typing import Any

from models import Activity, Event
from tests.helpers import (
    Member,
    create_account,
    create_contact,
    create_lead,
    create_opportunity,
    pk,
)
from tests.test_activities import COMPLETE, at, plan
from tests.test_deals import COMMENT, UPDATE_OPPORTUNITY

ENTRY = """cursor kind at node {
  __typename
  ... on Activity { id subject owner { id } }
  ... on Comment { id body author { id } }
  ... on Event { id eventKind: kind actor { id } }
  ... on LifecycleChange { toStage cause }
}"""
TIMELINE = f"""query($id: ID!, $first: Int, $after: String, $include: [TimelineEntryKind!]) {{
  node(id: $id) {{
    ... on Deal {{ timeline(first: $first, after: $after, include: $include) {{
      totalCount pageInfo {{ hasNextPage endCursor }} edges {{ {ENTRY} }} }} }}
    ... on Account {{ timeline(first: $first, after: $after, include: $include) {{
      totalCount pageInfo {{ hasNextPage endCursor }} edges {{ {ENTRY} }} }} }}
    ... on Contact {{ timeline(first: $first, after: $after, include: $include) {{
      totalCount pageInfo {{ hasNextPage endCursor }} edges {{ {ENTRY} }} }} }}
  }}
}}"""
SET_LIFECYCLE = """mutation($id: ID!, $stage: LifecycleStage, $reason: String!) {
  setContactLifecycle(contactId: $id, stage: $stage, reason: $reason) { id }
}"""


async def timeline(member: Member, record_id: str, **arguments: Any) -> dict[str, Any]:
    node = (await member.api.data(TIMELINE, id=record_id, **arguments))["node"]
    assert node is not None, "the record is out of the viewer's reach"
    return node["timeline"]


async def walk(member: Member, record_id: str, size: int, **arguments: Any) -> list[str]:
    """Every entry, page by page, as "KIND:id"."""
    seen: list[str] = []
    after = None
    for _ in range(100):
        page = await timeline(member, record_id, first=size, after=after, **arguments)
        seen.extend(label(edge) for edge in page["edges"])
        assert len(page["edges"]) <= size
        if not page["pageInfo"]["hasNextPage"]:
            return seen
        after = page["pageInfo"]["endCursor"]
    raise AssertionError(f"paging does not end: {seen[:20]}")


def label(edge: dict[str, Any]) -> str:
    node = edge["node"]
    detail = node.get("eventKind") or node.get("id") or node.get("toStage")
    return f"{edge['kind']}:{detail}"


async def test_a_deal_timeline_merges_activities_comments_and_changes_newest_first(org):
    deal = await create_opportunity(org.seller)
    earlier = await plan(
        org.seller, subject="Intro call", startsAt=at(-48), opportunityId=deal["id"]
    )
    comment = (await org.seller.api.data(COMMENT, record=deal["id"], body="Hot lead"))["addComment"]
    await org.seller.api.data(UPDATE_OPPORTUNITY, input={"id": deal["id"], "name": "Bigger deal"})
    later = await plan(org.seller, subject="Demo", startsAt=at(24), opportunityId=deal["id"])
    await org.seller.api.data(COMPLETE, id=earlier["id"], outcome="Interested")

    expected = [
        f"ACTIVITY:{later['id']}",  # planned: at its scheduled time, tomorrow
        "CHANGE:UPDATED",
        f"COMMENT:{comment['id']}",
        "CHANGE:CREATED",
        f"ACTIVITY:{earlier['id']}",  # two days ago; its completion is not a change entry
    ]
    whole = await timeline(org.seller, deal["id"], first=10)
    assert [label(edge) for edge in whole["edges"]] == expected
    assert whole["totalCount"] == 5
    assert whole["pageInfo"]["hasNextPage"] is False
    exact = await timeline(org.seller, deal["id"], first=5)
    assert exact["pageInfo"]["hasNextPage"] is False
    times = [edge["at"] for edge in whole["edges"]]
    assert times == sorted(times, reverse=True)
    first = whole["edges"][0]["node"]
    assert (first["__typename"], first["owner"]) == ("Activity", {"id": org.seller.id})
    assert whole["edges"][2]["node"]["author"] == {"id": org.seller.id}
    for size in (1, 2, 3):
        assert await walk(org.seller, deal["id"], size) == expected

    comments = await timeline(org.seller, deal["id"], include=["COMMENT"])
    assert [label(edge) for edge in comments["edges"]] == [f"COMMENT:{comment['id']}"]
    assert comments["totalCount"] == 1
    lead = await create_lead(org.seller)
    await org.seller.api.data(COMMENT, record=lead["id"], body="On the lead")
    assert [e["kind"] for e in (await timeline(org.seller, lead["id"]))["edges"]] == [
        "COMMENT",
        "CHANGE",
    ]


async def test_entries_at_the_same_time_are_neither_lost_nor_repeated(org):
    deal = await create_opportunity(org.seller)
    same = at(5)
    calls = [
        await plan(org.seller, subject=f"Call {n}", startsAt=same, opportunityId=deal["id"])
        for n in range(3)
    ]
    # An activity scheduled at the very instant the opportunity was created.
    created = await Event.filter(record_type="Opportunity", record_id=pk(deal["id"])).first()
    assert created is not None
    tied = await plan(org.seller, subject="Tied", startsAt=at(-1), opportunityId=deal["id"])
    await Activity.filter(id=pk(tied["id"])).update(scheduled_at=created.created_at)

    expected = [*(f"ACTIVITY:{c['id']}" for c in reversed(calls)), "CHANGE:CREATED"]
    expected.append(f"ACTIVITY:{tied['id']}")  # at the same time, changes come first
    for size in (1, 2, 4):
        assert await walk(org.seller, deal["id"], size) == expected


async def test_an_account_timeline_keeps_private_deals_to_their_readers(org):
    account = await create_account(org.seller)
    contact = await create_contact(org.seller, accountId=account["id"])
    open_deal = await create_opportunity(org.seller, accountId=account["id"])
    secret = await create_opportunity(org.seller, accountId=account["id"], visibility="PRIVATE")
    await org.seller.api.data(COMMENT, record=secret["id"], body="Confidential pricing")
    secret_call = await plan(org.seller, subject="Secret", opportunityId=secret["id"])
    visit = await plan(org.seller, kind="VISIT", subject="Site visit", accountId=account["id"])
    call = await plan(org.seller, subject="Contact call", contactId=contact["id"])
    elsewhere = await create_opportunity(org.seller)
    await org.seller.api.data(COMMENT, record=elsewhere["id"], body="Another account")

    def ids(page: dict[str, Any]) -> set[str]:
        return {edge["node"].get("id") or "" for edge in page["edges"]}

    manager = await timeline(org.manager, account["id"], first=50)
    outsider = await timeline(org.outsider, account["id"], first=50)
    for page in (manager, outsider):
        assert {visit["id"], call["id"]} <= ids(page)
    assert secret_call["id"] in ids(manager)
    assert secret_call["id"] not in ids(outsider)
    bodies = {edge["node"].get("body") for edge in manager["edges"]}
    assert "Confidential pricing" in bodies and "Another account" not in bodies
    assert "Confidential pricing" not in {edge["node"].get("body") for edge in outsider["edges"]}
    changes = [edge for edge in outsider["edges"] if edge["kind"] == "CHANGE"]
    assert len(changes) == 1  # the open opportunity's creation only
    assert manager["totalCount"] == outsider["totalCount"] + 3  # the secret's comment, call, event
    assert open_deal["id"] not in ids(outsider)  # changes are events, not deals


async def test_a_contact_timeline_has_its_activities_and_lifecycle_moves(org):
    contact = await create_contact(org.seller)
    other = await create_contact(org.seller)
    linked = await plan(org.seller, subject="Linked", startsAt=at(-3), contactId=contact["id"])
    attended = await plan(
        org.seller,
        subject="Attended",
        startsAt=at(-2),
        contactId=other["id"],
        attendeeIds=[contact["id"]],
    )
    await plan(org.seller, subject="Not theirs", startsAt=at(-1), contactId=other["id"])
    await org.manager.api.data(
        SET_LIFECYCLE, id=contact["id"], stage="POTENTIAL_CLIENT", reason="Met at the fair"
    )
    page = await timeline(org.seller, contact["id"])
    assert [label(edge) for edge in page["edges"]] == [
        "LIFECYCLE:POTENTIAL_CLIENT",
        f"ACTIVITY:{attended['id']}",
        f"ACTIVITY:{linked['id']}",
    ]
    assert page["edges"][0]["node"]["cause"] == "MANAGER_OVERRIDE"


async def test_timeline_arguments_are_checked(org):
    deal = await create_opportunity(org.seller)
    far = base64.urlsafe_b64encode(
        json.dumps(["TIMELINE", "0001-01-01T00:00:00+05:00", "CHANGE", 1]).encode()
    ).decode()
    for arguments, field in (
        ({"after": "bm90IGEgY3Vyc29y"}, "after"),
        ({"after": far}, "after"),  # a time that leaves the calendar in UTC
        ({"first": 1000}, "first"),
        ({"first": -1}, "first"),
    ):
        error = await org.seller.api.error(TIMELINE, id=deal["id"], **arguments)
        assert (error["extensions"]["code"], error["extensions"]["field"]) == (
            "BAD_USER_INPUT",
            field,
        ), arguments


async def test_timeline_statements_do_not_grow_with_the_page(org, sql_statements):
    deal = await create_opportunity(org.seller)
    for n in range(6):
        await plan(org.seller, subject=f"Call {n}", startsAt=at(n), opportunityId=deal["id"])
        await org.manager.api.data(COMMENT, record=deal["id"], body=f"Note {n}")
        await org.seller.api.data(UPDATE_OPPORTUNITY, input={"id": deal["id"], "name": f"D{n}"})
    counts = []
    for size in (2, 15):
        with sql_statements() as seen:
            page = await timeline(org.seller, deal["id"], first=size)
        assert len(page["edges"]) == size
        counts.append(len(seen))
    assert counts[0] == counts[1], counts


async def test_lifecycle_entries_do_not_name_private_records(org):
    contact = await create_contact(org.seller)
    secret = await create_opportunity(
        org.seller, name="Project Bluebird", contactId=contact["id"], visibility="PRIVATE"
    )
    await plan(org.seller, subject="Bluebird pricing", opportunityId=secret["id"])
    page = await timeline(org.outsider, contact["id"])
    moves = [edge["node"] for edge in page["edges"] if edge["kind"] == "LIFECYCLE"]
    assert moves, "creating the opportunity moved the contact"
    history = await org.outsider.api.data(
        "query($id: ID!) { node(id: $id) { ... on Contact { lifecycleHistory(first: 10) {"
        " nodes { reason } } } } }",
        id=contact["id"],
    )
    reasons = [n["reason"] for n in history["node"]["lifecycleHistory"]["nodes"]]
    assert reasons and all("Bluebird" not in reason for reason in reasons), reasons


BOTH_KINDS = """query($id: ID!) { node(id: $id) { ... on Deal { timeline(first: 20) { edges {
  node { ... on Activity { activityKind } ... on Event { eventKind } }
} } } } }"""
OLD_KINDS = """query($id: ID!) { node(id: $id) { ... on Deal { timeline(first: 20) { edges {
  node { ... on Activity { kind } ... on Event { kind } }
} } } } }"""


async def test_a_timeline_asks_the_kind_of_activities_and_events_at_once(org):
    deal = await create_opportunity(org.seller)
    await plan(org.seller, opportunityId=deal["id"])
    edges = (await org.seller.api.data(BOTH_KINDS, id=deal["id"]))["node"]["timeline"]["edges"]
    kinds = [edge["node"] for edge in edges]
    assert {"activityKind": "CALL"} in kinds and {"eventKind": "CREATED"} in kinds
    # The deprecated `kind`s still answer alone, but not side by side (their enums differ).
    error = await org.seller.api.error(OLD_KINDS, id=deal["id"])
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    old = """query($id: ID!) { node(id: $id) { ... on Deal { timeline(first: 20) { edges {
      node { ... on Activity { kind activityKind } } } } } } }"""
    edges = (await org.seller.api.data(old, id=deal["id"]))["node"]["timeline"]["edges"]
    assert {"kind": "CALL", "activityKind": "CALL"} in [edge["node"] for edge in edges]
