"""Campaigns: templates, launching (once, and resumed after a crash), responses, costs and ROI."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
from tortoise import connections
from tortoise.backends.base.client import TransactionalDBClient
from tortoise.exceptions import IntegrityError
from tortoise.queryset import BulkCreateQuery, UpdateQuery

from models import CampaignMember, Contact, ContactTag, Message
from tests.helpers import (
    DELETE,
    Member,
    Org,
    create_account,
    create_contact,
    create_lead,
    create_opportunity,
    pk,
)
from tests.test_events import history
from tests.test_forecast import stages, update
from tests.test_segments import CREATE as CREATE_SEGMENT

FIELDS = "id name channel status launchedAt subjectTemplate bodyTemplate budget"
CREATE = (
    f"""mutation($input: CreateCampaignInput!) {{ createCampaign(input: $input) {{ {FIELDS} }} }}"""
)
UPDATE = (
    f"""mutation($input: UpdateCampaignInput!) {{ updateCampaign(input: $input) {{ {FIELDS} }} }}"""
)
LAUNCH = f"mutation($id: ID!) {{ launchCampaign(id: $id) {{ {FIELDS} }} }}"
METRICS = """query($id: ID!) { node(id: $id) { ... on Campaign {
  status metrics {
    currency members messaged messagesSent messagesWaiting messagesFailed skippedNoEmail
    skippedDoNotContact responses responseRate leadsSourced opportunitiesSourced pipelineSourced
    wonSourced otherCurrencyOpportunities totalCost budget costPerLead roi roiFormula
    skippedDeleted
  }
} } }"""
MEMBERS = """query($id: ID!) { node(id: $id) { ... on Campaign {
  members(first: 100) { nodes { status skipReason respondedAt contact { id } } }
} } }"""
OUTBOX = """{ messages(first: 100, statuses: [OUTBOX]) { nodes { subject body toEmail } } }"""
COST = (
    """mutation($input: AddCampaignCostInput!) { addCampaignCost(input: $input) { id amount } }"""
)
RESPOND = """mutation($campaign: ID!, $contact: ID!, $responded: Boolean) {
  markCampaignResponse(campaignId: $campaign, contactId: $contact, responded: $responded) {
    status respondedAt
  }
}"""


async def segment(member: Member, tag: str) -> dict[str, Any]:
    values = {"name": f"Tagged {tag}", "filter": {"tags": [tag]}}
    return (await member.api.data(CREATE_SEGMENT, input=values))["createSegment"]


async def campaign(member: Member, **values: Any) -> dict[str, Any]:
    base = {"name": "Spring launch", "channel": "EMAIL"}
    return (await member.api.data(CREATE, input={**base, **values}))["createCampaign"]


PROGRESS = """query($id: ID!) { node(id: $id) { ... on Campaign {
  status launchedAt progress { members messaged skipped pending sent failed waiting }
} } }"""


async def launched(member: Member, campaign_id: str, timeout: float = 60) -> dict[str, Any]:  # noqa: ASYNC109 (a wait for the job, not an I/O timeout)
    """The campaign once its launch's job is through (no longer LAUNCHING)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = (await member.api.data(PROGRESS, id=campaign_id))["node"]
        if found["status"] != "LAUNCHING":
            return found
        assert loop.time() < deadline, f"still launching after {timeout} s: {found}"
        await asyncio.sleep(0.05)


async def metrics(member: Member, campaign_id: str) -> dict[str, Any]:
    return (await member.api.data(METRICS, id=campaign_id))["node"]["metrics"]


