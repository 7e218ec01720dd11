"""Following, as sales teams expect it: owners and creators follow their deals, accounts and
contacts can be followed, mentions, what a removed follower keeps, and versions that follows and
comments leave alone. Through the API over HTTP and websockets."""

from __future__ import annotations

import pytest

from tests.helpers import (
    create_account,
    create_contact,
    create_lead,
    create_opportunity,
    global_id,
    wait_for_subscriptions,
)
from tests.test_deals import ADD_FOLLOWER, REMOVE_FOLLOWER
from tests.ws import live_client

CREATORS = {"lead": create_lead, "opportunity": create_opportunity}
UPDATE = {
    "lead": "mutation($input: UpdateLeadInput!) { updateLead(input: $input) { id version } }",
    "opportunity": """mutation($input: UpdateOpportunityInput!) {
  updateOpportunity(input: $input) { id version }
}""",
}
FOLLOWERS = """query($id: ID!) {
  node(id: $id) { ... on Followable { followers { id } isFollowedByViewer } }
}"""
VERSION = "query($id: ID!) { node(id: $id) { ... on Deal { version } } }"
FOLLOW = """mutation($record: ID!) {
  follow(recordId: $record) { id isFollowedByViewer followers { id } }
}"""
UNFOLLOW = """mutation($record: ID!) {
  unfollow(recordId: $record) { id isFollowedByViewer }
}"""
COMMENT = """mutation($record: ID!, $body: String!) {
  addComment(recordId: $record, body: $body) { id body }
}"""
NOTIFICATIONS = """{
  notifications(first: 50) {
    nodes {
      event {
        kind recordType recordId changes redacted actor { id } record { id }
        fieldChanges { field from to fromLabel toLabel }
        references { field id label }
        subject { id ... on Account { name } ... on Contact { firstName } }
      }
    }
  }
}"""
RECORD_EVENTS = """subscription($id: ID!) {
  recordEvents(recordId: $id) { kind recordId changes }
}"""
FOLLOWED_EVENTS = "subscription { followedEvents { kind recordId changes } }"
NOTIFICATION_ADDED = """subscription {
  notificationAdded { event { kind recordId changes actor { id } } }
}"""
UPDATE_ACCOUNT = """mutation($input: UpdateAccountInput!) { updateAccount(input: $input) { id } }"""
UPDATE_CONTACT = """mutation($input: UpdateContactInput!) { updateContact(input: $input) { id } }"""
DELETE_ACCOUNT = "mutation($id: ID!) { deleteAccount(id: $id) { id } }"
NODE = "query($id: ID!) { node(id: $id) { id } }"
HISTORY = """query($id: ID!) {
  node(id: $id) { ... on Deal { history(first: 5) { nodes { kind changes } } } }
}"""
SET_PRIMARY = """mutation($record: ID!, $contact: ID, $keep: Boolean! = true) {
  setPrimaryContact(recordId: $record, contactId: $contact, keepPrevious: $keep) {
    id version contact { id } contactRole participants { role contact { id } }
  }
}"""
ADD_PARTICIPANT = """mutation($input: AddParticipantInput!) {
  addParticipant(input: $input) { id version }
}"""
UPDATE_PARTICIPANT = """mutation($record: ID!, $contact: ID!, $role: String) {
  updateParticipant(recordId: $record, contactId: $contact, role: $role) {
    id version contactRole participants { role contact { id } }
  }
}"""


def mention(member, name: str = "Someone") -> str:
    return f"@[{name}]({member.id})"


async def followers(member, record_id: str) -> list[str]:
    node = (await member.api.data(FOLLOWERS, id=record_id))["node"]
    return [user["id"] for user in node["followers"]]


async def notified(member) -> list[dict]:
    return [n["event"] for n in (await member.api.data(NOTIFICATIONS))["notifications"]["nodes"]]


# Owners and creators follow ----------------------------------------------------------------


