"""convertLead: a lead becomes an opportunity in one transaction, with its roles and history."""

from __future__ import annotations

import pytest

from tests.helpers import UPDATE, create_account, create_contact, create_lead, create_opportunity
from tests.test_deals import ADD_FOLLOWER, ADD_PARTICIPANT, STAGES
from tests.test_events import HISTORY, NOTIFICATIONS, history
from tests.test_live import FOLLOWED_EVENTS, cursor, event
from tests.ws import live_client

CONVERT = """
mutation($input: ConvertLeadInput!) {
  convertLead(input: $input) {
    lead { id status version convertedAt convertedOpportunity { id } }
    opportunity {
      id name amount currency visibility status probability
      account { id name owner { id } } contact { id } owner { id } stage { id }
      participants { role contact { id } } followers { id }
    }
    account { id name }
  }
}"""
LEAD_STATE = """query($id: ID!) { node(id: $id) { ... on Lead {
  status version convertedOpportunity { id }
} } }"""
COUNTS = "{ accounts { totalCount } opportunities { totalCount } }"
CLOSE = "2027-06-30"


async def test_a_lead_becomes_an_opportunity_with_its_account_contact_roles_and_followers(org):
    account = await create_account(org.seller)
    buyer, cfo, it = [await create_contact(org.seller) for _ in range(3)]
    lead = await create_lead(
        org.seller,
        accountId=account["id"],
        contactId=buyer["id"],
        estimatedAmount="4200.50",
        currency="EUR",
        visibility="PRIVATE",
    )
    for contact, role in ((cfo, "CFO"), (it, None)):
        participant = {"recordId": lead["id"], "contactId": contact["id"], "role": role}
        await org.seller.api.data(ADD_PARTICIPANT, input=participant)
    for member in (org.teammate, org.outsider):
        await org.seller.api.data(ADD_FOLLOWER, record=lead["id"], user=member.id)

    done = (
        await org.seller.api.data(CONVERT, input={"leadId": lead["id"], "expectedCloseDate": CLOSE})
    )["convertLead"]

    opportunity = done["opportunity"]
    assert done["lead"]["status"] == "CONVERTED"
    assert done["lead"]["convertedAt"] is not None
    assert done["lead"]["convertedOpportunity"] == {"id": opportunity["id"]}
    assert done["account"]["id"] == account["id"]
    assert (opportunity["name"], opportunity["amount"], opportunity["currency"]) == (
        lead["title"],
        "4200.50",
        "EUR",
    )
    assert opportunity["visibility"] == "PRIVATE"
    assert opportunity["account"]["id"] == account["id"]
    assert opportunity["contact"] == {"id": buyer["id"]}
    assert opportunity["owner"] == {"id": org.seller.id}
    assert sorted((p["contact"]["id"], p["role"]) for p in opportunity["participants"]) == sorted(
        [(cfo["id"], "CFO"), (it["id"], None)]
    )
    # (The seller, the lead's owner, follows both.)
    followers = {org.seller.id, org.teammate.id, org.outsider.id}
    assert {f["id"] for f in opportunity["followers"]} == followers
    stages = (await org.seller.api.data(STAGES))["pipelineStages"]
    assert opportunity["stage"]["id"] == stages[0]["id"]
    assert opportunity["probability"] == stages[0]["probability"]

    # Both histories record it.
    lead_event = (await history(org.seller, lead["id"]))[0]
    assert lead_event["kind"] == "CONVERTED"
    assert lead_event["changes"]["status"] == {"old": "NEW", "new": "CONVERTED"}
    assert lead_event["changes"]["convertedOpportunityId"]["new"] == opportunity["id"]
    converted, created = await history(org.seller, opportunity["id"])
    assert (converted["kind"], created["kind"]) == ("CONVERTED", "CREATED")
    assert converted["changes"]["leadId"] == lead["id"]
    assert sorted(converted["changes"]["participants"]) == sorted([cfo["id"], it["id"]])
    assert sorted(converted["changes"]["followers"]) == sorted(followers)

    # The outsider reads the private opportunity as its follower, and was told once.
    assert (await org.outsider.api.data(HISTORY, id=opportunity["id"]))["node"]
    notes = (await org.outsider.api.data(NOTIFICATIONS))["notifications"]["edges"]
    assert [n["node"]["event"]["kind"] for n in notes][0] == "CONVERTED"
    assert [n["node"]["event"]["kind"] for n in notes].count("CONVERTED") == 1


