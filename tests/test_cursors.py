"""Cursors and page sizes: cursors survive rows inserted and deleted while paging, and a bad
page size or a foreign, broken or tampered cursor is bad input, never a server error."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tests.helpers import (
    DELETE,
    Api,
    Org,
    create_account,
    create_contact,
    create_lead,
    create_opportunity,
)
from tests.paging import (
    ACCOUNT_CHILDREN,
    ACCOUNTS,
    COMMENTS,
    LISTS,
    OLDEST_FIRST,
    OPPORTUNITIES,
    USERS,
    ids,
    page,
    walk,
)


def cursor_of(payload: Any) -> str:
    """A hand-made cursor in the API's format (url-safe base64 of JSON, unpadded)."""
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def payload_of(cursor: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))


async def expect_bad_input(api: Api, query: str, field: str | None, **variables: Any) -> None:
    error = await api.error(query, **variables)
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    if field is not None:
        assert error["extensions"].get("field") == field, error


# Keyset stability ----------------------------------------------------------------------------


async def test_cursors_survive_inserts_before_and_after_them(org: Org) -> None:
    api = org.admin.api
    by_name = {"field": "NAME", "direction": "ASC"}

    async def add(*names: str) -> dict[str, str]:
        return {name: (await create_account(org.admin, name=name))["id"] for name in names}

    original = await add("Bravo", "Delta", "Foxtrot", "Hotel")
    first = await page(api, ACCOUNTS, "accounts", first=2, orderBy=by_name)
    assert ids(first) == [original["Bravo"], original["Delta"]]
    # New rows before the cursor, on the cursor's own name (after it: a larger id), and after it.
    inserted = await add("Alpha", "Charlie", "Delta", "Echo")
    following = []
    cursor = first["pageInfo"]["endCursor"]
    while cursor:
        conn = await page(api, ACCOUNTS, "accounts", first=2, after=cursor, orderBy=by_name)
        following += ids(conn)
        cursor = conn["pageInfo"]["endCursor"] if conn["pageInfo"]["hasNextPage"] else None
    assert following == [
        inserted["Delta"], inserted["Echo"], original["Foxtrot"], original["Hotel"]
    ]  # fmt: skip

    # Backwards the same: a row inserted while paging with last/before is neither seen nor skips.
    everything = await walk(api, ACCOUNTS, "accounts", orderBy=OLDEST_FIRST)
    last = await page(api, ACCOUNTS, "accounts", last=3, orderBy=OLDEST_FIRST)
    assert ids(last) == everything[-3:]
    await add("Golf")
    before = last["pageInfo"]["startCursor"]
    earlier = await page(api, ACCOUNTS, "accounts", last=50, before=before, orderBy=OLDEST_FIRST)
    assert ids(earlier) == everything[:-3]
    assert earlier["totalCount"] == len(everything) + 1


async def test_cursors_survive_inserts_and_the_deletion_of_their_row(org: Org) -> None:
    admin = org.admin
    account = await create_account(admin)

    async def add(amount: str) -> str:
        return (await create_opportunity(admin, accountId=account["id"], amount=amount))["id"]

    original = [await add(amount) for amount in ("300.00", "100.00", "300.00", "200.00", "300.00")]
    by_amount = {"field": "AMOUNT", "direction": "DESC"}
    head = await page(admin.api, OPPORTUNITIES, "opportunities", first=2, orderBy=by_amount)
    assert ids(head) == [original[4], original[2]]  # ties on 300: the newest first when DESC
    # A tie inserted before the cursor (its larger id sorts first), rows before and after it,
    # and the cursor's own row deleted: paging goes on where it was.
    await add("300.00")
    await add("400.00")
    late = await add("150.00")
    await admin.api.data(DELETE["Opportunity"], id=original[2])
    after = head["pageInfo"]["endCursor"]
    rest = await page(
        admin.api, OPPORTUNITIES, "opportunities", first=10, after=after, orderBy=by_amount
    )
    assert ids(rest) == [original[0], original[3], late, original[1]]
    assert rest["pageInfo"]["hasNextPage"] is False


# Page size and cursor errors -----------------------------------------------------------------