@pytest.mark.parametrize("kind", CREATORS)
async def test_the_owner_and_the_creator_follow_and_a_new_owner_too(org, kind):
    create = CREATORS[kind]
    own = await create(org.seller)
    assert await followers(org.seller, own["id"]) == [org.seller.id]
    # A manager creating a record for a seller: both follow it.
    given = await create(org.manager, ownerId=org.seller.id)
    assert set(await followers(org.seller, given["id"])) == {org.seller.id, org.manager.id}
    # Reassigned: the new owner follows (and is told); the previous one still does.
    await org.manager.api.data(UPDATE[kind], input={"id": own["id"], "ownerId": org.teammate.id})
    assert set(await followers(org.manager, own["id"])) == {org.seller.id, org.teammate.id}
    assert [event["kind"] for event in await notified(org.teammate)] == ["UPDATED"]
    # The owner is told of a manager's comment, never of their own.
    await org.manager.api.data(COMMENT, record=given["id"], body="Call them back")
    await org.seller.api.data(COMMENT, record=given["id"], body="Done")
    seller = [e for e in await notified(org.seller) if e["recordId"] == given["id"]]
    # (Told of its creation too: the seller followed it from the start.)
    assert [(e["kind"], e["changes"].get("body")) for e in seller] == [
        ("COMMENT_ADDED", "Call them back"),
        ("CREATED", None),
    ]
    assert [e["changes"]["body"] for e in await notified(org.manager)] == ["Done"]


async def test_the_owner_hears_a_managers_comment_live(live_server, http, org):
    deal = await create_opportunity(org.seller)
    async with live_client(live_server.base_url, org.seller.api.token) as client:
        before = await wait_for_subscriptions(http, 0)
        feed = await client.subscribe(NOTIFICATION_ADDED)
        followed = await client.subscribe(FOLLOWED_EVENTS)
        await wait_for_subscriptions(http, before + 2)
        await org.manager.api.data(COMMENT, record=deal["id"], body="Good work")
        got = (await feed.next())["data"]["notificationAdded"]["event"]
        assert (got["kind"], got["recordId"], got["actor"]) == (
            "COMMENT_ADDED",
            deal["id"],
            {"id": org.manager.id},
        )
        assert (await followed.next())["data"]["followedEvents"]["changes"]["body"] == "Good work"


# Accounts and contacts ---------------------------------------------------------------------


async def test_accounts_and_contacts_are_followed_by_their_readers(org, other_org):
    account = await create_account(org.seller)
    contact = await create_contact(org.seller)
    for record in (account["id"], contact["id"]):
        for member in (org.admin, org.manager, org.seller, org.teammate, org.outsider):
            followed = (await member.api.data(FOLLOW, record=record))["follow"]
            assert followed["isFollowedByViewer"] is True
        assert len(followed["followers"]) == 5
        # Another organization's member: nothing to follow, nothing learnt.
        assert await other_org.seller.api.error_code(FOLLOW, record=record) == "NOT_FOUND"
        assert await other_org.seller.api.error_code(UNFOLLOW, record=record) == "NOT_FOUND"
        assert await other_org.seller.api.error_code(NODE, id=record) == "NOT_FOUND"
        unfollowed = (await org.teammate.api.data(UNFOLLOW, record=record))["unfollow"]
        assert unfollowed["isFollowedByViewer"] is False
        assert org.teammate.id not in await followers(org.admin, record)
    # Following grants nothing: a deleted account is out of reach, followed or not.
    await org.seller.api.data(DELETE_ACCOUNT, id=account["id"])
    assert await org.outsider.api.error_code(NODE, id=account["id"]) == "NOT_FOUND"
    assert await org.outsider.api.error_code(FOLLOW, record=account["id"]) == "NOT_FOUND"
    # Other ids are refused by name.
    error = await org.seller.api.error(FOLLOW, record=global_id("Comment", 1))
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "recordId"}