async def test_planned_activities_move_to_the_opportunity(org):
    from tests.test_activities import COMPLETE, DEAL_ACTIVITIES, plan

    lead = await create_lead(org.seller)
    done = await plan(org.seller, leadId=lead["id"], subject="First call")
    await org.seller.api.data(COMPLETE, id=done["id"])
    await plan(org.seller, leadId=lead["id"], subject="Demo")
    converted = (
        await org.seller.api.data(CONVERT, input={"leadId": lead["id"], "expectedCloseDate": CLOSE})
    )["convertLead"]

    def subjects(node: dict) -> list[str]:
        return [a["subject"] for a in node["activities"]["nodes"]]

    opportunity = converted["opportunity"]["id"]
    on_opportunity = (await org.seller.api.data(DEAL_ACTIVITIES, id=opportunity))["node"]
    assert subjects(on_opportunity) == ["Demo"]
    on_lead = (await org.seller.api.data(DEAL_ACTIVITIES, id=lead["id"]))["node"]
    assert subjects(on_lead) == ["First call"]
    assert (await history(org.seller, opportunity))[0]["changes"]["plannedActivities"] == 1


async def test_without_an_account_one_is_made_for_the_owner(org):
    lead = await create_lead(org.seller, estimatedAmount=None)
    named = await create_lead(org.seller)
    done = (
        await org.manager.api.data(
            CONVERT,
            input={
                "leadId": lead["id"],
                "expectedCloseDate": CLOSE,
                "opportunityName": "Fleet renewal",
                "amount": "990.00",
            },
        )
    )["convertLead"]
    assert done["account"]["name"] == lead["title"]
    assert done["opportunity"]["account"]["owner"] == {"id": org.seller.id}
    assert (done["opportunity"]["name"], done["opportunity"]["amount"]) == (
        "Fleet renewal",
        "990.00",
    )
    other = (
        await org.seller.api.data(
            CONVERT,
            input={"leadId": named["id"], "expectedCloseDate": CLOSE, "accountName": "Acme"},
        )
    )["convertLead"]
    assert other["account"]["name"] == "Acme"
    assert other["opportunity"]["amount"] == "0.00"  # the lead had no estimate


async def test_converting_twice_or_a_disqualified_lead_is_a_clear_error(org):
    lead = await create_lead(org.seller)
    done = (
        await org.seller.api.data(CONVERT, input={"leadId": lead["id"], "expectedCloseDate": CLOSE})
    )["convertLead"]
    error = await org.seller.api.error(
        CONVERT, input={"leadId": lead["id"], "expectedCloseDate": CLOSE}
    )
    assert error["extensions"]["code"] == "CONFLICT"
    assert error["extensions"]["field"] == "leadId"
    assert error["extensions"]["opportunityId"] == done["opportunity"]["id"]

    dropped = await create_lead(org.seller, status="DISQUALIFIED")
    error = await org.seller.api.error(
        CONVERT, input={"leadId": dropped["id"], "expectedCloseDate": CLOSE}
    )
    assert (error["extensions"]["code"], error["extensions"]["field"]) == ("CONFLICT", "leadId")
    assert "disqualified" in error["message"]


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"stageId": "U3RhZ2U6MQ=="}, "BAD_USER_INPUT", "stageId"),  # not a PipelineStage id
        ({"amount": "-1"}, "BAD_USER_INPUT", "amount"),
        ({"currency": "euro"}, "BAD_USER_INPUT", "currency"),
        ({"opportunityName": "  "}, "BAD_USER_INPUT", "opportunityName"),
        ({"accountName": ""}, "BAD_USER_INPUT", "accountName"),
        ({"accountName": "Acme", "accountId": "QWNjb3VudDox"}, "BAD_USER_INPUT", "accountName"),
        ({"accountName": "Acme", "leadAccount": True}, "BAD_USER_INPUT", "accountName"),
        ({"expectedVersion": 0}, "CONFLICT", None),
        ({"lostStage": True}, "BAD_USER_INPUT", "stageId"),  # converting is not losing
        ({"leadId": "TGVhZDo5OTk5OTk5"}, "NOT_FOUND", "leadId"),
    ],
)
async def test_a_failed_conversion_changes_nothing(org, change, code, field):
    contact = await create_contact(org.seller)
    account = (
        {"accountId": (await create_account(org.seller))["id"]}
        if change.pop("leadAccount", False)
        else {}
    )
    if change.pop("lostStage", False):
        stages = (await org.seller.api.data(STAGES))["pipelineStages"]
        change["stageId"] = next(stage["id"] for stage in stages if stage["isLost"])
    lead = await create_lead(org.seller, contactId=contact["id"], **account)
    await org.seller.api.data(ADD_FOLLOWER, record=lead["id"], user=org.teammate.id)
    before = (await org.seller.api.data(COUNTS), await history(org.seller, lead["id"]))
    state = (await org.seller.api.data(LEAD_STATE, id=lead["id"]))["node"]

    error = await org.seller.api.error(
        CONVERT, input={"leadId": lead["id"], "expectedCloseDate": CLOSE, **change}
    )
    assert error["extensions"]["code"] == code
    assert error["extensions"].get("field") == field

    assert (await org.seller.api.data(COUNTS), await history(org.seller, lead["id"])) == before
    assert (await org.seller.api.data(LEAD_STATE, id=lead["id"]))["node"] == state


