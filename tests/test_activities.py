"""Activities: plan, reschedule, complete, cancel; the agenda; events on the deal's history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import create_account, create_contact, create_lead, create_opportunity
from tests.test_deals import ADD_FOLLOWER
from tests.test_events import history
from tests.test_live import FOLLOWED_EVENTS, cursor, event
from tests.ws import live_client

FIELDS = """id kind subject notes startsAt dueDate durationMinutes status outcome closedAt version
  owner { id } account { id } contact { id } deal { id } attendees { id }"""
PLAN = f"mutation($input: PlanActivityInput!) {{ planActivity(input: $input) {{ {FIELDS} }} }}"
RESCHEDULE = f"""mutation($input: RescheduleActivityInput!) {{
  rescheduleActivity(input: $input) {{ {FIELDS} }}
}}"""
COMPLETE = f"""mutation($id: ID!, $outcome: String) {{
  completeActivity(id: $id, outcome: $outcome) {{ {FIELDS} }}
}}"""
CANCEL = f"""mutation($id: ID!, $reason: String) {{
  cancelActivity(id: $id, reason: $reason) {{ {FIELDS} }}
}}"""
AGENDA = """query($filter: AgendaFilter) {
  agenda(first: 50, filter: $filter) { totalCount nodes { id subject status } }
}"""
DEAL_ACTIVITIES = """query($id: ID!) { node(id: $id) { ... on Deal {
  activities(first: 10) { nodes { id subject } }
} } }"""
NODE = "query($id: ID!) { node(id: $id) { id ... on Activity { subject } } }"

NOW = datetime.now(UTC).replace(microsecond=0)


def at(hours: float) -> str:
    return (NOW + timedelta(hours=hours)).isoformat()


def on(days: int) -> str:
    return (NOW.date() + timedelta(days=days)).isoformat()


async def plan(member, **values):
    base = {"kind": "CALL", "subject": "Discovery call", "startsAt": at(24)}
    return (await member.api.data(PLAN, input={**base, **values}))["planActivity"]


async def test_an_activity_on_an_opportunity_is_in_its_history_and_reaches_followers_live(
    live_server, org
):
    opportunity = await create_opportunity(org.seller)
    cfo, buyer = await create_contact(org.seller), await create_contact(org.seller)
    await org.seller.api.data(ADD_FOLLOWER, record=opportunity["id"], user=org.teammate.id)
    async with live_client(live_server.base_url, org.teammate.api.token) as client:
        feed = await client.subscribe(FOLLOWED_EVENTS, {"after": await cursor(org.teammate)})
        call = await plan(
            org.seller,
            opportunityId=opportunity["id"],
            contactId=buyer["id"],
            durationMinutes=30,
            notes="Budget and timing",
            attendeeIds=[cfo["id"], buyer["id"], cfo["id"]],
        )
        planned = event(await feed.next(timeout=1.0), "followedEvents")
    assert (call["status"], call["durationMinutes"], call["notes"]) == (
        "PLANNED",
        30,
        "Budget and timing",
    )
    assert call["deal"] == {"id": opportunity["id"]}
    assert call["owner"] == {"id": org.seller.id}
    assert call["contact"] == {"id": buyer["id"]}
    assert [a["id"] for a in call["attendees"]] == [cfo["id"], buyer["id"]]
    assert planned["kind"] == "ACTIVITY_PLANNED"
    assert planned["changes"]["activityId"] == call["id"]
    assert planned["changes"]["activityKind"] == "CALL"
    assert planned["changes"]["subject"] == "Discovery call"
    listed = (await org.teammate.api.data(DEAL_ACTIVITIES, id=opportunity["id"]))["node"]
    assert listed["activities"]["nodes"] == [{"id": call["id"], "subject": "Discovery call"}]
    assert (await org.teammate.api.data(NODE, id=call["id"]))["node"]["subject"] == (
        "Discovery call"
    )


async def test_reschedule_complete_and_cancel(org):
    lead = await create_lead(org.seller)
    call = await plan(org.seller, leadId=lead["id"])
    moved = (
        await org.seller.api.data(
            RESCHEDULE, input={"id": call["id"], "startsAt": at(48), "durationMinutes": 45}
        )
    )["rescheduleActivity"]
    assert (moved["durationMinutes"], moved["version"]) == (45, call["version"] + 1)
    done = (await org.seller.api.data(COMPLETE, id=call["id"], outcome="They want a demo"))[
        "completeActivity"
    ]
    assert (done["status"], done["outcome"]) == ("DONE", "They want a demo")
    assert done["closedAt"] is not None
    again = await org.seller.api.error(COMPLETE, id=call["id"])
    assert again["extensions"]["code"] == "CONFLICT"
    assert await org.seller.api.error_code(CANCEL, id=call["id"]) == "CONFLICT"
    assert await org.seller.api.error_code(
        RESCHEDULE, input={"id": call["id"], "startsAt": at(1)}
    ) == ("CONFLICT")

    visit = await plan(org.seller, kind="VISIT", leadId=lead["id"])
    cancelled = (await org.manager.api.data(CANCEL, id=visit["id"], reason="Client sick"))[
        "cancelActivity"
    ]
    assert (cancelled["status"], cancelled["outcome"]) == ("CANCELLED", "Client sick")

    kinds = [e["kind"] for e in await history(org.seller, lead["id"])]
    assert kinds[:5] == [
        "ACTIVITY_CANCELLED",
        "ACTIVITY_PLANNED",
        "ACTIVITY_COMPLETED",
        "ACTIVITY_RESCHEDULED",
        "ACTIVITY_PLANNED",
    ]
    rescheduled = (await history(org.seller, lead["id"]))[3]
    assert rescheduled["changes"]["durationMinutes"] == {"old": None, "new": 45}
    assert set(rescheduled["changes"]) == {
        "startsAt",
        "durationMinutes",
        "activityId",
        "activityKind",
    }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"dueDate": None}, "startsAt"),  # neither a start time nor a due date
        ({"subject": " "}, "subject"),
        ({"durationMinutes": 0}, "durationMinutes"),
        ({"durationMinutes": 7 * 24 * 60 + 1}, "durationMinutes"),
        ({"leadId": None, "accountId": None}, "accountId"),
        ({"opportunityId": "T3Bwb3J0dW5pdHk6OTk5OTk5"}, "opportunityId"),
        ({"attendeeIds": ["Q29udGFjdDo5OTk5OTk5"]}, "attendeeIds.0"),
        ({"ownerId": "VXNlcjo5OTk5OTk5"}, "ownerId"),
        ({"dueDate": None, "startsAt": "0001-01-01T00:30:00+01:00"}, "startsAt"),
        ({"dueDate": None, "startsAt": "9999-12-31T23:30:00-01:00"}, "startsAt"),
        ({"dueDate": "1900-01-01"}, "dueDate"),
    ],
)
async def test_bad_input_names_its_field_and_plans_nothing(org, change, field):
    lead = await create_lead(org.seller)
    before = (await org.seller.api.data(AGENDA))["agenda"]["totalCount"]
    error = await org.seller.api.error(
        PLAN,
        input={
            "kind": "TASK",
            "subject": "Send the offer",
            "dueDate": on(1),
            "leadId": lead["id"],
            **change,
        },
    )
    assert (error["extensions"]["code"], error["extensions"]["field"]) == ("BAD_USER_INPUT", field)
    assert (await org.seller.api.data(AGENDA))["agenda"]["totalCount"] == before
    assert [e["kind"] for e in await history(org.seller, lead["id"])] == ["CREATED"]


async def test_one_lead_or_one_opportunity(org):
    lead, opportunity = await create_lead(org.seller), await create_opportunity(org.seller)
    error = await org.seller.api.error(
        PLAN,
        input={
            "kind": "CALL",
            "subject": "x",
            "startsAt": at(1),
            "leadId": lead["id"],
            "opportunityId": opportunity["id"],
        },
    )
    assert error["extensions"]["field"] == "opportunityId"


async def test_the_agenda_in_time_order_and_the_overdue_ones(org):
    account = await create_account(org.seller)
    later = await plan(org.seller, accountId=account["id"], subject="later", startsAt=at(30))
    soon = await plan(org.seller, accountId=account["id"], subject="soon", startsAt=at(2))
    missed = await plan(org.seller, accountId=account["id"], subject="missed", startsAt=at(-2))
    late = await plan(
        org.seller,
        accountId=account["id"],
        subject="late",
        kind="TASK",
        startsAt=None,
        dueDate=on(-1),
    )
    today = await plan(
        org.seller,
        accountId=account["id"],
        subject="today",
        kind="TASK",
        startsAt=None,
        dueDate=on(0),
    )
    finished = await plan(org.seller, accountId=account["id"], subject="finished", startsAt=at(-5))
    await org.seller.api.data(COMPLETE, id=finished["id"])
    await plan(org.teammate, accountId=account["id"], subject="not mine", startsAt=at(1))

    agenda = (await org.seller.api.data(AGENDA))["agenda"]
    subjects = [a["subject"] for a in agenda["nodes"]]
    # Tasks sort at the start of their due day (UTC).
    expected = sorted(
        [
            (NOW + timedelta(hours=30), "later"),
            (NOW + timedelta(hours=2), "soon"),
            (NOW - timedelta(hours=2), "missed"),
            (NOW - timedelta(hours=5), "finished"),
            (datetime.combine(NOW.date() - timedelta(days=1), datetime.min.time(), UTC), "late"),
            (datetime.combine(NOW.date(), datetime.min.time(), UTC), "today"),
        ]
    )
    assert subjects == [subject for _, subject in expected]
    window = {"from": at(1), "to": at(31)}
    ranged = (await org.seller.api.data(AGENDA, filter=window))["agenda"]["nodes"]
    assert [a["id"] for a in ranged] == [soon["id"], later["id"]]
    overdue = (await org.seller.api.data(AGENDA, filter={"overdue": True}))["agenda"]["nodes"]
    assert {a["id"] for a in overdue} == {missed["id"], late["id"]}
    done = (await org.seller.api.data(AGENDA, filter={"statuses": ["DONE"]}))["agenda"]["nodes"]
    assert [a["id"] for a in done] == [finished["id"]]
    assert today["id"] in {a["id"] for a in agenda["nodes"]}
    backwards = {"from": at(5), "to": at(1)}
    error = await org.seller.api.error(AGENDA, filter=backwards)
    assert (error["extensions"]["code"], error["extensions"]["field"]) == ("BAD_USER_INPUT", "to")


async def test_who_sees_whose_agenda_and_who_changes_an_activity(org, other_org):
    account = await create_account(org.seller)
    call = await plan(org.seller, accountId=account["id"])
    mine = {"ownerId": org.seller.id}
    for member in (org.seller, org.manager, org.admin):
        nodes = (await member.api.data(AGENDA, filter=mine))["agenda"]["nodes"]
        assert [a["id"] for a in nodes] == [call["id"]]
    assert await org.teammate.api.error_code(AGENDA, filter=mine) == "FORBIDDEN"
    foreign = {"ownerId": other_org.seller.id}
    assert await org.seller.api.error_code(AGENDA, filter=foreign) == "BAD_USER_INPUT"

    assert await org.teammate.api.error_code(COMPLETE, id=call["id"]) == "FORBIDDEN"
    assert await other_org.admin.api.error_code(COMPLETE, id=call["id"]) == "NOT_FOUND"
    assert await other_org.admin.api.error_code(NODE, id=call["id"]) == "NOT_FOUND"
    # Planning for someone else follows the assignment rules.
    to_teammate = {"ownerId": org.teammate.id, "accountId": account["id"]}
    assert await org.seller.api.error_code(
        PLAN, input={"kind": "CALL", "subject": "x", "startsAt": at(1), **to_teammate}
    ) == ("FORBIDDEN")
    assigned = await plan(org.manager, **to_teammate)
    assert assigned["owner"] == {"id": org.teammate.id}


async def test_activities_of_a_private_record_are_out_of_reach_with_it(org):
    lead = await create_lead(org.seller, visibility="PRIVATE")
    call = await plan(org.seller, leadId=lead["id"])
    assert await org.teammate.api.error_code(NODE, id=call["id"]) == "NOT_FOUND"
    assert (await org.manager.api.data(NODE, id=call["id"]))["node"]["id"] == call["id"]
    # Nor can someone who may not read it plan on it.
    error = await org.teammate.api.error(
        PLAN, input={"kind": "CALL", "subject": "x", "startsAt": at(1), "leadId": lead["id"]}
    )
    assert (error["extensions"]["code"], error["extensions"]["field"]) == (
        "BAD_USER_INPUT",
        "leadId",
    )


async def test_a_time_without_an_offset_is_utc(org):
    account = await create_account(org.seller)
    call = await plan(org.seller, accountId=account["id"], startsAt="2030-01-01T10:00:00")
    assert call["startsAt"] == "2030-01-01T10:00:00+00:00"
    window = {"from": "2030-01-01T09:00:00Z", "to": "2030-01-01T11:00:00Z"}
    found = (await org.seller.api.data(AGENDA, filter=window))["agenda"]["nodes"]
    assert [a["id"] for a in found] == [call["id"]]


async def test_an_activity_goes_only_to_an_owner_who_may_read_its_record(org):
    lead = await create_lead(org.manager, visibility="PRIVATE")
    values = {"leadId": lead["id"], "ownerId": org.seller.id}
    error = await org.manager.api.error(
        PLAN, input={"kind": "CALL", "subject": "x", "startsAt": at(1), **values}
    )
    assert (error["extensions"]["code"], error["extensions"]["field"]) == (
        "BAD_USER_INPUT",
        "ownerId",
    )
    await org.manager.api.data(ADD_FOLLOWER, record=lead["id"], user=org.seller.id)
    assigned = await plan(org.manager, **values)
    assert (await org.seller.api.data(NODE, id=assigned["id"]))["node"]["id"] == assigned["id"]


TEAM_AGENDA = """query($filter: AgendaFilter, $first: Int, $after: String) {
  agenda(first: $first, after: $after, filter: $filter) {
    totalCount pageInfo { hasNextPage endCursor } nodes { id owner { id } }
  }
}"""


async def test_a_managers_team_agenda_follows_the_chain_and_a_sellers_is_their_own(org, other_org):
    sub = await org.add_user("SALES_MANAGER", org.manager)  # reports to the manager
    deep = await org.add_user("SELLER", sub)  # the manager's report's report
    people = [org.admin, org.manager, org.seller, org.teammate, org.outsider, sub, deep]
    account = await create_account(org.admin)
    planned = {}
    for hours, member in enumerate(people, start=1):
        # Later hours for earlier people: the agenda's time order is not the owners' order.
        activity = await plan(member, accountId=account["id"], startsAt=at(100 - hours))
        planned[member.id] = activity["id"]

    async def agenda_of(member, **filters):
        nodes = []
        after = None
        while True:  # by pages of two: the keyset order holds across owners
            data = await member.api.data(TEAM_AGENDA, filter=filters, first=2, after=after)
            nodes += data["agenda"]["nodes"]
            if not data["agenda"]["pageInfo"]["hasNextPage"]:
                return [(node["owner"]["id"], node["id"]) for node in nodes]
            after = data["agenda"]["pageInfo"]["endCursor"]

    def expected(*members):
        ordered = [m for m in reversed(people) if m in members]  # time order
        return [(m.id, planned[m.id]) for m in ordered]

    chain = (org.manager, org.seller, org.teammate, sub, deep)
    assert await agenda_of(org.manager, team=True) == expected(*chain)
    assert await agenda_of(sub, team=True) == expected(sub, deep)
    assert await agenda_of(org.admin, team=True) == expected(*people)
    for seller in (org.seller, org.outsider, deep):
        assert await agenda_of(seller, team=True) == expected(seller)
    assert await agenda_of(other_org.admin, team=True) == []
    # Chosen members of the team, under the same rule as one member's agenda.
    picked = {"ownerIds": [org.seller.id, deep.id]}
    assert await agenda_of(org.manager, **picked) == expected(org.seller, deep)
    assert (
        await org.manager.api.error_code(
            TEAM_AGENDA, filter={"ownerIds": [org.seller.id, org.outsider.id]}
        )
        == "FORBIDDEN"
    )
    assert await sub.api.error_code(TEAM_AGENDA, filter=picked) == "FORBIDDEN"
    assert (
        await org.seller.api.error_code(TEAM_AGENDA, filter={"ownerIds": [org.teammate.id]})
        == "FORBIDDEN"
    )
    for filters, field in (
        ({"ownerIds": [org.seller.id, other_org.seller.id]}, "filter.ownerIds.1"),
        ({"team": True, "ownerId": org.seller.id}, "filter.team"),
    ):
        error = await org.admin.api.error(TEAM_AGENDA, filter=filters)
        assert (error["extensions"]["code"], error["extensions"]["field"]) == (
            "BAD_USER_INPUT",
            field,
        )
