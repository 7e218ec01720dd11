"""Keyset paging of the top-level lists: every order walked both ways, ties included, and
pageInfo and totalCount."""

from __future__ import annotations

import uuid
from decimal import Decimal
from functools import partial
from typing import Any

from tests.helpers import (
    DELETE,
    PASSWORD,
    UPDATE,
    Api,
    Org,
    create_account,
    create_contact,
    create_lead,
    create_opportunity,
)
from tests.paging import (
    ACCOUNTS,
    CONTACTS,
    LEADS,
    OLDEST_FIRST,
    OPPORTUNITIES,
    USERS,
    all_nodes,
    field_of,
    ids,
    page,
    time_of,
    walk,
)
from tests.test_deals import STAGES

CREATE_USER = """
mutation($input: CreateUserInput!) { createUser(input: $input) { id fullName email } }"""


def ranked(nodes: list[dict[str, Any]], key: Any) -> list[str]:
    """Ids sorted by `key`, ties by creation (the order of `nodes`), as the API sorts ASC."""
    order = sorted(range(len(nodes)), key=lambda i: (key(nodes[i]), i))
    return [nodes[i]["id"] for i in order]


def has_ties(nodes: list[dict[str, Any]], key: Any) -> bool:
    values = [key(node) for node in nodes]
    return len(set(values)) < len(values)


def by(name: str) -> Any:
    return lambda node: node[name]


async def check_orders(
    api: Api, query: str, created: list[str], keys: dict[str, Any], **variables: Any
) -> None:
    """Walk every order, both directions, forwards and backwards, by pages of 1, 2 and 3."""
    field = field_of(query)
    conn = await page(api, query, field, first=100, orderBy=OLDEST_FIRST, **variables)
    nodes = [edge["node"] for edge in conn["edges"]]
    assert [node["id"] for node in nodes] == created
    for name, key in {"CREATED_AT": lambda node: 0, **keys}.items():
        expected = ranked(nodes, key)
        for direction, rows in (("ASC", expected), ("DESC", expected[::-1])):
            order = {"field": name, "direction": direction}
            for size in (1, 2, 3):
                for backward in (False, True):
                    seen = await walk(
                        api, query, field, size=size, backward=backward, orderBy=order, **variables
                    )
                    assert seen == rows, (order, size, "backward" if backward else "forward")


# Paging in every order, ties included --------------------------------------------------------


async def test_accounts_page_in_every_order(org: Org) -> None:
    admin = org.admin
    names = ("Delta", "Alpha", "Delta", "Bravo", "Alpha")
    created = [(await create_account(admin, name=name))["id"] for name in names]
    for index in (1, 0):  # move two accounts to the end of the UPDATED_AT order
        await admin.api.data(UPDATE["Account"], input={"id": created[index], "industry": "Retail"})
    nodes = await all_nodes(admin.api, ACCOUNTS)
    assert ranked(nodes, time_of)[-2:] == [created[1], created[0]]
    await check_orders(admin.api, ACCOUNTS, created, {"UPDATED_AT": time_of, "NAME": by("name")})
    # Without orderBy: newest first.
    assert await walk(admin.api, ACCOUNTS, "accounts") == created[::-1]
    assert await walk(admin.api, ACCOUNTS, "accounts", backward=True) == created[::-1]


async def test_contacts_page_in_every_order(org: Org) -> None:
    admin = org.admin
    names = ("Moreau", "Dubois", "Moreau", "Martin", "Dubois")
    created = [(await create_contact(admin, lastName=name))["id"] for name in names]
    for index in (3, 0):
        await admin.api.data(UPDATE["Contact"], input={"id": created[index], "phone": "+33 1"})
    keys = {"UPDATED_AT": time_of, "LAST_NAME": by("lastName")}
    await check_orders(admin.api, CONTACTS, created, keys)
    assert await walk(admin.api, CONTACTS, "contacts", size=3) == created[::-1]


async def test_leads_page_in_every_order_with_ties_on_the_update_time(org: Org) -> None:
    admin = org.admin
    shared = await create_contact(admin)
    titles = ("Renewal", "Audit", "Renewal", "Expansion", "Audit", "Renewal")
    created = [
        (await create_lead(admin, title=title, contactId=shared["id"] if i % 2 else None))["id"]
        for i, title in enumerate(titles)
    ]
    await admin.api.data(UPDATE["Lead"], input={"id": created[4], "source": "Fair"})
    # Deleting the primary contact clears it on three leads at once: one update time for all.
    await admin.api.data(DELETE["Contact"], id=shared["id"])
    nodes = await all_nodes(admin.api, LEADS)
    assert has_ties(nodes, time_of) and has_ties(nodes, by("title"))
    await check_orders(admin.api, LEADS, created, {"UPDATED_AT": time_of, "TITLE": by("title")})


async def test_opportunities_page_in_every_order_with_ties(org: Org) -> None:
    admin = org.admin
    account = await create_account(admin)
    shared = await create_contact(admin)
    rows = [
        ("Omega", "500.00", "2027-05-01", None),
        ("Gamma", "1200.50", "2027-01-15", shared["id"]),
        ("Omega", "500.00", "2026-11-30", shared["id"]),
        ("Beta", "99.99", "2027-01-15", None),
        ("Gamma", "500.00", "2027-05-01", shared["id"]),
        ("Alpha", "1200.50", "2027-01-15", None),
    ]
    created = []
    for name, amount, day, contact in rows:
        values = {"name": name, "amount": amount, "expectedCloseDate": day, "contactId": contact}
        created.append((await create_opportunity(admin, accountId=account["id"], **values))["id"])
    await admin.api.data(DELETE["Contact"], id=shared["id"])
    nodes = await all_nodes(admin.api, OPPORTUNITIES)
    keys = {
        "UPDATED_AT": time_of,
        "NAME": by("name"),
        "AMOUNT": lambda node: Decimal(node["amount"]),
        "EXPECTED_CLOSE_DATE": by("expectedCloseDate"),
    }
    assert all(has_ties(nodes, key) for key in keys.values())
    # Amounts sort as numbers, not as text ("99.99" < "500.00" < "1200.50").
    assert ranked(nodes, keys["AMOUNT"])[0] == created[3]
    await check_orders(admin.api, OPPORTUNITIES, created, keys)


