"""The pipeline board: per-stage figures under the list's filter and read rule, in one statement;
the lists' board orders; search by the account's and the contact's names."""

from __future__ import annotations

from typing import Any

from tests.conftest import DATABASE
from tests.helpers import Member, Org, create_account, create_contact, create_opportunity
from tests.test_deals import ADD_FOLLOWER, STAGES

SUMMARY = """query($filter: OpportunityFilter) {
  opportunityStageSummary(filter: $filter) {
    stage { id name position }
    count
    totals { currency count amount weightedAmount }
  }
}"""
SEARCH = """query($search: String!) {
  opportunities(first: 50, filter: {search: $search}) { nodes { id } }
}"""


async def board(member: Member, **filters: Any) -> dict[str, Any]:
    """The board as {stage name: (count, {currency: (count, amount, weighted)})}."""
    data = await member.api.data(SUMMARY, filter=filters or None)
    return {
        column["stage"]["name"]: (
            column["count"],
            {
                total["currency"]: (total["count"], total["amount"], total["weightedAmount"])
                for total in column["totals"]
            },
        )
        for column in data["opportunityStageSummary"]
    }


async def stage_ids(member: Member) -> dict[str, str]:
    return {s["name"]: s["id"] for s in (await member.api.data(STAGES))["pipelineStages"]}


EMPTY: dict[str, tuple[int, dict[str, Any]]] = {
    "Qualification": (0, {}),
    "Needs analysis": (0, {}),
    "Proposal": (0, {}),
    "Negotiation": (0, {}),
    "Closed won": (0, {}),
    "Closed lost": (0, {}),
}


async def seed(org: Org) -> dict[str, str]:
    """A seller's open deals in two currencies, a teammate's and a lone seller's private deals."""
    stages = await stage_ids(org.admin)
    acme = await create_account(org.seller, name="Acme Rockets")
    made = {
        "eur": await create_opportunity(org.seller, accountId=acme["id"], amount="1000.00"),
        "usd": await create_opportunity(org.seller, amount="200.00", currency="USD"),
        "proposal": await create_opportunity(
            org.seller, amount="500.50", stageId=stages["Proposal"]
        ),
        "odd": await create_opportunity(
            org.seller, amount="123.45", stageId=stages["Proposal"], probability=33
        ),
        "teammate": await create_opportunity(org.teammate, amount="999.00", visibility="PRIVATE"),
        "outsider": await create_opportunity(org.outsider, amount="10.00", visibility="PRIVATE"),
    }
    return {name: deal["id"] for name, deal in made.items()}


async def test_the_board_sums_each_stage_by_currency_as_each_viewer_reads(org, other_org):
    deals = await seed(org)
    seller = {
        **EMPTY,
        "Qualification": (2, {"EUR": (1, "1000.00", "100.00"), "USD": (1, "200.00", "20.00")}),
        # 500.50 x 50% + 123.45 x 33% = 250.25 + 40.7385: exact, four decimals.
        "Proposal": (2, {"EUR": (2, "623.95", "290.9885")}),
    }
    assert await board(org.seller) == seller
    # The teammate's private deal is read by its owner's manager and admins, not by the seller.
    with_teammate = {
        **seller,
        "Qualification": (3, {"EUR": (2, "1999.00", "199.90"), "USD": (1, "200.00", "20.00")}),
    }
    assert await board(org.manager) == with_teammate
    everything = {
        **seller,
        "Qualification": (4, {"EUR": (3, "2009.00", "200.90"), "USD": (1, "200.00", "20.00")}),
    }
    assert await board(org.admin) == everything
    # A follower reads a private deal, so the board counts it for them.
    await org.outsider.api.data(ADD_FOLLOWER, record=deals["outsider"], user=org.seller.id)
    followed = {
        **seller,
        "Qualification": (3, {"EUR": (2, "1010.00", "101.00"), "USD": (1, "200.00", "20.00")}),
    }
    assert await board(org.seller) == followed
    # Another organization sees its own empty stages.
    assert await board(other_org.admin) == EMPTY

    # The list's filters apply: the owner, the stage, the search (here an account's name).
    assert await board(org.admin, ownerIds=[org.teammate.id]) == {
        **EMPTY,
        "Qualification": (1, {"EUR": (1, "999.00", "99.90")}),
    }
    assert await board(org.seller, search="rockets") == {
        **EMPTY,
        "Qualification": (1, {"EUR": (1, "1000.00", "100.00")}),
    }
    stages = await stage_ids(org.admin)
    only_proposal = await board(org.seller, stageIds=[stages["Proposal"]])
    assert only_proposal == {**EMPTY, "Proposal": seller["Proposal"]}
    bad = await org.seller.api.error(SUMMARY, filter={"ownerIds": [deals["eur"]]})
    assert (bad["extensions"]["code"], bad["extensions"]["field"]) == (
        "BAD_USER_INPUT",
        "filter.ownerIds",
    )


# The session; for a seller, their team (the read rule of private deals: on PostgreSQL read by
# the session's statement); the board.
EXPECTED_STATEMENTS = 2 if DATABASE == "postgres" else 3


async def test_the_board_is_one_statement_whatever_the_pipeline(org, sql_statements):
    stages = await stage_ids(org.admin)
    counts: list[int] = []
    for size in (1, 12):
        for i in range(size if not counts else size - 1):
            await create_opportunity(
                org.seller,
                stageId=list(stages.values())[i % 4],
                currency=("EUR", "USD", "GBP")[i % 3],
            )
        with sql_statements() as seen:
            data = await org.seller.api.uncompared().data(SUMMARY)
        assert sum(column["count"] for column in data["opportunityStageSummary"]) == size
        counts.append(len(seen))
    assert counts == [EXPECTED_STATEMENTS] * 2, (DATABASE, seen)


async def test_search_matches_the_account_and_the_primary_contact(org):
    globex = await create_account(org.seller, name="Globex Corporation")
    hank = await create_contact(org.seller, firstName="Hank", lastName="Scorpio")
    by_account = await create_opportunity(org.seller, accountId=globex["id"], name="Renewal")
    by_contact = await create_opportunity(org.seller, contactId=hank["id"], name="Expansion")
    by_name = await create_opportunity(org.seller, name="Scorpio's volcano")
    hidden = await create_opportunity(
        org.outsider, accountId=globex["id"], name="Private", visibility="PRIVATE"
    )

    async def found(words: str) -> set[str]:
        nodes = (await org.seller.api.data(SEARCH, search=words))["opportunities"]["nodes"]
        return {node["id"] for node in nodes}

    assert await found("globex") == {by_account["id"]}  # not the private one
    assert await found("hank scorpio") == {by_contact["id"]}  # each word somewhere
    assert await found("scorpio") == {by_contact["id"], by_name["id"]}
    assert await found("globex renewal") == {by_account["id"]}
    assert await found("globex expansion") == set()
    admin_nodes = (await org.admin.api.data(SEARCH, search="globex"))["opportunities"]["nodes"]
    assert {node["id"] for node in admin_nodes} == {by_account["id"], hidden["id"]}