async def test_templates_and_plans_are_checked_when_saved(org, other_org):
    theirs = await segment(other_org.manager, "x")
    error = await org.seller.api.error(CREATE, input={"name": "N", "channel": "EMAIL"})
    assert error["extensions"]["code"] == "FORBIDDEN"
    for values, field in (
        ({"subjectTemplate": "Hi {{contact.age}}"}, "subjectTemplate"),
        ({"bodyTemplate": "Dear {{ contact.first_name }}, {{account.revenue}}"}, "bodyTemplate"),
        ({"bodyTemplate": "Dear {{contact.first_name"}, "bodyTemplate"),
        ({"subjectTemplate": "Two\nlines"}, "subjectTemplate"),
        ({"startsOn": "2030-02-01", "endsOn": "2030-01-01"}, "endsOn"),
        ({"budget": "-5"}, "budget"),
        ({"segmentId": theirs["id"]}, "segmentId"),
        ({"name": ""}, "name"),
    ):
        error = await org.manager.api.error(
            CREATE, input={"name": "N", "channel": "EMAIL", **values}
        )
        assert (error["extensions"]["code"], error["extensions"]["field"]) == (
            "BAD_USER_INPUT",
            field,
        ), values
    fields = (await org.seller.api.data("{ mergeFields { name description } }"))["mergeFields"]
    assert {"contact.first_name", "account.name"} <= {f["name"] for f in fields}
    made = await campaign(org.manager, bodyTemplate="Dear {{ contact.first_name }}")
    error = await org.manager.api.error(LAUNCH, id=made["id"])  # no segment yet
    assert (error["extensions"]["code"], error["extensions"]["field"]) == (
        "BAD_USER_INPUT",
        "segmentId",
    )


async def test_an_email_campaign_messages_each_member_once(org):
    tagged = await segment(org.manager, "spring")
    acme = await create_account(org.seller, name="Acme")
    ada = await create_contact(org.seller, firstName="Ada", accountId=acme["id"], tags=["spring"])
    bob = await create_contact(org.seller, firstName="Bob", tags=["spring"])
    await create_contact(org.seller, firstName="NoMail", email=None, tags=["spring"])
    await create_contact(org.seller, firstName="Quiet", doNotContact=True, tags=["spring"])
    deal = await create_opportunity(org.seller, contactId=ada["id"])
    await org.seller.api.data(
        "mutation($r: ID!, $u: ID!) { addFollower(recordId: $r, userId: $u) { id } }",
        r=deal["id"],
        u=org.teammate.id,
    )
    made = await campaign(
        org.manager,
        segmentId=tagged["id"],
        subjectTemplate="News for {{account.name}}",
        bodyTemplate="Dear {{contact.first_name}},\nfrom {{sender.full_name}}.",
    )
    answer = (await org.manager.api.data(LAUNCH, id=made["id"]))["launchCampaign"]
    assert (answer["status"], answer["launchedAt"] is not None) == ("LAUNCHING", True)
    done = await launched(org.manager, made["id"])
    assert done["status"] == "ACTIVE"
    assert done["progress"] == {
        "members": 4, "messaged": 2, "skipped": 2, "pending": 0, "sent": 0, "failed": 0,
        "waiting": 2,
    }  # fmt: skip
    again = await org.manager.api.data(LAUNCH, id=made["id"])  # a resume: messages nobody again
    assert again["launchCampaign"]["status"] == "LAUNCHING"
    assert (await launched(org.manager, made["id"]))["status"] == "ACTIVE"
    await create_contact(org.seller, firstName="Late", tags=["spring"])  # after the snapshot

    found = await metrics(org.seller, made["id"])  # sellers see the results
    assert {
        k: found[k] for k in ("members", "messaged", "skippedNoEmail", "skippedDoNotContact")
    } == {
        "members": 4,
        "messaged": 2,
        "skippedNoEmail": 1,
        "skippedDoNotContact": 1,
    }
    assert (found["messagesWaiting"], found["messagesSent"]) == (2, 0)  # no SMTP: the outbox
    outbox = (await org.manager.api.data(OUTBOX))["messages"]["nodes"]
    mine = sorted((m["toEmail"], m["subject"], m["body"]) for m in outbox)
    manager_name = (await org.manager.api.data("{ viewer { fullName } }"))["viewer"]["fullName"]
    assert mine == sorted(
        [
            (ada["email"], "News for Acme", f"Dear Ada,\nfrom {manager_name}."),
            (bob["email"], "News for ", f"Dear Bob,\nfrom {manager_name}."),
        ]
    )
    assert await Message.filter(campaign_id=pk(made["id"])).count() == 2
    skipped = [
        m["skipReason"]
        for m in (await org.seller.api.data(MEMBERS, id=made["id"]))["node"]["members"]["nodes"]
        if m["status"] == "SKIPPED"
    ]
    assert sorted(skipped) == ["DO_NOT_CONTACT", "NO_EMAIL"]
    # Each member messaged names its own message (set by the statement that claims it).
    sent_to = dict(
        await Message.filter(campaign_id=pk(made["id"])).values_list("to_contact_id", "id")
    )
    assert sorted(sent_to) == sorted([pk(ada["id"]), pk(bob["id"])])
    named = await CampaignMember.filter(campaign_id=pk(made["id"]), status="MESSAGED").values_list(
        "contact_id", "message_id"
    )
    assert dict(named) == sent_to
    # A second message of the campaign to the same contact is refused by the database (the
    # claim's subquery finds a member's message by its contact).
    first = await Message.get(id=sent_to[pk(ada["id"])])
    copy = {
        name: getattr(first, name)
        for name in ("organization_id", "sender_id", "to_contact_id", "to_email", "campaign_id")
    }
    with pytest.raises(IntegrityError):
        await Message.create(**copy, subject="Again", body="Again")
    await Message.create(**{**copy, "campaign_id": None}, subject="Apart", body="Apart")

    # Ada's open opportunity tells its followers that the campaign wrote to her.
    events = await history(org.seller, deal["id"])
    assert events[0]["kind"] == "CAMPAIGN_MESSAGE_SENT"
    assert events[0]["changes"]["campaignId"] == made["id"]
    assert pk(events[0]["changes"]["messageId"]) == sent_to[pk(ada["id"])]
    unread = await org.teammate.api.data("{ unreadNotificationCount }")
    assert unread["unreadNotificationCount"] >= 1

    error = await org.manager.api.error(
        UPDATE, input={"id": made["id"], "bodyTemplate": "Changed {{contact.first_name}}"}
    )
    assert (error["extensions"]["code"], error["extensions"]["field"]) == (
        "CONFLICT",
        "bodyTemplate",
    )
    error = await org.seller.api.error(LAUNCH, id=made["id"])
    assert error["extensions"]["code"] == "FORBIDDEN"


