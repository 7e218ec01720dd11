"""Every read path against every role, for each read rule (resolvers/access.py).

The scenario: a PRIVATE opportunity owned by a seller, followed by another seller, with a
comment, an activity, a line item and its history, on an account everyone reads. The deals'
rule says who reads it: admins, its owner, the owner's managers up the chain and its followers;
not a manager outside the chain, another seller, or anyone of another organization. Each path
that can show the deal, or what belongs to it, is asked as each of those roles, and must agree
with the rule: node lookups, lists and their counts, the relations that list it from another
record, the records it owns, timelines, its history, live events (the hub's rule in memory),
notifications and the change feed. What the organization reads (the account) is read by every
member and by no one else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from tests.helpers import (
    Api,
    GraphQLFailed,
    Member,
    Org,
    create_account,
    create_contact,
    create_opportunity,
    wait_for_subscriptions,
)
from tests.test_activities import PLAN
from tests.test_deals import ADD_FOLLOWER, COMMENT, UPDATE_OPPORTUNITY
from tests.test_products import ADD, CREATE
from tests.ws import OperationError, live_client

ROLES = (
    "admin",
    "manager in the chain",
    "manager out of the chain",
    "owner",
    "follower",
    "other seller",
    "other organization",
)
READERS = {"admin", "manager in the chain", "owner", "follower"}

NODE = "query($id: ID!) { node(id: $id) { id } }"
NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { id } }"
OPPORTUNITIES = """query($search: String!) {
  opportunities(first: 10, filter: {search: $search}) { totalCount nodes { id } }
}"""
ACCOUNT_DEALS = """query($id: ID!) { node(id: $id) { ... on Account {
  opportunities(first: 10) { totalCount nodes { id } }
} } }"""
ACCOUNT_TIMELINE = """query($id: ID!) { node(id: $id) { ... on Account {
  timeline(first: 50) { edges { node {
    ... on Comment { id } ... on Activity { id } ... on Event { id }
  } } }
} } }"""
CONTACT_DEALS = """query($search: String!) {
  opportunities(first: 10, filter: {search: $search}) { nodes { contact { id } } }
}"""
BOARD = """query($search: String!) {
  opportunityStageSummary(filter: {search: $search}) { count }
}"""
HISTORY = """query($id: ID!) { node(id: $id) { ... on Opportunity {
  history(first: 20) { edges { node { id } } }
} } }"""
NOTIFICATIONS = "{ notifications(first: 50) { nodes { event { recordId } } } }"
CHANGES = """query($since: String) { changes(since: $since, first: 100) {
  nodes { recordType recordId }
} }"""
COMMENT_RECORD = "query($id: ID!) { node(id: $id) { ... on Comment { record { id } } } }"
ACTIVITY_DEAL = "query($id: ID!) { node(id: $id) { ... on Activity { deal { id } } } }"
RECORD_EVENTS = """subscription($id: ID!) {
  recordEvents(recordId: $id) { kind changes }
}"""


@dataclass
class Scenario:
    org: Org
    members: dict[str, Member]
    account: str
    deal: str
    name: str
    comment: str
    activity: str
    line_item: str
    event: str


async def scenario(org: Org, other_org: Org) -> Scenario:
    outside_manager = await org.add_user("SALES_MANAGER")
    account = (await create_account(org.seller))["id"]
    contact = (await create_contact(org.seller))["id"]
    name = f"Private deal {account[-6:]}"
    deal = (
        await create_opportunity(
            org.seller, accountId=account, name=name, contactId=contact, visibility="PRIVATE"
        )
    )["id"]
    await org.seller.api.data(ADD_FOLLOWER, record=deal, user=org.outsider.id)
    comment = (await org.seller.api.data(COMMENT, record=deal, body="Secret"))["addComment"]["id"]
    activity = (
        await org.seller.api.data(
            PLAN,
            input={
                "kind": "CALL",
                "subject": "Secret call",
                "dueDate": "2027-01-15",
                "opportunityId": deal,
            },
        )
    )["planActivity"]["id"]
    product = (
        await org.admin.api.data(
            CREATE,
            input={
                "name": "Widget",
                "code": f"W{account[-6:]}",
                "unitPrice": "10.00",
                "currency": "EUR",
            },
        )
    )["createProduct"]["id"]
    line_item = (
        await org.seller.api.data(ADD, input={"opportunityId": deal, "productId": product})
    )["addLineItem"]["lineItem"]["id"]
    history = (await org.seller.api.data(HISTORY, id=deal))["node"]["history"]["edges"]
    members = {
        "admin": org.admin,
        "manager in the chain": org.manager,
        "manager out of the chain": outside_manager,
        "owner": org.seller,
        "follower": org.outsider,
        "other seller": org.teammate,
        "other organization": other_org.admin,
    }
    return Scenario(
        org,
        members,
        account,
        deal,
        name,
        comment,
        activity,
        line_item,
        history[0]["node"]["id"],
    )


async def shows(api: Api, query: str, **variables: Any) -> dict[str, Any] | None:
    """The data, or None when the answer is NOT_FOUND (the record out of reach)."""
    body = await api.post(query, variables)
    errors = body.get("errors") or []
    if any(error["extensions"]["code"] == "NOT_FOUND" for error in errors):
        return None
    if errors:
        raise GraphQLFailed(errors)
    return body["data"]


Path = Callable[[Scenario, Api], Awaitable[bool]]


async def by_node(s: Scenario, api: Api) -> bool:
    return await shows(api, NODE, id=s.deal) is not None


async def by_nodes(s: Scenario, api: Api) -> bool:
    body = await api.post(NODES, {"ids": [s.deal]})
    return body["data"]["nodes"][0] is not None


async def in_list(s: Scenario, api: Api) -> bool:
    page = (await api.data(OPPORTUNITIES, search=s.name))["opportunities"]
    listed = [node["id"] for node in page["nodes"]] == [s.deal]
    assert page["totalCount"] == (1 if listed else 0), "the count follows the list"
    return listed


async def on_the_board(s: Scenario, api: Api) -> bool:
    columns = (await api.data(BOARD, search=s.name))["opportunityStageSummary"]
    counted = sum(column["count"] for column in columns)
    assert counted in (0, 1)
    return counted == 1


async def from_account(s: Scenario, api: Api) -> bool:
    data = await shows(api, ACCOUNT_DEALS, id=s.account)
    if data is None:  # another organization does not read the account either
        return False
    page = data["node"]["opportunities"]
    listed = s.deal in [node["id"] for node in page["nodes"]]
    assert page["totalCount"] == (1 if listed else 0)
    return listed


async def its_comment(s: Scenario, api: Api) -> bool:
    found = await shows(api, COMMENT_RECORD, id=s.comment)
    return found is not None and found["node"]["record"]["id"] == s.deal


async def its_activity(s: Scenario, api: Api) -> bool:
    found = await shows(api, ACTIVITY_DEAL, id=s.activity)
    return found is not None and found["node"]["deal"]["id"] == s.deal


async def its_line_item(s: Scenario, api: Api) -> bool:
    return await shows(api, NODE, id=s.line_item) is not None


async def its_event(s: Scenario, api: Api) -> bool:
    return await shows(api, NODE, id=s.event) is not None


async def its_history(s: Scenario, api: Api) -> bool:
    found = await shows(api, HISTORY, id=s.deal)
    return found is not None and s.event in [
        edge["node"]["id"] for edge in found["node"]["history"]["edges"]
    ]


async def on_the_account_timeline(s: Scenario, api: Api) -> bool:
    found = await shows(api, ACCOUNT_TIMELINE, id=s.account)
    if found is None:
        return False
    seen = {edge["node"]["id"] for edge in found["node"]["timeline"]["edges"] if edge["node"]}
    belonging = {s.comment, s.activity, s.event}
    assert not seen & belonging or belonging <= seen, "all of the deal's entries, or none"
    return belonging <= seen


PATHS: dict[str, Path] = {
    "node": by_node,
    "nodes": by_nodes,
    "list and count": in_list,
    "the pipeline board's figures": on_the_board,
    "a relation listing it (account.opportunities)": from_account,
    "its comment (node, record)": its_comment,
    "its activity (node, deal)": its_activity,
    "its line item (node)": its_line_item,
    "its event (node)": its_event,
    "its history": its_history,
    "the account's timeline": on_the_account_timeline,
}


async def test_every_read_path_follows_the_deals_rule_for_every_role(org, other_org):
    s = await scenario(org, other_org)
    found = {
        (path, role): await ask(s, s.members[role].api)
        for path, ask in PATHS.items()
        for role in ROLES
    }
    wrong = [
        f"{path}: {role} {'reads' if seen else 'does not read'} it"
        for (path, role), seen in found.items()
        if seen != (role in READERS)
    ]
    assert not wrong, "\n".join(wrong)


async def test_the_organizations_records_are_read_by_every_member_and_no_one_else(org, other_org):
    s = await scenario(org, other_org)
    for role in ROLES:
        expected = role != "other organization"
        assert (await shows(s.members[role].api, NODE, id=s.account) is not None) == expected
        listed = await shows(s.members[role].api, CONTACT_DEALS, search=s.name)
        # The deal's primary contact is the organization's: it shows wherever the deal does.
        contacts = [
            node["contact"] for node in (listed or {}).get("opportunities", {}).get("nodes", [])
        ]
        assert all(contact is not None for contact in contacts)


async def test_live_events_follow_the_deals_rule_for_every_role(live_server, http, org, other_org):
    """Everyone subscribes while the deal is the organization's; the owner makes it private
    and comments: the hub's rule, in memory, decides who hears of the comment."""
    s = await scenario(org, other_org)
    public = {"id": s.deal, "visibility": "ORGANIZATION"}
    await org.seller.api.data(UPDATE_OPPORTUNITY, input=public)
    before = await wait_for_subscriptions(http, 0)
    async with AsyncExitStack() as stack:
        feeds: dict[str, Any] = {}
        for role in ROLES:
            client = await stack.enter_async_context(
                live_client(live_server.base_url, s.members[role].api.token)
            )
            feeds[role] = await client.subscribe(RECORD_EVENTS, {"id": s.deal})
        # Everyone but the other organization (NOT_FOUND at subscribe, its feed's error).
        await wait_for_subscriptions(http, before + len(ROLES) - 1)
        await org.seller.api.data(UPDATE_OPPORTUNITY, input={**public, "visibility": "PRIVATE"})
        await org.seller.api.data(COMMENT, record=s.deal, body="Now private")

        async def hears(role: str) -> bool:
            feed = feeds[role]
            try:
                while True:
                    payload = await feed.next(timeout=2.0)
                    if payload["data"] is None:  # told it may no longer read the record
                        assert payload["errors"][0]["extensions"]["code"] == "RECORD_UNREADABLE"
                        return False
                    if payload["data"]["recordEvents"]["kind"] == "COMMENT_ADDED":
                        return True
            except (TimeoutError, OperationError):
                return False

        results = await asyncio.gather(*(hears(role) for role in ROLES))
    heard = dict(zip(ROLES, results, strict=True))
    wrong = [role for role in ROLES if heard[role] != (role in READERS)]
    assert not wrong, f"live: {heard}"


async def test_notifications_and_the_change_feed_follow_their_rules(org, other_org):
    s = await scenario(org, other_org)
    # Notifications are their user's: the follower was told of the owner's comment; the owner
    # (its actor) was not, nor anyone who does not follow the deal.
    told = {}
    for role in ROLES:
        nodes = (await s.members[role].api.data(NOTIFICATIONS))["notifications"]["nodes"]
        told[role] = s.deal in [node["event"]["recordId"] for node in nodes]
    assert {role for role, yes in told.items() if yes} == {"follower"}
    # The change feed is the admins' (and their keys'), and holds their organization only.
    feed = [node["recordId"] for node in (await s.org.admin.api.data(CHANGES))["changes"]["nodes"]]
    assert s.deal in feed
    other = (await s.members["other organization"].api.data(CHANGES))["changes"]["nodes"]
    assert s.deal not in [node["recordId"] for node in other]
    for role in ("manager in the chain", "owner", "follower"):
        error = await s.members[role].api.error(CHANGES)
        assert error["extensions"]["code"] == "FORBIDDEN"
