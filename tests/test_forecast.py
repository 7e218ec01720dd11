"""Forecast categories, lost reasons, quotas and the forecast, checked against figures computed by
hand on a fixed data set (the comments give each sum)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from models import Opportunity
from tests.helpers import DELETE, Member, Org, create_account, create_opportunity, pk

STAGES = "{ pipelineStages { id name probability isWon isLost forecastCategory } }"

UPDATE = """mutation($input: UpdateOpportunityInput!) {
  updateOpportunity(input: $input) {
    id version status probability forecastCategory forecastCategoryOverridden lostReason
  }
}"""
HISTORY = """query($id: ID!) { node(id: $id) { ... on Opportunity {
  history(first: 1) { nodes { kind changes } }
} } }"""
SET_QUOTA = """mutation($user: ID!, $period: String!, $amount: Decimal!) {
  setQuota(userId: $user, period: $period, amount: $amount) {
    period periodKind startDate endDate amount currency user { id } setBy { id }
  }
}"""
DELETE_QUOTA = """mutation($user: ID!, $period: String!) {
  deleteQuota(userId: $user, period: $period) { period amount }
}"""
QUOTAS = """query($year: Int!, $user: ID) {
  quotas(year: $year, userId: $user) { period amount user { id } }
}"""
FIGURES = """period startDate endDate currency openPipeline weightedPipeline pipeline commit
  bestCase closedWon openCount wonCount quota attainment"""
LINE = f"""user {{ id }} memberCount
  figures {{ {FIGURES} months {{ {FIGURES} }} }}
  otherCurrencies {{ {FIGURES} }}"""
FORECAST = f"""query($period: String!, $user: ID) {{
  forecast(period: $period, userId: $user) {{
    period periodKind startDate endDate currency
    total {{ {LINE} }}
    sellers {{ {LINE} }}
    teams {{ {LINE} }}
  }}
}}"""
UPDATE_ORGANIZATION = """mutation($input: UpdateOrganizationInput!) {
  updateOrganization(input: $input) { name currency }
}"""


async def stages(member: Member) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in (await member.api.data(STAGES))["pipelineStages"]}


async def update(member: Member, **values: Any) -> dict[str, Any]:
    return (await member.api.data(UPDATE, input=values))["updateOpportunity"]


# Forecast categories


async def test_categories_default_from_the_stage_and_can_be_overridden(org):
    pipeline = await stages(org.seller)
    categories = {name: stage["forecastCategory"] for name, stage in pipeline.items()}
    assert categories == {
        "Qualification": "PIPELINE",
        "Needs analysis": "PIPELINE",
        "Proposal": "BEST_CASE",
        "Negotiation": "COMMIT",
        "Closed won": "CLOSED",
        "Closed lost": "OMITTED",
    }
    deal = await create_opportunity(org.seller, stageId=pipeline["Proposal"]["id"])
    seen = await update(org.seller, id=deal["id"], name="Renamed")
    assert (seen["forecastCategory"], seen["forecastCategoryOverridden"]) == ("BEST_CASE", False)

    seen = await update(org.seller, id=deal["id"], forecastCategory="COMMIT")
    assert (seen["forecastCategory"], seen["forecastCategoryOverridden"]) == ("COMMIT", True)
    seen = await update(org.seller, id=deal["id"], stageId=pipeline["Qualification"]["id"])
    assert seen["forecastCategory"] == "COMMIT"  # the override stays across open stages
    seen = await update(org.seller, id=deal["id"], forecastCategory=None)
    assert (seen["forecastCategory"], seen["forecastCategoryOverridden"]) == ("PIPELINE", False)

    seen = await update(org.seller, id=deal["id"], forecastCategory="OMITTED")
    assert seen["forecastCategory"] == "OMITTED"
    won = await update(org.seller, id=deal["id"], stageId=pipeline["Closed won"]["id"])
    assert (won["forecastCategory"], won["forecastCategoryOverridden"]) == ("CLOSED", False)
    reopened = await update(org.seller, id=deal["id"], stageId=pipeline["Negotiation"]["id"])
    assert reopened["forecastCategory"] == "COMMIT"
    lost = await update(
        org.seller, id=deal["id"], stageId=pipeline["Closed lost"]["id"], lostReason="Price"
    )
    assert lost["forecastCategory"] == "OMITTED"

    history = (await org.seller.api.data(HISTORY, id=deal["id"]))["node"]["history"]["nodes"]
    assert history[0]["kind"] == "LOST"
    assert history[0]["changes"]["forecastCategory"] == {"old": "COMMIT", "new": "OMITTED"}


async def test_category_overrides_that_make_no_sense_are_refused(org):
    pipeline = await stages(org.seller)
    deal = await create_opportunity(org.seller)
    error = await org.seller.api.error(
        UPDATE, input={"id": deal["id"], "forecastCategory": "CLOSED"}
    )
    assert (error["extensions"]["code"], error["extensions"]["field"]) == (
        "BAD_USER_INPUT",
        "forecastCategory",
    )
    won = {"id": deal["id"], "stageId": pipeline["Closed won"]["id"]}
    error = await org.seller.api.error(UPDATE, input={**won, "forecastCategory": "COMMIT"})
    assert error["extensions"]["field"] == "forecastCategory"
    await update(org.seller, **won)
    error = await org.seller.api.error(
        UPDATE, input={"id": deal["id"], "forecastCategory": "COMMIT"}
    )
    assert error["extensions"]["field"] == "forecastCategory"
    seen = (await org.seller.api.data(HISTORY, id=deal["id"]))["node"]["history"]["nodes"]
    assert seen[0]["kind"] == "WON"  # the refusals wrote nothing


async def test_stage_categories_follow_the_stage(org):
    create = """mutation($input: CreatePipelineStageInput!) {
      createPipelineStage(input: $input) { name forecastCategory } }"""
    made = await org.admin.api.data(create, input={"name": "Verbal yes", "probability": 90})
    assert made["createPipelineStage"]["forecastCategory"] == "COMMIT"
    made = await org.admin.api.data(create, input={"name": "Demo", "probability": 60})
    assert made["createPipelineStage"]["forecastCategory"] == "BEST_CASE"
    made = await org.admin.api.data(
        create, input={"name": "Long shot", "probability": 80, "forecastCategory": "PIPELINE"}
    )
    assert made["createPipelineStage"]["forecastCategory"] == "PIPELINE"
    for bad in (
        {"name": "X", "probability": 40, "forecastCategory": "CLOSED"},
        {"name": "Y", "probability": 100, "isWon": True, "forecastCategory": "COMMIT"},
        {"name": "Z", "probability": 0, "isLost": True, "forecastCategory": "PIPELINE"},
    ):
        error = await org.admin.api.error(create, input=bad)
        assert error["extensions"]["field"] == "forecastCategory", bad
    names = set(await stages(org.admin))
    assert {"X", "Y", "Z"}.isdisjoint(names)


async def test_filter_by_forecast_category(org):
    pipeline = await stages(org.seller)
    commit = await create_opportunity(org.seller, stageId=pipeline["Negotiation"]["id"])
    await create_opportunity(org.seller, stageId=pipeline["Proposal"]["id"])
    found = await org.seller.api.data(
        """{ opportunities(filter: {forecastCategories: [COMMIT]}) { nodes { id } } }"""
    )
    assert found["opportunities"]["nodes"] == [{"id": commit["id"]}]


# Lost reasons


async def test_losing_takes_a_reason_and_reopening_clears_it(org):
    pipeline = await stages(org.seller)
    deal = await create_opportunity(org.seller)
    lose = {"id": deal["id"], "stageId": pipeline["Closed lost"]["id"]}
    for reason in (None, "   "):
        error = await org.seller.api.error(UPDATE, input={**lose, "lostReason": reason})
        assert (error["extensions"]["code"], error["extensions"]["field"]) == (
            "BAD_USER_INPUT",
            "lostReason",
        )
    error = await org.seller.api.error(UPDATE, input={"id": deal["id"], "lostReason": "Why not"})
    assert error["extensions"]["field"] == "lostReason"  # an open opportunity has none
    untouched = await update(org.seller, id=deal["id"])
    assert (untouched["status"], untouched["version"]) == ("OPEN", deal["version"])

    lost = await update(org.seller, **lose, lostReason="  Went with a competitor ")
    assert (lost["status"], lost["lostReason"]) == ("LOST", "Went with a competitor")
    history = (await org.seller.api.data(HISTORY, id=deal["id"]))["node"]["history"]["nodes"]
    assert history[0]["changes"]["lostReason"] == {"old": None, "new": "Went with a competitor"}
    error = await org.seller.api.error(UPDATE, input={"id": deal["id"], "lostReason": None})
    assert error["extensions"]["field"] == "lostReason"
    changed = await update(org.seller, id=deal["id"], lostReason="Price")
    assert changed["lostReason"] == "Price"

    reopened = await update(org.seller, id=deal["id"], stageId=pipeline["Proposal"]["id"])
    assert (reopened["status"], reopened["lostReason"]) == ("OPEN", None)


async def test_creating_a_lost_opportunity_takes_a_reason(org):
    pipeline = await stages(org.seller)
    lost_stage = pipeline["Closed lost"]["id"]
    with pytest.raises(AssertionError, match="lostReason"):
        await create_opportunity(org.seller, stageId=lost_stage)
    made = await create_opportunity(org.seller, stageId=lost_stage, lostReason="No budget")
    assert made["status"] == "LOST"


# Quotas


async def test_quotas_are_set_by_managers_and_admins(org, other_org):
    made = await org.manager.api.data(
        SET_QUOTA, user=org.seller.id, period="2031-Q1", amount="1000"
    )
    quota = made["setQuota"]
    assert quota == {
        "period": "2031-Q1",
        "periodKind": "QUARTER",
        "startDate": "2031-01-01",
        "endDate": "2031-03-31",
        "amount": "1000.00",
        "currency": "USD",
        "user": {"id": org.seller.id},
        "setBy": {"id": org.manager.id},
    }
    replaced = await org.admin.api.data(
        SET_QUOTA, user=org.seller.id, period="2031-Q1", amount="1500.5"
    )
    assert replaced["setQuota"]["amount"] == "1500.50"
    await org.manager.api.data(SET_QUOTA, user=org.teammate.id, period="2031-02", amount="300")
    await org.admin.api.data(SET_QUOTA, user=org.manager.id, period="2031-02", amount="900")

    refusals = [
        (org.seller, org.seller.id, "FORBIDDEN"),  # sellers set no quota, not even their own
        (org.manager, org.manager.id, "FORBIDDEN"),  # a manager's own comes from above
        (org.manager, org.outsider.id, "FORBIDDEN"),  # outside the team
        (org.admin, other_org.seller.id, "BAD_USER_INPUT"),  # another organization's user
    ]
    for member, user, code in refusals:
        error = await member.api.error(SET_QUOTA, user=user, period="2031-Q1", amount="1")
        assert error["extensions"]["code"] == code, (member.email, user)
    for period, amount, field in (
        ("2031-Q5", "1", "period"),
        ("2031-13", "1", "period"),
        ("Q1", "1", "period"),
        ("2031-Q1", "-1", "amount"),
        ("2031-Q1", "0.001", "amount"),
    ):
        error = await org.admin.api.error(
            SET_QUOTA, user=org.seller.id, period=period, amount=amount
        )
        assert (error["extensions"]["code"], error["extensions"]["field"]) == (
            "BAD_USER_INPUT",
            field,
        )

    def listed(data: dict[str, Any]) -> set[tuple[str, str, str]]:
        return {(q["user"]["id"], q["period"], q["amount"]) for q in data["quotas"]}

    everyone = {
        (org.seller.id, "2031-Q1", "1500.50"),
        (org.teammate.id, "2031-02", "300.00"),
        (org.manager.id, "2031-02", "900.00"),
    }
    assert listed(await org.admin.api.data(QUOTAS, year=2031)) == everyone
    assert listed(await org.manager.api.data(QUOTAS, year=2031)) == everyone
    assert listed(await org.seller.api.data(QUOTAS, year=2031)) == {
        (org.seller.id, "2031-Q1", "1500.50")
    }
    assert listed(await org.outsider.api.data(QUOTAS, year=2031)) == set()
    assert listed(await org.admin.api.data(QUOTAS, year=2030)) == set()
    error = await org.seller.api.error(QUOTAS, year=2031, user=org.teammate.id)
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert listed(await other_org.admin.api.data(QUOTAS, year=2031)) == set()

    error = await org.seller.api.error(DELETE_QUOTA, user=org.seller.id, period="2031-Q1")
    assert error["extensions"]["code"] == "FORBIDDEN"
    removed = await org.manager.api.data(DELETE_QUOTA, user=org.seller.id, period="2031-Q1")
    assert removed["deleteQuota"] == {"period": "2031-Q1", "amount": "1500.50"}
    again = await org.manager.api.error(DELETE_QUOTA, user=org.seller.id, period="2031-Q1")
    assert again["extensions"]["code"] == "NOT_FOUND"


async def test_the_currency_cannot_change_under_quotas(org):
    await org.admin.api.data(SET_QUOTA, user=org.seller.id, period="2031-01", amount="10")
    error = await org.admin.api.error(UPDATE_ORGANIZATION, input={"currency": "EUR"})
    assert (error["extensions"]["code"], error["extensions"]["field"]) == ("CONFLICT", "currency")
    error = await org.manager.api.error(UPDATE_ORGANIZATION, input={"currency": "EUR"})
    assert error["extensions"]["code"] == "FORBIDDEN"
    error = await org.admin.api.error(UPDATE_ORGANIZATION, input={"currency": "euro"})
    assert error["extensions"]["field"] == "currency"
    await org.admin.api.data(DELETE_QUOTA, user=org.seller.id, period="2031-01")
    changed = await org.admin.api.data(UPDATE_ORGANIZATION, input={"currency": "EUR"})
    assert changed["updateOrganization"]["currency"] == "EUR"
    forecast = await org.admin.api.data(FORECAST, period="2031-01")
    assert forecast["forecast"]["currency"] == "EUR"


# The forecast, on a fixed data set


async def _deal(
    member: Member, account: str, stage: dict[str, Any], amount: str, close: str, **more: Any
) -> dict[str, Any]:
    return await create_opportunity(
        member,
        accountId=account,
        stageId=stage["id"],
        amount=amount,
        currency=more.pop("currency", "USD"),
        expectedCloseDate=close,
        **more,
    )


async def _win(member: Member, deal: dict[str, Any], stage: dict[str, Any], at: datetime) -> None:
    await update(member, id=deal["id"], stageId=stage["id"])
    # Winning stamps the present: move the day it happened into the data set's past.
    await Opportunity.filter(id=pk(deal["id"])).update(closed_at=at)


async def seed_forecast(org: Org) -> None:
    """2031-Q1. Stages: Qualification 10% PIPELINE, Needs analysis 25% PIPELINE, Proposal 50%
    BEST_CASE, Negotiation 75% COMMIT."""
    pipeline = await stages(org.admin)
    qualification, needs = pipeline["Qualification"], pipeline["Needs analysis"]
    proposal, negotiation = pipeline["Proposal"], pipeline["Negotiation"]
    won, lost = pipeline["Closed won"], pipeline["Closed lost"]
    seller, teammate, outsider = org.seller, org.teammate, org.outsider
    account = (await create_account(seller))["id"]

    await _deal(seller, account, qualification, "1000.00", "2031-01-15")  # 1
    await _deal(seller, account, proposal, "2000.50", "2031-02-10")  # 2
    await _deal(seller, account, negotiation, "3000.00", "2031-03-31")  # 3
    await _deal(  # 4: 33%, COMMIT by override
        seller, account, needs, "1234.56", "2031-01-01", probability=33, forecastCategory="COMMIT"
    )
    await _deal(seller, account, proposal, "500.00", "2031-02-01", forecastCategory="OMITTED")
    await _deal(seller, account, negotiation, "999.99", "2031-04-01")  # next quarter
    win = await _deal(seller, account, proposal, "4000.00", "2031-02-20")
    await _win(seller, win, won, datetime(2031, 2, 5, 10, tzinfo=UTC))  # 7: won in February
    early = await _deal(seller, account, proposal, "700.00", "2031-01-05")
    await _win(seller, early, won, datetime(2030, 12, 31, 23, 59, 59, tzinfo=UTC))  # before
    gone = await _deal(seller, account, proposal, "800.00", "2031-02-14")
    await update(seller, id=gone["id"], stageId=lost["id"], lostReason="Competitor")
    await _deal(seller, account, negotiation, "600.00", "2031-03-05", currency="EUR")  # 10
    deleted = await _deal(seller, account, proposal, "5000.00", "2031-01-10")
    await seller.api.data(DELETE["Opportunity"], id=deleted["id"])

    account = (await create_account(teammate))["id"]
    await _deal(teammate, account, negotiation, "1500.00", "2031-03-15")  # 12
    late = await _deal(teammate, account, proposal, "2500.00", "2031-03-01")
    await _win(teammate, late, won, datetime(2031, 3, 31, 23, 30, tzinfo=UTC))  # 13: March

    account = (await create_account(outsider))["id"]
    await _deal(outsider, account, proposal, "10000.00", "2031-01-20")  # 14
    first = await _deal(outsider, account, proposal, "300.00", "2031-01-01")
    await _win(outsider, first, won, datetime(2031, 1, 1, tzinfo=UTC))  # 15: in January
    after = await _deal(outsider, account, proposal, "450.00", "2031-03-31")
    await _win(outsider, after, won, datetime(2031, 4, 1, tzinfo=UTC))  # 16: next quarter

    for user, period, amount in (
        (seller, "2031-Q1", "10000"),
        (seller, "2031-02", "3000"),
        (teammate, "2031-01", "1000"),  # no quarterly quota: the quarter's is 1000 + 2000
        (teammate, "2031-03", "2000"),
    ):
        await org.manager.api.data(SET_QUOTA, user=user.id, period=period, amount=amount)


def figures(
    period: str,
    start: str,
    end: str,
    open_pipeline: str = "0.00",
    weighted: str = "0.00",
    pipeline: str = "0.00",
    commit: str = "0.00",
    best_case: str = "0.00",
    won: str = "0.00",
    counts: tuple[int, int] = (0, 0),
    quota: str | None = None,
    attainment: str | None = None,
    currency: str = "USD",
) -> dict[str, Any]:
    return {
        "period": period,
        "startDate": start,
        "endDate": end,
        "currency": currency,
        "openPipeline": open_pipeline,
        "weightedPipeline": weighted,
        "pipeline": pipeline,
        "commit": commit,
        "bestCase": best_case,
        "closedWon": won,
        "openCount": counts[0],
        "wonCount": counts[1],
        "quota": quota,
        "attainment": attainment,
    }


JAN = ("2031-01", "2031-01-01", "2031-01-31")
FEB = ("2031-02", "2031-02-01", "2031-02-28")
MAR = ("2031-03", "2031-03-01", "2031-03-31")
Q1 = ("2031-Q1", "2031-01-01", "2031-03-31")


def with_months(whole: dict[str, Any], *months: dict[str, Any]) -> dict[str, Any]:
    return {**whole, "months": list(months)}


# Columns: open pipeline, weighted, PIPELINE, commit, best case, closed won, (open, won) counts,
# quota, attainment.
# fmt: off
# The seller: open 1 + 2 + 3 + 4 = 1000 + 2000.50 + 3000 + 1234.56 = 7235.06; weighted 100 +
# 1000.25 + 2250 + 407.4048 = 3757.6548; PIPELINE 1000; won (7) 4000; commit 4000 + 3000 +
# 1234.56 = 8234.56; best case 8234.56 + 2000.50 = 10235.06; quota 10000, attainment 40.00.
# February: 4000 won against a 3000 quota: 133.333... -> 133.33.
SELLER = with_months(
    figures(*Q1, "7235.06", "3757.6548", "1000.00", "8234.56", "10235.06", "4000.00", (4, 1), "10000.00", "40.00"),  # noqa: E501
    figures(*JAN, "2234.56", "507.4048", "1000.00", "1234.56", "1234.56", "0.00", (2, 0)),
    figures(*FEB, "2000.50", "1000.25", "0.00", "4000.00", "6000.50", "4000.00", (1, 1), "3000.00", "133.33"),  # noqa: E501
    figures(*MAR, "3000.00", "2250.00", "0.00", "3000.00", "3000.00", "0.00", (1, 0)),
)
SELLER_EUR = figures(*Q1, "600.00", "450.00", "0.00", "600.00", "600.00", counts=(1, 0), currency="EUR")  # noqa: E501
# The teammate: open 1500 (75%: 1125); won 2500 (23:30 UTC on 31 March still counts in March);
# quota 1000 + 2000 = 3000, attainment 83.33.
TEAMMATE = with_months(
    figures(*Q1, "1500.00", "1125.00", "0.00", "4000.00", "4000.00", "2500.00", (1, 1), "3000.00", "83.33"),  # noqa: E501
    figures(*JAN, quota="1000.00", attainment="0.00"),
    figures(*FEB),
    figures(*MAR, "1500.00", "1125.00", "0.00", "4000.00", "4000.00", "2500.00", (1, 1), "2000.00", "125.00"),  # noqa: E501
)
# The outsider: open 10000 (50%, BEST_CASE); won 300 at midnight on 1 January (in), not the 450
# won at midnight on 1 April (out).
OUTSIDER = with_months(
    figures(*Q1, "10000.00", "5000.00", "0.00", "300.00", "10300.00", "300.00", (1, 1)),
    figures(*JAN, "10000.00", "5000.00", "0.00", "300.00", "10300.00", "300.00", (1, 1)),
    figures(*FEB),
    figures(*MAR),
)
NOTHING = with_months(figures(*Q1), figures(*JAN), figures(*FEB), figures(*MAR))
# The manager's team: the seller + the teammate (the manager owns nothing); quota 13000,
# won 6500: 50.00.
TEAM = with_months(
    figures(*Q1, "8735.06", "4882.6548", "1000.00", "12234.56", "14235.06", "6500.00", (5, 2), "13000.00", "50.00"),  # noqa: E501
    figures(*JAN, "2234.56", "507.4048", "1000.00", "1234.56", "1234.56", "0.00", (2, 0), "1000.00", "0.00"),  # noqa: E501
    figures(*FEB, "2000.50", "1000.25", "0.00", "4000.00", "6000.50", "4000.00", (1, 1), "3000.00", "133.33"),  # noqa: E501
    figures(*MAR, "4500.00", "3375.00", "0.00", "7000.00", "7000.00", "2500.00", (2, 1), "2000.00", "125.00"),  # noqa: E501
)
# The organization: the team + the outsider; won 6800 against 13000: 52.307... -> 52.31.
ORGANIZATION = with_months(
    figures(*Q1, "18735.06", "9882.6548", "1000.00", "12534.56", "24535.06", "6800.00", (6, 3), "13000.00", "52.31"),  # noqa: E501
    figures(*JAN, "12234.56", "5507.4048", "1000.00", "1534.56", "11534.56", "300.00", (3, 1), "1000.00", "30.00"),  # noqa: E501
    TEAM["months"][1],
    TEAM["months"][2],
)
# fmt: on


def line(
    user: Member | None, expected: dict[str, Any], members: int = 1, other: list | None = None
) -> dict[str, Any]:
    return {
        "user": {"id": user.id} if user else None,
        "memberCount": members,
        "figures": expected,
        "otherCurrencies": [{**other[0]}] if other else [],
    }


def by_user(lines: list[dict[str, Any]]) -> dict[str | None, dict[str, Any]]:
    return {(entry["user"] or {}).get("id"): entry for entry in lines}


async def test_forecast_figures_match_the_hand_computed_ones(org):
    await seed_forecast(org)
    admin = (await org.admin.api.data(FORECAST, period="2031-Q1"))["forecast"]
    assert {k: admin[k] for k in ("period", "periodKind", "startDate", "endDate", "currency")} == {
        "period": "2031-Q1",
        "periodKind": "QUARTER",
        "startDate": "2031-01-01",
        "endDate": "2031-03-31",
        "currency": "USD",
    }
    assert admin["total"] == line(None, ORGANIZATION, members=5, other=[SELLER_EUR])
    sellers = by_user(admin["sellers"])
    assert sellers.keys() == {
        org.admin.id,
        org.manager.id,
        org.seller.id,
        org.teammate.id,
        org.outsider.id,
    }
    assert sellers[org.seller.id] == line(org.seller, SELLER, other=[SELLER_EUR])
    assert sellers[org.teammate.id] == line(org.teammate, TEAMMATE)
    assert sellers[org.outsider.id] == line(org.outsider, OUTSIDER)
    assert sellers[org.manager.id] == line(org.manager, NOTHING)
    assert admin["teams"] == [line(org.manager, TEAM, members=3, other=[SELLER_EUR])]

    manager = (await org.manager.api.data(FORECAST, period="2031-Q1"))["forecast"]
    assert manager["total"] == line(org.manager, TEAM, members=3, other=[SELLER_EUR])
    assert by_user(manager["sellers"]).keys() == {org.manager.id, org.seller.id, org.teammate.id}
    assert manager["teams"] == admin["teams"]

    seller = (await org.seller.api.data(FORECAST, period="2031-Q1"))["forecast"]
    assert seller["total"] == line(org.seller, SELLER, other=[SELLER_EUR])
    assert seller["sellers"] == [seller["total"]]
    assert seller["teams"] == []

    # January on its own: the seller has a quarterly quota only, so January has none.
    january = (await org.seller.api.data(FORECAST, period="2031-01"))["forecast"]
    assert january["total"]["figures"]["quota"] is None
    assert january["total"]["figures"]["openPipeline"] == "2234.56"
    # A month on its own: February for the seller, with its monthly quota.
    february = (await org.seller.api.data(FORECAST, period="2031-02"))["forecast"]
    assert february["periodKind"] == "MONTH"
    assert february["total"]["figures"] == with_months(SELLER["months"][1], SELLER["months"][1])


async def test_forecast_scope_follows_the_reporting_lines(org, other_org):
    await seed_forecast(org)
    asked = await org.manager.api.data(FORECAST, period="2031-Q1", user=org.seller.id)
    assert asked["forecast"]["total"]["figures"] == SELLER
    asked = await org.admin.api.data(FORECAST, period="2031-Q1", user=org.manager.id)
    assert asked["forecast"]["total"]["figures"] == TEAM
    for member, user, code in (
        (org.seller, org.teammate.id, "FORBIDDEN"),
        (org.seller, org.manager.id, "FORBIDDEN"),
        (org.manager, org.outsider.id, "FORBIDDEN"),
        (org.teammate, org.seller.id, "FORBIDDEN"),
        (org.admin, other_org.seller.id, "BAD_USER_INPUT"),
        (other_org.admin, org.seller.id, "BAD_USER_INPUT"),
    ):
        error = await member.api.error(FORECAST, period="2031-Q1", user=user)
        assert error["extensions"]["code"] == code, (member.email, user)
    # Another organization's forecast sees none of these figures.
    theirs = (await other_org.admin.api.data(FORECAST, period="2031-Q1"))["forecast"]
    assert theirs["total"]["figures"] == NOTHING
    error = await org.admin.api.error(FORECAST, period="2031-1")
    assert (error["extensions"]["code"], error["extensions"]["field"]) == (
        "BAD_USER_INPUT",
        "period",
    )


async def test_forecast_statements_do_not_grow_with_the_data(org, sql_statements):
    await seed_forecast(org)
    with sql_statements() as before:
        await org.admin.api.data(FORECAST, period="2031-Q1")
    pipeline = await stages(org.admin)
    more = await org.add_user("SELLER", org.manager)
    account = (await create_account(more))["id"]
    for close in ("2031-01-03", "2031-02-03", "2031-03-03"):
        await _deal(more, account, pipeline["Proposal"], "10.00", close)
    await org.admin.api.data(SET_QUOTA, user=more.id, period="2031-Q1", amount="5")
    with sql_statements() as after:
        result = await org.admin.api.data(FORECAST, period="2031-Q1")
    assert len(after) == len(before), (before, after)
    assert result["forecast"]["total"]["figures"]["openCount"] == 6 + 3