async def _tagged_contacts(org: Org, tag: str, count: int) -> None:
    """Many contacts at once, straight into the database (the API would take minutes)."""
    owner = pk(org.seller.id)
    organization_id = (
        await Contact.get(id=pk((await create_contact(org.seller))["id"]))
    ).organization_id
    contacts = [
        Contact(
            organization_id=organization_id,
            first_name=f"Bulk{n}",
            last_name="Contact",
            email=f"bulk{n}.{tag}@client.example",
            owner_id=owner,
        )
        for n in range(count)
    ]
    await Contact.bulk_create(contacts, batch_size=500)
    ids = await Contact.filter(email__endswith=f".{tag}@client.example").values_list(
        "id", flat=True
    )
    await ContactTag.bulk_create([ContactTag(contact_id=i, tag=tag) for i in ids], batch_size=500)


async def test_metrics_and_roi_match_the_hand_computed_ones(org):
    pipeline = await stages(org.seller)
    tagged = await segment(org.manager, "roi")
    people = [await create_contact(org.seller, tags=["roi"]) for _ in range(3)]
    people.append(await create_contact(org.seller, email=None, tags=["roi"]))
    made = await campaign(
        org.manager, segmentId=tagged["id"], subjectTemplate="S", bodyTemplate="B", budget="1000"
    )
    await org.manager.api.data(LAUNCH, id=made["id"])
    await launched(org.manager, made["id"])
    for amount in ("300.00", "200.00"):
        await org.manager.api.data(
            COST, input={"campaignId": made["id"], "description": "Ads", "amount": amount}
        )
    sourced = {"campaignId": made["id"]}
    await create_lead(org.seller, **sourced)
    await create_lead(org.seller, **sourced)
    gone = await create_lead(org.seller, **sourced)
    await org.seller.api.data(DELETE["Lead"], id=gone["id"])  # deleted: not counted
    await create_opportunity(org.seller, amount="1000.00", currency="USD", **sourced)
    won = await create_opportunity(org.seller, amount="1500.00", currency="USD", **sourced)
    await update(org.seller, id=won["id"], stageId=pipeline["Closed won"]["id"])
    euros = await create_opportunity(org.seller, amount="700.00", currency="EUR", **sourced)
    await update(org.seller, id=euros["id"], stageId=pipeline["Closed won"]["id"])
    lost = await create_opportunity(org.seller, amount="400.00", currency="USD", **sourced)
    await update(
        org.seller, id=lost["id"], stageId=pipeline["Closed lost"]["id"], lostReason="Price"
    )
    await org.seller.api.data(RESPOND, campaign=made["id"], contact=people[0]["id"])

    assert await metrics(org.seller, made["id"]) == {
        "currency": "USD",
        "members": 4,
        "messaged": 3,
        "messagesSent": 0,
        "messagesWaiting": 3,
        "messagesFailed": 0,
        "skippedNoEmail": 1,
        "skippedDoNotContact": 0,
        "skippedDeleted": 0,
        "responses": 1,
        "responseRate": "25.00",  # 1 / 4
        "leadsSourced": 2,
        "opportunitiesSourced": 4,
        "pipelineSourced": "1000.00",  # the open one; lost and won ones are not pipeline
        "wonSourced": "1500.00",  # the EUR win is counted apart
        "otherCurrencyOpportunities": 1,
        "totalCost": "500.00",
        "budget": "1000.00",
        "costPerLead": "250.00",  # 500 / 2
        "roi": "2.0000",  # (1500 - 500) / 500
        "roiFormula": "(1500.00 - 500.00) / 500.00 = 2.0000",
    }


