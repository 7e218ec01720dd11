"""Nested connections: an account's contacts and opportunities, and a deal's comments, paged
and filtered like the top-level lists."""

from __future__ import annotations

from typing import Any

from tests.helpers import Org, create_account, create_contact, create_lead, create_opportunity
from tests.paging import ACCOUNT_CHILDREN, COMMENTS, ids, page, walk

ACCOUNT_OPPORTUNITIES = """
query($id: ID!, $first: Int, $after: String, $last: Int, $before: String) {
  node(id: $id) {
    ... on Account {
      opportunities(first: $first, after: $after, last: $last, before: $before,
                    orderBy: {field: NAME, direction: DESC}) {
        totalCount
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
        edges { cursor node { id } }
      }
    }
  }
}"""
COMMENT = """mutation($record: ID!, $body: String!) {
  addComment(recordId: $record, body: $body) { id }
}"""


# Nested connections ---------------------------------------------------------------------------


async def test_account_contacts_and_opportunities(org: Org) -> None:
    admin = org.admin
    account = (await create_account(admin))["id"]
    elsewhere = (await create_account(admin))["id"]
    people = [
        ("Weber", "PROSPECT"),
        ("Adler", "ACTIVE_CLIENT"),
        ("Weber", "ACTIVE_CLIENT"),
        ("Klein", "PROSPECT"),
    ]
    contacts = [
        (await create_contact(admin, lastName=name, accountId=account, lifecycleStage=stage))["id"]
        for name, stage in people
    ]
    await create_contact(admin, lastName="Adler", accountId=elsewhere)
    await create_contact(admin, lastName="Adler")

    async def add(member: Any, name: str, amount: str, **values: Any) -> str:
        values = {"accountId": account, "name": name, "amount": amount, **values}
        return (await create_opportunity(member, **values))["id"]

    mine = await add(org.seller, "Mine", "10.00")
    hidden = await add(org.teammate, "Hidden", "20.00", visibility="PRIVATE")
    shown = await add(org.teammate, "Shown", "30.00")
    await add(org.seller, "Elsewhere", "5.00", accountId=elsewhere)

    by_name = {"field": "LAST_NAME", "direction": "ASC"}
    expected = [contacts[1], contacts[3], contacts[0], contacts[2]]
    for backward in (False, True):
        for size in (1, 3):
            seen = await walk(
                admin.api, ACCOUNT_CHILDREN, "node.contacts", size=size, backward=backward,
                id=account, orderBy=by_name,
            )  # fmt: skip
            assert seen == expected
    active = {"lifecycleStages": ["ACTIVE_CLIENT"]}
    data = (await admin.api.data(ACCOUNT_CHILDREN, id=account, first=10, filter=active))["node"]
    assert ids(data["contacts"]) == [contacts[2], contacts[1]]  # newest first by default
    assert data["contacts"]["totalCount"] == 2
    assert {edge["node"]["account"]["id"] for edge in data["contacts"]["edges"]} == {account}
    assert ids(data["opportunities"]) == [mine, hidden, shown]  # by amount
    assert data["opportunities"]["totalCount"] == 3
    # A seller sees only the opportunities they may read, and an accountId in the filter cannot
    # point the nested list at another account.
    as_seller = await org.seller.api.data(
        ACCOUNT_CHILDREN, id=account, first=1, opportunityFilter={"accountId": elsewhere}
    )
    assert ids(as_seller["node"]["opportunities"]) == [mine, shown]
    assert as_seller["node"]["opportunities"]["totalCount"] == 2
    for backward in (False, True):
        seen = await walk(
            org.seller.api, ACCOUNT_OPPORTUNITIES, "node.opportunities", size=1,
            backward=backward, id=account,
        )  # fmt: skip
        assert seen == [shown, mine]  # by name, descending


async def test_comments_on_a_deal_page_newest_first(org: Org) -> None:
    admin = org.admin
    for create in (create_lead, create_opportunity):
        record = (await create(admin))["id"]
        other = (await create(admin))["id"]
        comments = [
            (await admin.api.data(COMMENT, record=record, body=f"Note {n}"))["addComment"]["id"]
            for n in range(5)
        ]
        await admin.api.data(COMMENT, record=other, body="Elsewhere")
        newest_first = comments[::-1]
        for size in (1, 2, 5):
            for backward in (False, True):
                seen = await walk(
                    admin.api, COMMENTS, "node.comments", size=size, backward=backward, id=record
                )
                assert seen == newest_first
        # A comment added while paging shows neither on the next pages nor twice.
        head = await page(admin.api, COMMENTS, "node.comments", first=2, id=record)
        await admin.api.data(COMMENT, record=record, body="Late")
        after = head["pageInfo"]["endCursor"]
        rest = await page(admin.api, COMMENTS, "node.comments", first=10, after=after, id=record)
        assert ids(rest) == newest_first[2:]
        assert rest["totalCount"] == 6
