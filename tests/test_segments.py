"""Segments: filters over contacts and their accounts, compiled to SQL, saved and live."""

from __future__ import annotations

from typing import Any

from tests.helpers import Member, Org, create_account, create_contact, create_opportunity
from tests.test_forecast import stages, update
from tests.test_products import add, product

PREVIEW = """query($filter: SegmentFilter!) {
  previewSegment(filter: $filter) { count sample { id } filter }
}"""
CREATE = """mutation($input: CreateSegmentInput!) {
  createSegment(input: $input) { id name filter count owner { id } }
}"""
UPDATE = """mutation($input: UpdateSegmentInput!) {
  updateSegment(input: $input) { id name filter count }
}"""
DELETE = "mutation($id: ID!) { deleteSegment(id: $id) { id } }"
MEMBERS = """query($id: ID!, $after: String) { node(id: $id) { ... on Segment {
  count members(first: 2, after: $after) { pageInfo { hasNextPage endCursor } nodes { id } }
} } }"""


async def seed(org: Org) -> dict[str, Any]:
    """Three accounts, five contacts; wins of 1000 USD (with the CRM product), 300 USD and
    200 EUR."""
    seller, teammate = org.seller, org.teammate
    paris = await create_account(seller, industry="Software", country="France", city="Paris")
    berlin = await create_account(seller, industry="Retail", country="Germany", city="Berlin")
    munich = await create_account(seller, industry="Software", country="Germany", city="Munich")
    people = {
        "c1": await create_contact(seller, accountId=paris["id"], tags=["vip"]),
        "c2": await create_contact(seller, accountId=paris["id"], email=None),
        "c3": await create_contact(seller, accountId=berlin["id"], tags=["VIP"]),
        "c4": await create_contact(seller, accountId=munich["id"]),
        "c5": await create_contact(teammate, tags=["vip"]),  # no account
    }
    won = (await stages(seller))["Closed won"]["id"]
    crm = await product(org.admin, "CRM", "500.00")
    deal = await create_opportunity(seller, accountId=paris["id"], currency="USD")
    await add(seller, deal, crm, quantity=2)
    for account, amount, currency in ((berlin, "300.00", "USD"), (munich, "200.00", "EUR")):
        other = await create_opportunity(
            seller, accountId=account["id"], amount=amount, currency=currency
        )
        await update(seller, id=other["id"], stageId=won)
    await update(seller, id=deal["id"], stageId=won)
    return {"people": people, "crm": crm, "munich": munich}


async def selected(member: Member, filter: dict[str, Any], people: dict[str, Any]) -> set[str]:
    """The people (by name) a filter selects, through previewSegment."""
    preview = (await member.api.data(PREVIEW, filter=filter))["previewSegment"]
    names = {contact["id"]: name for name, contact in people.items()}
    found = {names.get(contact["id"], "other") for contact in preview["sample"]}
    assert preview["count"] == len(preview["sample"]) <= 10
    return found


async def test_filters_select_what_they_say(org, other_org):
    data = await seed(org)
    await seed(other_org)  # the same data elsewhere: never selected here
    people = data["people"]
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({"industries": ["software"]}, {"c1", "c2", "c4"}),
        ({"countries": ["GERMANY"], "not": {"cities": ["Munich"]}}, {"c3"}),
        ({"any": [{"tags": ["Vip"]}, {"industries": ["Retail"]}]}, {"c1", "c3", "c5"}),
        ({"not": {"industries": ["Software"]}}, {"c3", "c5"}),  # no account: not software
        ({"productIds": [data["crm"]["id"]]}, {"c1", "c2"}),
        ({"billing": {"min": "500"}}, {"c1", "c2"}),
        ({"billing": {"min": "100", "max": "500"}}, {"c3"}),
        # At most 500 USD: Berlin (300) and Munich (won only in EUR: nothing in USD).
        ({"billing": {"max": "500"}}, {"c3", "c4"}),
        ({"billing": {"min": "1", "since": "2100-01-01"}}, set()),
        ({"hasEmail": False}, {"c2"}),
        ({"all": [{"industries": ["software"]}, {"hasEmail": True}]}, {"c1", "c4"}),
        ({"ownerIds": [org.teammate.id]}, {"c5"}),
        ({"lifecycleStages": ["ACTIVE_CLIENT"], "tags": ["vip"]}, {"c1", "c3"}),  # accounts won
        ({"lifecycleStages": ["PROSPECT"], "tags": ["vip"]}, {"c5"}),
        ({}, {"c1", "c2", "c3", "c4", "c5"}),
    ]
    everyone = {"c1", "c2", "c3", "c4", "c5"}
    cases += [
        ({"any": [{}, {"hasEmail": True}]}, everyone),  # an empty alternative: everyone
        ({"all": [{}, {"hasEmail": False}]}, {"c2"}),
        ({"not": {}}, set()),
        ({"not": {"not": {"tags": ["vip"]}}}, {"c1", "c3", "c5"}),
    ]
    for filter, expected in cases:
        assert await selected(org.manager, filter, people) == expected, filter
    error = await org.seller.api.error(PREVIEW, filter={})  # sellers use saved segments
    assert error["extensions"]["code"] == "FORBIDDEN"