async def test_responses_follow_the_rules_and_reach_followers(org, other_org):
    tagged = await segment(org.manager, "resp")
    mine = await create_contact(org.seller, tags=["resp"])
    theirs = await create_contact(org.outsider, tags=["resp"])
    outside = await create_contact(org.seller)
    deal = await create_opportunity(org.seller, contactId=mine["id"])
    made = await campaign(org.manager, channel="EVENT", segmentId=tagged["id"])
    await org.manager.api.data(LAUNCH, id=made["id"])
    assert (await launched(org.manager, made["id"]))["status"] == "ACTIVE"
    members = (await org.seller.api.data(MEMBERS, id=made["id"]))["node"]["members"]["nodes"]
    assert {m["status"] for m in members} == {"INCLUDED"}  # an event sends no email

    answered = await org.seller.api.data(RESPOND, campaign=made["id"], contact=mine["id"])
    assert answered["markCampaignResponse"]["respondedAt"] is not None
    events = await history(org.seller, deal["id"])
    assert (events[0]["kind"], events[0]["changes"]["responded"]) == ("CAMPAIGN_RESPONSE", True)
    for member, contact, code, field in (
        (org.seller, theirs["id"], "FORBIDDEN", None),  # another seller's contact
        (org.manager, outside["id"], "BAD_USER_INPUT", "contactId"),  # not a member
        (other_org.admin, mine["id"], "NOT_FOUND", "campaignId"),
    ):
        error = await member.api.error(RESPOND, campaign=made["id"], contact=contact)
        assert error["extensions"]["code"] == code
        assert error["extensions"].get("field") == field
    taken_back = await org.manager.api.data(
        RESPOND, campaign=made["id"], contact=mine["id"], responded=False
    )
    assert taken_back["markCampaignResponse"]["respondedAt"] is None
    assert (await metrics(org.manager, made["id"]))["responses"] == 0
    error = await other_org.admin.api.error(METRICS, id=made["id"])
    assert error["extensions"]["code"] == "NOT_FOUND"
    cancel = "mutation($id: ID!) { cancelCampaign(id: $id) { status } }"
    assert (await org.manager.api.data(cancel, id=made["id"]))["cancelCampaign"]["status"] == (
        "CANCELLED"
    )
    error = await org.manager.api.error(LAUNCH, id=made["id"])
    assert error["extensions"]["code"] == "CONFLICT"