async def test_changes_to_a_followed_account_or_contact_notify_its_followers(org):
    account = await create_account(org.seller, name="Acme")
    contact = await create_contact(org.seller, firstName="Ada")
    for record in (account["id"], contact["id"]):
        await org.teammate.api.data(FOLLOW, record=record)
    await org.seller.api.data(UPDATE_ACCOUNT, input={"id": account["id"], "city": "Lyon"})
    await org.seller.api.data(UPDATE_CONTACT, input={"id": contact["id"], "title": "CFO"})
    await org.seller.api.data(UPDATE_CONTACT, input={"id": contact["id"], "title": "CFO"})  # no-op
    events = await notified(org.teammate)
    assert [(e["kind"], e["recordType"], e["changes"]) for e in events] == [
        ("UPDATED", "Contact", {"title": {"old": None, "new": "CFO"}}),
        ("UPDATED", "Account", {"city": {"old": None, "new": "Lyon"}}),
    ]
    assert [e["subject"] for e in events] == [
        {"id": contact["id"], "firstName": "Ada"},
        {"id": account["id"], "name": "Acme"},
    ]
    assert {e["record"] for e in events} == {None}  # `record` is a deal's
    assert {e["redacted"] for e in events} == {False}
    # Who does not follow is not told.
    assert await notified(org.outsider) == []


async def test_a_followed_account_is_live(live_server, http, org):
    account = await create_account(org.seller)
    await org.outsider.api.data(FOLLOW, record=account["id"])
    async with live_client(live_server.base_url, org.outsider.api.token) as client:
        before = await wait_for_subscriptions(http, 0)
        one = await client.subscribe(RECORD_EVENTS, {"id": account["id"]})
        every = await client.subscribe(FOLLOWED_EVENTS)
        told = await client.subscribe(NOTIFICATION_ADDED)
        await wait_for_subscriptions(http, before + 3)
        await org.seller.api.data(UPDATE_ACCOUNT, input={"id": account["id"], "industry": "Rail"})
        expected = {"old": None, "new": "Rail"}
        assert (await one.next())["data"]["recordEvents"]["changes"]["industry"] == expected
        assert (await every.next())["data"]["followedEvents"]["recordId"] == account["id"]
        got = (await told.next())["data"]["notificationAdded"]["event"]
        assert (got["kind"], got["actor"]) == ("UPDATED", {"id": org.seller.id})


# A removed follower ------------------------------------------------------------------------


async def test_a_removed_follower_keeps_entries_but_not_their_contents(live_server, http, org):
    deal = await create_opportunity(org.seller, visibility="PRIVATE")
    await org.seller.api.data(ADD_FOLLOWER, record=deal["id"], user=org.outsider.id)
    async with live_client(live_server.base_url, org.outsider.api.token) as client:
        before = await wait_for_subscriptions(http, 0)
        feed = await client.subscribe(RECORD_EVENTS, {"id": deal["id"]})
        await wait_for_subscriptions(http, before + 1)
        await org.seller.api.data(COMMENT, record=deal["id"], body="Discount: 30%")
        await org.seller.api.data(UPDATE["opportunity"], input={"id": deal["id"], "amount": "9"})
        assert (await feed.next())["data"]["recordEvents"]["changes"]["body"] == "Discount: 30%"
        assert (await feed.next())["data"]["recordEvents"]["kind"] == "UPDATED"
        shown = await notified(org.outsider)
        assert shown[1]["changes"]["body"] == "Discount: 30%" and not shown[1]["redacted"]

        # The manager takes the outsider off: the subscription is told, and ends.
        await org.manager.api.data(REMOVE_FOLLOWER, record=deal["id"], user=org.outsider.id)
        ended = await feed.closed_or_completed(timeout=3.0)
        assert [payload["data"] for payload in ended.payloads] == [None]
        error = ended.payloads[0]["errors"][0]
        assert error["extensions"] == {"code": "RECORD_UNREADABLE"}
        await org.seller.api.data(COMMENT, record=deal["id"], body="After")

    # The old entries stay, their contents do not.
    events = await notified(org.outsider)
    assert [(e["kind"], e["redacted"], e["record"]) for e in events] == [
        ("UPDATED", True, None),
        ("COMMENT_ADDED", True, None),
        ("FOLLOWER_ADDED", True, None),
    ]
    assert events[0]["changes"]["amount"] == {"old": None, "new": None}
    assert events[0]["fieldChanges"] == [
        {"field": "amount", "from": None, "to": None, "fromLabel": None, "toLabel": None}
    ]
    assert events[1]["changes"] == {"commentId": None, "body": None}
    assert events[2]["references"] == [{"field": "userId", "id": None, "label": None}]
    # The owner, who still reads it, sees everything.
    history = (await org.seller.api.data(HISTORY, id=deal["id"]))["node"]["history"]["nodes"]
    assert "Discount: 30%" in [event["changes"].get("body") for event in history]
    # Computed when read: made the organization's, the deal shows again.
    await org.seller.api.data(
        UPDATE["opportunity"], input={"id": deal["id"], "visibility": "ORGANIZATION"}
    )
    events = await notified(org.outsider)
    assert events[1]["changes"]["body"] == "Discount: 30%" and not events[1]["redacted"]
    (named,) = events[2]["references"]
    assert (named["field"], named["id"]) == ("userId", org.outsider.id) and named["label"]