@pytest.mark.parametrize("field", list(LISTS))
async def test_page_size_and_cursor_errors(org: Org, field: str) -> None:
    query, api = LISTS[field], org.admin.api
    await create_opportunity(org.admin, contactId=(await create_contact(org.admin))["id"])
    await create_lead(org.admin)
    assert len((await page(api, query, field, first=100))["edges"]) >= 1
    assert len((await page(api, query, field, last=100))["edges"]) >= 1
    for name in ("first", "last"):
        for size in (101, 10_000, -1):
            await expect_bad_input(api, query, name, **{name: size})
    await expect_bad_input(api, query, None, first=1, last=1)

    # Cursors of another order of this list, of the same shape (one value and an id) or not.
    text_order = {"accounts": "NAME", "contacts": "LAST_NAME", "leads": "TITLE"}.get(field, "NAME")
    other_order = {"users": "EMAIL"}.get(field, "UPDATED_AT")
    valid = (await page(api, query, field, first=1))["pageInfo"]["endCursor"]
    foreign = (await page(api, query, field, first=1, orderBy={"field": other_order}))["pageInfo"]
    for cursor in (valid, foreign["endCursor"]):
        order = {"field": text_order}
        await expect_bad_input(api, query, "after", first=1, after=cursor, orderBy=order)
        await expect_bad_input(api, query, "before", last=1, before=cursor, orderBy=order)
    # Garbage and tampered cursors, against the default order.
    broken = [
        "not a cursor",
        "%%%",
        valid[:-3],
        valid + "x",
        cursor_of({"ID": 1}),
        cursor_of("ID"),
        cursor_of(["ID"]),
        cursor_of(["ID", "7"]),
        cursor_of(["ID", 1, 2]),
        cursor_of(["UPDATED_AT", "yesterday", 1]),
        foreign["endCursor"],
    ]
    for cursor in broken:
        await expect_bad_input(api, query, "after", first=1, after=cursor)
        await expect_bad_input(api, query, "before", last=1, before=cursor)


async def test_cursor_values_of_the_wrong_type_are_bad_input(org: Org) -> None:
    """A hand-made cursor with a value of the wrong type is refused, never a server error."""
    api = org.admin.api
    await create_opportunity(org.admin)
    cases = [
        (OPPORTUNITIES, "AMOUNT", ["AMOUNT", "a lot", 1]),
        (OPPORTUNITIES, "AMOUNT", ["AMOUNT", 1.5, 1]),
        (OPPORTUNITIES, "AMOUNT", ["AMOUNT", None, 1]),
        (OPPORTUNITIES, "AMOUNT", ["AMOUNT", 10**30, 1]),
        (OPPORTUNITIES, "NAME", ["NAME", {"a": 1}, 1]),
        (OPPORTUNITIES, "NAME", ["NAME", ["x"], 1]),
        (OPPORTUNITIES, "EXPECTED_CLOSE_DATE", ["EXPECTED_CLOSE_DATE", "soon", 1]),
        (OPPORTUNITIES, "CREATED_AT", ["ID", 10**30]),
        (OPPORTUNITIES, "CREATED_AT", ["ID", True]),
        (ACCOUNTS, "NAME", ["NAME", 12, 1]),
        (ACCOUNTS, "UPDATED_AT", ["UPDATED_AT", 5, 1]),
        (ACCOUNTS, "UPDATED_AT", ["UPDATED_AT", "2027-01-01T00:00:00", 1]),  # no offset
        (USERS, "EMAIL", ["EMAIL", None, 1]),
    ]
    for query, order, payload in cases:
        for direction in ("ASC", "DESC"):
            variables = {"orderBy": {"field": order, "direction": direction}}
            cursor = cursor_of(payload)
            await expect_bad_input(api, query, "after", first=1, after=cursor, **variables)
            await expect_bad_input(api, query, "before", last=1, before=cursor, **variables)


async def test_an_update_time_cursor_means_an_instant_whatever_its_offset(org: Org) -> None:
    api = org.admin.api
    made = [(await create_account(org.admin))["id"] for _ in range(3)]
    by_time = {"field": "UPDATED_AT", "direction": "ASC"}
    head = await page(api, ACCOUNTS, "accounts", first=1, orderBy=by_time)
    name, time, row_id = payload_of(head["pageInfo"]["endCursor"])
    for hours in (2, -7):
        shifted = datetime.fromisoformat(time).astimezone(timezone(timedelta(hours=hours)))
        cursor = cursor_of([name, shifted.isoformat(), row_id])
        rest = await page(api, ACCOUNTS, "accounts", first=5, after=cursor, orderBy=by_time)
        assert ids(rest) == made[1:]


async def test_nested_connections_check_sizes_and_cursors(org: Org) -> None:
    api = org.admin.api
    account = await create_account(org.admin)
    lead = await create_lead(org.admin)
    for query, record in ((ACCOUNT_CHILDREN, account), (COMMENTS, lead)):
        await expect_bad_input(api, query, "first", first=101, id=record["id"])
        await expect_bad_input(api, query, "last", last=-1, id=record["id"])
        await expect_bad_input(api, query, None, first=1, last=1, id=record["id"])
        await expect_bad_input(api, query, "after", first=1, after="nope", id=record["id"])
        await expect_bad_input(api, query, "before", last=1, before="nope", id=record["id"])