async def test_two_launches_at_once_message_each_member_once(org):
    size = 150
    tag = f"twice{pk(org.admin.id)}"
    await _tagged_contacts(org, tag, size)
    made = await campaign(
        org.manager,
        segmentId=(await segment(org.manager, tag))["id"],
        subjectTemplate="S",
        bodyTemplate="B",
    )
    await asyncio.gather(*(org.manager.api.data(LAUNCH, id=made["id"]) for _ in range(2)))
    await launched(org.manager, made["id"])
    messages = await Message.filter(campaign_id=pk(made["id"])).values_list(
        "to_contact_id", flat=True
    )
    assert len(messages) == size
    assert len(set(messages)) == size


async def test_a_launchs_transactions_only_send_statements_built_before_them(org, monkeypatch):
    """A record transaction of a launch (the campaign's counts, the messages, the members'
    claims and skips) builds none of its statements inside it: they are built before it,
    between the job's turns, and the transaction only sends them (resolvers/prepared.py)."""
    built: list[tuple[str, bool]] = []

    def inside() -> bool:
        return isinstance(connections.get("default"), TransactionalDBClient)

    def recording() -> bool:  # called by the record of a batch (`_record`)
        frame = sys._getframe(2)
        while frame is not None and frame.f_code.co_name != "_record":
            frame = frame.f_back  # type: ignore[assignment]
        return frame is not None

    make_update, make_insert = UpdateQuery._make_query, BulkCreateQuery._make_queries

    def spy_update(self: UpdateQuery) -> None:
        if recording():
            built.append((f"update {self.model.__name__}", inside()))
        make_update(self)

    def spy_insert(self: BulkCreateQuery, omit: Any) -> Any:
        if recording():
            built.append((f"insert {self.model.__name__}", inside()))
        return make_insert(self, omit)

    tag = f"built{pk(org.admin.id)}"
    await _tagged_contacts(org, tag, 3)
    await create_contact(org.seller, firstName="NoMail", email=None, tags=[tag])
    made = await campaign(
        org.manager,
        segmentId=(await segment(org.manager, tag))["id"],
        subjectTemplate="S",
        bodyTemplate="B",
    )
    monkeypatch.setattr(UpdateQuery, "_make_query", spy_update)
    monkeypatch.setattr(BulkCreateQuery, "_make_queries", spy_insert)
    await org.manager.api.data(LAUNCH, id=made["id"])
    assert (await launched(org.manager, made["id"]))["status"] == "ACTIVE"
    assert {name for name, _ in built} == {
        "update Campaign", "insert Message", "update CampaignMember"
    }, built  # fmt: skip
    assert [name for name, within in built if within] == [], built


async def test_a_launch_takes_a_turn_every_few_messages_it_renders(org, monkeypatch):
    """While it renders a batch's messages, a launch takes a turn (resolvers/foreground.py)
    every RENDER_TURN members, so that a request arriving meanwhile waits for a few messages'
    rendering, not a batch's."""
    from resolvers import campaign as campaigns
    from resolvers.foreground import Courtesy

    events: list[str] = []
    render, turn = campaigns.Template.render, Courtesy.turn

    def spy_render(self: Any, values: dict[str, str]) -> str:
        events.append("render")
        return render(self, values)

    async def spy_turn(self: Courtesy) -> None:
        events.append("turn")
        await turn(self)

    tag = f"turns{pk(org.admin.id)}"
    await _tagged_contacts(org, tag, 30)
    made = await campaign(
        org.manager,
        segmentId=(await segment(org.manager, tag))["id"],
        subjectTemplate="S {{contact.first_name}}",
        bodyTemplate="B",
    )
    monkeypatch.setattr(campaigns.Template, "render", spy_render)
    monkeypatch.setattr(Courtesy, "turn", spy_turn)
    await org.manager.api.data(LAUNCH, id=made["id"])
    assert (await launched(org.manager, made["id"]))["status"] == "ACTIVE"
    assert events.count("render") == 60  # a subject and a body for each of the 30
    runs = "".join("r" if event == "render" else "|" for event in events).split("|")
    assert max(len(run) for run in runs) <= 2 * campaigns.RENDER_TURN == 10, runs