async def test_opportunities_page_by_stage_probability_and_owner_with_ties(org: Org) -> None:
    admin = org.admin
    account = await create_account(admin)
    stages = {s["name"]: s["id"] for s in (await admin.api.data(STAGES))["pipelineStages"]}
    rows = [  # stage, probability override, owner
        ("Proposal", None, org.seller),
        ("Qualification", 50, org.manager),
        ("Proposal", 10, org.seller),
        ("Negotiation", None, org.admin),
        ("Qualification", None, org.manager),
        ("Proposal", 75, org.teammate),
    ]
    created = []
    for stage, probability, owner in rows:
        values = {"stageId": stages[stage], "probability": probability, "ownerId": owner.id}
        created.append((await create_opportunity(admin, accountId=account["id"], **values))["id"])
    nodes = await all_nodes(admin.api, OPPORTUNITIES)
    keys = {
        "STAGE": lambda node: node["stage"]["position"],
        "PROBABILITY": by("probability"),
        "OWNER_NAME": lambda node: node["owner"]["fullName"],
    }
    assert all(has_ties(nodes, key) for key in keys.values())
    assert ranked(nodes, keys["STAGE"])[:2] == [created[1], created[4]]  # by position, not name
    await check_orders(admin.api, OPPORTUNITIES, created, keys)


async def test_leads_page_by_owner_name(org: Org) -> None:
    owners = (org.seller, org.manager, org.seller, org.admin)
    created = [(await create_lead(org.admin, ownerId=owner.id))["id"] for owner in owners]
    keys = {"OWNER_NAME": lambda node: node["owner"]["fullName"]}
    await check_orders(org.admin.api, LEADS, created, keys)


async def test_users_page_in_every_order(org: Org) -> None:
    admin = org.admin
    token = uuid.uuid4().hex[:8]
    created = []
    for letter, name in (("c", "Quill Bravo"), ("a", "Quill Alpha"), ("b", "Quill Bravo")):
        email = f"quill{letter}{token}@example.com"
        user = {"email": email, "fullName": name, "password": PASSWORD}
        created.append((await admin.api.data(CREATE_USER, input=user))["createUser"]["id"])
    keys = {"NAME": by("fullName"), "EMAIL": by("email")}
    await check_orders(admin.api, USERS, created, keys, filter={"search": "QUILL"})
    # Without orderBy users come oldest first, the organization's first admin leading.
    everyone = [org.admin.id, org.manager.id, org.seller.id, org.teammate.id, org.outsider.id]
    for backward in (False, True):
        seen = await walk(org.seller.api, USERS, "users", size=3, backward=backward)
        assert seen == [*everyone, *created]


# pageInfo and totalCount ---------------------------------------------------------------------


async def test_page_info_and_total_count(org: Org) -> None:
    api = org.admin.api
    industries = ["Retail", "Energy", "Retail", "Retail", "Energy"]
    made = [(await create_account(org.admin, industry=name))["id"] for name in industries]
    accounts = partial(page, api, ACCOUNTS, "accounts", orderBy=OLDEST_FIRST)
    retail = {"industry": "Retail"}

    one = await accounts(first=2, filter=retail)
    assert ids(one) == [made[0], made[2]]
    assert one["totalCount"] == 3
    assert one["pageInfo"] == {
        "hasNextPage": True,
        "hasPreviousPage": False,
        "startCursor": one["edges"][0]["cursor"],
        "endCursor": one["edges"][1]["cursor"],
    }
    two = await accounts(first=2, after=one["pageInfo"]["endCursor"], filter=retail)
    assert ids(two) == [made[3]]
    assert two["totalCount"] == 3  # the filtered rows of all pages, not of this page
    assert (two["pageInfo"]["hasNextPage"], two["pageInfo"]["hasPreviousPage"]) == (False, True)

    # An exactly full last page says there is nothing after it.
    full = await accounts(first=3, filter=retail)
    assert len(full["edges"]) == 3 and full["pageInfo"]["hasNextPage"] is False

    # last without before: the end of the list.
    tail = await accounts(last=2)
    assert ids(tail) == made[3:] and tail["totalCount"] == 5
    assert (tail["pageInfo"]["hasPreviousPage"], tail["pageInfo"]["hasNextPage"]) == (True, False)
    back = await accounts(last=5, before=tail["pageInfo"]["startCursor"])
    assert ids(back) == made[:3]
    assert (back["pageInfo"]["hasPreviousPage"], back["pageInfo"]["hasNextPage"]) == (False, True)

    # An empty page has no cursors; first: 0 still says whether rows follow.
    none = await accounts(first=0)
    assert none["edges"] == [] and none["totalCount"] == 5
    assert none["pageInfo"]["startCursor"] is None and none["pageInfo"]["endCursor"] is None
    assert none["pageInfo"]["hasNextPage"] is True
    assert await accounts(first=5, filter={"industry": "Mining"}) == {
        "totalCount": 0,
        "pageInfo": {
            "hasNextPage": False,
            "hasPreviousPage": False,
            "startCursor": None,
            "endCursor": None,
        },
        "edges": [],
        "nodes": [],
    }