async def test_a_follower_who_unfollows_a_private_deal_is_told_live(live_server, http, org):
    deal = await create_lead(org.seller, visibility="PRIVATE")
    await org.seller.api.data(ADD_FOLLOWER, record=deal["id"], user=org.outsider.id)
    async with live_client(live_server.base_url, org.outsider.api.token) as client:
        before = await wait_for_subscriptions(http, 0)
        feed = await client.subscribe(RECORD_EVENTS, {"id": deal["id"]})
        await wait_for_subscriptions(http, before + 1)
        await org.outsider.api.data(UNFOLLOW, record=deal["id"])
        ended = await feed.closed_or_completed(timeout=3.0)
        code = ended.payloads[-1]["errors"][0]["extensions"]["code"]
        assert code == "RECORD_UNREADABLE"
    assert await org.outsider.api.error_code(NODE, id=deal["id"]) == "NOT_FOUND"
    # Readers who keep reading stay subscribed: the manager hears the next change.
    async with live_client(live_server.base_url, org.manager.api.token) as client:
        before = await wait_for_subscriptions(http, 0)
        feed = await client.subscribe(RECORD_EVENTS, {"id": deal["id"]})
        await wait_for_subscriptions(http, before + 1)
        await org.seller.api.data(REMOVE_FOLLOWER, record=deal["id"], user=org.seller.id)
        await org.seller.api.data(COMMENT, record=deal["id"], body="Still mine")
        kinds = [(await feed.next())["data"]["recordEvents"]["kind"] for _ in range(2)]
        assert kinds == ["FOLLOWER_REMOVED", "COMMENT_ADDED"]


# Mentions ----------------------------------------------------------------------------------


async def test_a_mention_notifies_a_reader_only(live_server, http, org, other_org):
    public = await create_opportunity(org.seller)
    private = await create_opportunity(org.seller, visibility="PRIVATE")
    async with live_client(live_server.base_url, org.teammate.api.token) as client:
        before = await wait_for_subscriptions(http, 0)
        feed = await client.subscribe(NOTIFICATION_ADDED)
        await wait_for_subscriptions(http, before + 1)
        body = f"{mention(org.teammate, 'Tea Mate')} and {mention(org.admin)}, see this"
        await org.seller.api.data(COMMENT, record=public["id"], body=body)
        got = (await feed.next())["data"]["notificationAdded"]["event"]
        assert (got["kind"], got["recordId"], got["changes"]["body"]) == (
            "COMMENT_ADDED",
            public["id"],
            body,
        )
        # The teammate may not read the seller's private deal: no word of it, live or later.
        secret = f"{mention(org.teammate)} {mention(other_org.seller)} @[Bad](bm9wZQ==) secret"
        saved = await org.seller.api.data(COMMENT, record=private["id"], body=secret)
        assert saved["addComment"]["body"] == secret
        await feed.expect_nothing(0.5)
    assert [e["recordId"] for e in await notified(org.teammate)] == [public["id"]]
    assert await notified(other_org.seller) == []
    assert [e["recordId"] for e in await notified(org.admin)] == [public["id"]]
    # The manager reads the private deal: mentioned, told (not following it).
    await org.seller.api.data(COMMENT, record=private["id"], body=f"{mention(org.manager)} ok?")
    assert [e["recordId"] for e in await notified(org.manager)] == [private["id"]]
    # A plain @word, or a mention of oneself, tells no one more.
    await org.seller.api.data(COMMENT, record=public["id"], body=f"@teammate {mention(org.seller)}")
    assert len(await notified(org.teammate)) == 1 and await notified(org.seller) == []