async def test_bad_filters_are_refused_naming_the_part_at_fault(org, other_org):
    theirs = await product(other_org.admin, "THEIRS", "1.00")
    deep: dict[str, Any] = {"tags": ["x"]}
    for _ in range(7):
        deep = {"not": deep}
    for filter, field in (
        ({"billing": {"min": "10", "max": "5"}}, "filter.billing.max"),
        ({"billing": {"min": "-1"}}, "filter.billing.min"),
        ({"billing": {"since": "2030-02-01", "until": "2030-01-01"}}, "filter.billing.until"),
        ({"all": []}, "filter.all"),
        ({"any": [{"industries": []}]}, "filter.any[0].industries"),
        ({"productIds": [theirs["id"]]}, "filter.productIds"),
        ({"productIds": ["not an id"]}, "filter.productIds"),
        ({"ownerIds": [other_org.admin.id]}, "filter.ownerIds"),
        ({"tags": ["a\nb"]}, "filter.tags"),
        (deep, "filter" + ".not" * 6),
        ({"industries": [f"i{n}" for n in range(201)]}, "filter.industries"),
        ({"billing": {"until": "9999-12-31"}}, "filter.billing.until"),
    ):
        error = await org.manager.api.error(PREVIEW, filter=filter)
        assert (error["extensions"]["code"], error["extensions"].get("field")) == (
            "BAD_USER_INPUT",
            field,
        ), filter
    error = await org.manager.api.error(PREVIEW, filter={"industry": ["x"]})  # unknown field
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


async def test_saved_segments_are_live_and_kept_by_managers(org, other_org):
    data = await seed(org)
    filter = {"industries": ["Software"], "hasEmail": True}
    error = await org.seller.api.error(CREATE, input={"name": "Software", "filter": filter})
    assert error["extensions"]["code"] == "FORBIDDEN"
    made = (await org.manager.api.data(CREATE, input={"name": "Software", "filter": filter}))[
        "createSegment"
    ]
    assert made["filter"] == {"industries": ["Software"], "hasEmail": True}
    assert (made["count"], made["owner"]) == (2, {"id": org.manager.id})
    again = await org.admin.api.error(CREATE, input={"name": "software", "filter": {}})
    assert (again["extensions"]["code"], again["extensions"]["field"]) == ("CONFLICT", "name")

    # Live: a new software contact is a member at once; paging goes through all of them.
    newcomer = await create_contact(org.seller, accountId=data["munich"]["id"])
    ids: list[str] = []
    after = None
    for _ in range(5):
        page = (await org.seller.api.data(MEMBERS, id=made["id"], after=after))["node"]
        ids += [node["id"] for node in page["members"]["nodes"]]
        if not page["members"]["pageInfo"]["hasNextPage"]:
            break
        after = page["members"]["pageInfo"]["endCursor"]
    people = data["people"]
    assert ids == [people["c1"]["id"], people["c4"]["id"], newcomer["id"]]
    assert page["count"] == 3

    changed = await org.manager.api.data(
        UPDATE, input={"id": made["id"], "filter": {"tags": ["vip"]}}
    )
    assert changed["updateSegment"]["count"] == 3
    error = await org.manager.api.error(
        UPDATE, input={"id": made["id"], "filter": {"billing": {"min": "2", "max": "1"}}}
    )
    assert error["extensions"]["field"] == "filter.billing.max"
    kept = await org.seller.api.data(MEMBERS, id=made["id"])
    assert kept["node"]["count"] == 3  # the refused change wrote nothing

    assert (await other_org.admin.api.error(MEMBERS, id=made["id"]))["extensions"][
        "code"
    ] == "NOT_FOUND"
    assert (await other_org.admin.api.error(DELETE, id=made["id"]))["extensions"][
        "code"
    ] == "NOT_FOUND"
    assert (await org.seller.api.error(DELETE, id=made["id"]))["extensions"]["code"] == "FORBIDDEN"
    await org.manager.api.data(DELETE, id=made["id"])
    assert (await org.seller.api.error(MEMBERS, id=made["id"]))["extensions"]["code"] == "NOT_FOUND"