async def test_who_may_convert(org, other_org):
    lead = await create_lead(org.seller)
    convert = {"leadId": lead["id"], "expectedCloseDate": CLOSE}
    assert await org.teammate.api.error_code(CONVERT, input=convert) == "FORBIDDEN"
    assert await org.outsider.api.error_code(CONVERT, input=convert) == "FORBIDDEN"
    assert await other_org.admin.api.error_code(CONVERT, input=convert) == "NOT_FOUND"
    # A seller cannot hand the opportunity to someone else; the manager can, within the team.
    to_teammate = {**convert, "ownerId": org.teammate.id}
    assert await org.seller.api.error_code(CONVERT, input=to_teammate) == "FORBIDDEN"
    done = (await org.manager.api.data(CONVERT, input=to_teammate))["convertLead"]
    assert done["opportunity"]["owner"] == {"id": org.teammate.id}


async def test_followers_see_the_conversion_live(live_server, org):
    lead = await create_lead(org.seller)
    await org.seller.api.data(ADD_FOLLOWER, record=lead["id"], user=org.teammate.id)
    async with live_client(live_server.base_url, org.teammate.api.token) as client:
        feed = await client.subscribe(FOLLOWED_EVENTS, {"after": await cursor(org.teammate)})
        done = (
            await org.seller.api.data(
                CONVERT, input={"leadId": lead["id"], "expectedCloseDate": CLOSE}
            )
        )["convertLead"]
        got = [event(p, "followedEvents") for p in await feed.take(3, timeout=1.0)]
        await feed.expect_nothing(0.3)
    # The follower follows the opportunity from its creation on, as the feed sees it.
    assert [(e["kind"], e["recordId"]) for e in got] == [
        ("CREATED", done["opportunity"]["id"]),
        ("CONVERTED", done["opportunity"]["id"]),
        ("CONVERTED", lead["id"]),
    ]


CONVERTED_FROM = """query($id: ID!) { node(id: $id) { ... on Opportunity {
  convertedFrom { id title convertedOpportunity { id } }
} } }"""
LEADS_CONVERTED = """query($converted: Boolean) {
  leads(first: 50, filter: {converted: $converted}) { totalCount nodes { id } }
}"""
PIPELINE_FROM = """{ opportunities(first: 50) { nodes { id convertedFrom { id } } } }"""


async def test_an_opportunity_links_to_the_lead_it_came_from_for_the_leads_readers(org, other_org):
    lead = await create_lead(org.seller, visibility="PRIVATE")
    await org.seller.api.data(ADD_FOLLOWER, record=lead["id"], user=org.outsider.id)
    done = await org.seller.api.data(
        CONVERT, input={"leadId": lead["id"], "expectedCloseDate": CLOSE}
    )
    opportunity = done["convertLead"]["opportunity"]["id"]
    # The opportunity is opened to the organization; the lead stays private.
    await org.seller.api.data(
        UPDATE["Opportunity"], input={"id": opportunity, "visibility": "ORGANIZATION"}
    )
    direct = await create_opportunity(org.seller)
    other = await create_lead(org.seller)

    link = {"id": lead["id"], "title": lead["title"], "convertedOpportunity": {"id": opportunity}}
    for member in (org.seller, org.manager, org.admin, org.outsider):  # owner, manager, follower
        node = (await member.api.data(CONVERTED_FROM, id=opportunity))["node"]
        assert node == {"convertedFrom": link}, member
        pipeline = (await member.api.data(PIPELINE_FROM))["opportunities"]["nodes"]
        assert {"id": opportunity, "convertedFrom": {"id": lead["id"]}} in pipeline
        assert {"id": direct["id"], "convertedFrom": None} in pipeline
    # Another seller reads the opportunity, not the private lead it came from.
    assert (await org.teammate.api.data(CONVERTED_FROM, id=opportunity))["node"] == {
        "convertedFrom": None
    }
    assert await other_org.admin.api.error_code(CONVERTED_FROM, id=opportunity) == "NOT_FOUND"

    async def leads(member, converted):
        data = (await member.api.data(LEADS_CONVERTED, converted=converted))["leads"]
        assert data["totalCount"] == len(data["nodes"])
        return {node["id"] for node in data["nodes"]}

    assert await leads(org.seller, True) == {lead["id"]}
    assert await leads(org.seller, False) == {other["id"]}
    assert await leads(org.seller, None) == {lead["id"], other["id"]}
    assert await leads(org.teammate, True) == set()  # private
    assert await leads(org.outsider, True) == {lead["id"]}  # a follower
    assert await leads(other_org.admin, True) == set()