# Versions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CREATORS)
async def test_follows_and_comments_leave_the_version_alone(org, kind):
    record = await CREATORS[kind](org.seller)
    version = record["version"]
    await org.teammate.api.data(FOLLOW, record=record["id"])
    await org.teammate.api.data(COMMENT, record=record["id"], body="Interesting")
    await org.seller.api.data(ADD_FOLLOWER, record=record["id"], user=org.outsider.id)
    await org.teammate.api.data(UNFOLLOW, record=record["id"])
    assert (await org.seller.api.data(VERSION, id=record["id"]))["node"]["version"] == version
    # The owner's save with the version read before all that succeeds.
    title = {"lead": "title", "opportunity": "name"}[kind]
    saved = await org.seller.api.data(
        UPDATE[kind], input={"id": record["id"], title: "Renamed", "expectedVersion": version}
    )
    assert next(iter(saved.values()))["version"] == version + 1
    # Roles still move it: a participant added makes an old version stale.
    contact = await create_contact(org.seller)
    await org.seller.api.data(
        ADD_PARTICIPANT, input={"recordId": record["id"], "contactId": contact["id"]}
    )
    stale = {"id": record["id"], title: "Again", "expectedVersion": version + 1}
    assert await org.seller.api.error_code(UPDATE[kind], input=stale) == "CONFLICT"


# Roles -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CREATORS)
async def test_a_participants_role_is_edited_in_one_event(org, other_org, kind):
    record = await CREATORS[kind](org.seller)
    cfo = await create_contact(org.seller)
    await org.seller.api.data(
        ADD_PARTICIPANT, input={"recordId": record["id"], "contactId": cfo["id"], "role": "CFO"}
    )
    version = (await org.seller.api.data(VERSION, id=record["id"]))["node"]["version"]
    changed = await org.seller.api.data(
        UPDATE_PARTICIPANT, record=record["id"], contact=cfo["id"], role=" Buyer "
    )
    deal = changed["updateParticipant"]
    assert deal["participants"] == [{"role": "Buyer", "contact": {"id": cfo["id"]}}]
    assert deal["version"] == version + 1
    history = (await org.seller.api.data(HISTORY, id=record["id"]))["node"]["history"]["nodes"]
    assert history[0] == {
        "kind": "PARTICIPANT_UPDATED",
        "changes": {"contactId": cfo["id"], "role": {"old": "CFO", "new": "Buyer"}},
    }
    assert history[1]["kind"] == "PARTICIPANT_ADDED"
    # The same role again: nothing happens.
    again = await org.seller.api.data(
        UPDATE_PARTICIPANT, record=record["id"], contact=cfo["id"], role="Buyer"
    )
    assert again["updateParticipant"]["version"] == version + 1
    # Not a participant: said so, by field.
    stranger = await create_contact(org.seller)
    error = await org.seller.api.error(
        UPDATE_PARTICIPANT, record=record["id"], contact=stranger["id"], role="X"
    )
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "contactId"}
    # Who may: its editors (admin, manager, owner); not a follower nor another seller.
    await org.seller.api.data(ADD_FOLLOWER, record=record["id"], user=org.outsider.id)
    for member, role in ((org.admin, "A"), (org.manager, "M"), (org.seller, "S")):
        done = await member.api.data(
            UPDATE_PARTICIPANT, record=record["id"], contact=cfo["id"], role=role
        )
        assert done["updateParticipant"]["participants"][0]["role"] == role
    for member in (org.outsider, org.teammate):
        code = await member.api.error_code(
            UPDATE_PARTICIPANT, record=record["id"], contact=cfo["id"], role="Z"
        )
        assert code == "FORBIDDEN"
    code = await other_org.admin.api.error_code(
        UPDATE_PARTICIPANT, record=record["id"], contact=cfo["id"], role="Z"
    )
    assert code == "NOT_FOUND"


@pytest.mark.parametrize("kind", CREATORS)
async def test_the_primary_flag_moves_and_roles_stay(org, kind):
    record = await CREATORS[kind](org.seller)
    buyer, cfo, cto = [await create_contact(org.seller) for _ in range(3)]
    await org.seller.api.data(SET_PRIMARY, record=record["id"], contact=buyer["id"])
    await org.seller.api.data(
        UPDATE_PARTICIPANT, record=record["id"], contact=buyer["id"], role="Buyer"
    )
    for contact, role in ((cfo, "CFO"), (cto, "CTO")):
        await org.seller.api.data(
            ADD_PARTICIPANT,
            input={"recordId": record["id"], "contactId": contact["id"], "role": role},
        )
    # Promoting the CFO: it keeps its role, the buyer stays a participant with its own.
    promoted = (await org.seller.api.data(SET_PRIMARY, record=record["id"], contact=cfo["id"]))[
        "setPrimaryContact"
    ]
    assert (promoted["contact"], promoted["contactRole"]) == ({"id": cfo["id"]}, "CFO")
    assert promoted["participants"] == [
        {"role": "CTO", "contact": {"id": cto["id"]}},
        {"role": "Buyer", "contact": {"id": buyer["id"]}},
    ]
    history = (await org.seller.api.data(HISTORY, id=record["id"]))["node"]["history"]["nodes"]
    assert history[0] == {
        "kind": "PRIMARY_CONTACT_SET",
        "changes": {
            "contactId": {"old": buyer["id"], "new": cfo["id"]},
            "contactRole": {"old": "Buyer", "new": "CFO"},
            "previousKeptAsParticipant": True,
        },
    }
    # keepPrevious: false drops the previous primary contact from the deal.
    dropped = (
        await org.seller.api.data(SET_PRIMARY, record=record["id"], contact=cto["id"], keep=False)
    )["setPrimaryContact"]
    assert (dropped["contact"], dropped["contactRole"]) == ({"id": cto["id"]}, "CTO")
    assert dropped["participants"] == [{"role": "Buyer", "contact": {"id": buyer["id"]}}]
    # Clearing keeps the previous one as a participant too.
    cleared = (await org.seller.api.data(SET_PRIMARY, record=record["id"], contact=None))[
        "setPrimaryContact"
    ]
    assert (cleared["contact"], cleared["contactRole"]) == (None, None)
    assert {p["contact"]["id"]: p["role"] for p in cleared["participants"]} == {
        buyer["id"]: "Buyer",
        cto["id"]: "CTO",
    }


async def test_the_deprecated_follow_record_still_answers_a_deal(org) -> None:
    """`followRecord` keeps its old shape (a Deal, with its own fields) for the clients written
    against it; accounts and contacts go through `follow`."""
    deal = await create_opportunity(org.seller)
    followed = await org.teammate.api.data(
        "mutation($r: ID!) { followRecord(recordId: $r) { id version isFollowedByViewer } }",
        r=deal["id"],
    )
    assert followed["followRecord"]["id"] == deal["id"]
    assert followed["followRecord"]["isFollowedByViewer"] is True
    unfollowed = await org.teammate.api.data(
        "mutation($r: ID!) { unfollowRecord(recordId: $r) { version isFollowedByViewer } }",
        r=deal["id"],
    )
    assert unfollowed["unfollowRecord"] == {
        "version": followed["followRecord"]["version"], "isFollowedByViewer": False,
    }  # fmt: skip
