"""Operation plans (schema/engine/plans.py) answer exactly as graphql-core does.

A second app serves the same database with OPERATION_PLANS=off. Every query here must
get the same response from both, keys in the same order, for each viewer: the rules of who reads
what are the same on both paths. /metrics shows which path each operation took.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from graphql import FragmentDefinitionNode, parse
from tortoise import Tortoise
from tortoise.expressions import Q
from tortoise.queryset import QuerySet

from config import Settings
from models import Account, Contact, Opportunity, User
from resolvers.errors import forbidden
from resolvers.loaders import Loaders, fetch, instances
from schema import build_schema
from schema.engine.cost import operation_of
from schema.engine.plans import NO_COMPARE, ListOf, Objects, Plan, Selection, compile_plan
from schema.engine.projections import BATCHED, COVERED, sql_declarations
from tests.conftest import PLANS_COMPARE
from tests.helpers import (
    DELETE,
    Api,
    Member,
    Org,
    create_contact,
    create_lead,
    create_opportunity,
    pk,
    wait_for_subscriptions,
)
from tests.test_activities import plan
from tests.test_deals import ADD_FOLLOWER, COMMENT
from tests.test_pipeline_sql import PIPELINE, seed_pipeline
from tests.ws import live_client

FRAGMENTS = """
query Fragments($first: Int!) {
  opportunities(first: $first, orderBy: {field: NAME, direction: ASC}) {
    totalCount
    nodes {
      ...DealFields
      ... on Opportunity { amount stage { ...StageFields } }
      primary: contact { id }
      contact { email }
    }
    edges { cursor node { __typename id who: owner { name: fullName } } }
    pageInfo { ...Paging }
  }
}
fragment DealFields on Deal {
  id __typename visibility
  owner { id fullName role manager { id fullName manager { email } } }
  contact { id fullName tags account { id name owner { email } } }
  participants { role addedAt contact { id lifecycleStage doNotContact } }
}
fragment StageFields on PipelineStage { name position isWon isLost forecastCategory }
fragment Paging on PageInfo { hasNextPage hasPreviousPage startCursor endCursor }
"""

PEOPLE = """
{
  contacts(first: 50) { edges { node { id fullName email tags account { name } owner { id } } } }
  users(first: 20) { totalCount nodes { id fullName role isActive manager { fullName } } }
  leads(first: 20) { nodes { id title account { name } contact { email } followers { id } } }
}
"""

# On PostgreSQL, every relation here is read as JSON by one statement per level
# (schema/engine/projections.py): enums, __typename and aliases inside, relations of relations.
PROJECTED = """
{
  opportunities(first: 20) { nodes {
    primary: contact { __typename id lifecycleStage doNotContact lifecyclePinned phone title
      account { name website owner { role isActive } } owner { email } }
    participants { contact { kind: __typename fullName email } }
    stage { position isWon isLost forecastCategory }
  } }
  leads(first: 20) { nodes { isFollowedByViewer owner { fullName } account { city country } } }
}
"""

# The pipeline board's page: the figures, the board orders, the lead a deal came from, the
# team agenda.
BOARD = """
{
  opportunityStageSummary {
    stage { id name position } count totals { currency count amount weightedAmount }
  }
  opportunities(first: 20, orderBy: {field: STAGE, direction: DESC}) {
    nodes { id probability convertedFrom { id title } owner { fullName } }
  }
  leads(first: 20, orderBy: {field: OWNER_NAME}, filter: {converted: false}) { nodes { id } }
  agenda(first: 20, filter: {team: true}) { nodes { id activityKind subject } }
}
"""
# Selects every field declared in SQL that the documents above leave out: a lead's participants,
# followers and relations, deals' followers, managers (test_every_field_declared_in_sql_is_covered
# checks that together they run every declaration).
COVERAGE = """
{
  opportunities(first: 20) { nodes { isFollowedByViewer followers { id fullName manager { id } } } }
  leads(first: 20) { nodes {
    participants { role contact { id fullName email owner { id } account { name owner { id } } } }
    contact { id fullName } owner { id manager { fullName } } followers { id } isFollowedByViewer
  } }
}
"""
DOCUMENTS = [
    (PIPELINE, {"first": 20}),
    (FRAGMENTS, {"first": 20}),
    (PEOPLE, {}),
    (PROJECTED, {}),
    (COVERAGE, {}),
    (BOARD, {}),
]

# Each of these has no plan: graphql-core runs them on both servers.
UNPLANNED = {
    "a nested field with arguments": """{ opportunities(first: 5) { nodes { id
        comments(first: 2) { totalCount } } } }""",
    "an abstract root field": """query($id: ID!) { node(id: $id) { id ... on Opportunity {
        name account { name } } } }""",
    "a directive": """query($on: Boolean!) { opportunities(first: 5) { nodes { id
        name @include(if: $on) } } }""",
}

# Each of these fails in a root resolver: the planned run answers with the error, as graphql-core.
FAILING = {
    "a negative page": "{ opportunities(first: -1) { nodes { id } } }",
    "a malformed id": """{ opportunities(first: 5, filter: {ownerIds: ["nope"]}) {
        nodes { id } } }""",
}

# A root resolver that reads (the user asked for) and then refuses: its error, once.
AGENDA = """query($owner: ID!) { agenda(filter: {ownerId: $owner}) { nodes { id } } }"""
AGENDA_UNPLANNED = """query($owner: ID!) { agenda(filter: {ownerId: $owner}) {
  nodes { id @include(if: true) } } }"""


async def _plan_counts(http: httpx.AsyncClient) -> dict[str, float]:
    """Operations by path ("planned", ...), and by path and reason ("fallback null", ...)."""
    counts = {"planned": 0.0, "shared": 0.0, "fallback": 0.0, "unplanned": 0.0}
    for line in (await http.get("/metrics")).text.splitlines():
        if line.startswith("crm_graphql_operation_plans_total{"):
            path = line.split('path="')[1].split('"')[0]
            reason = line.split('reason="')[1].split('"')[0]
            counts[path] += float(line.split()[-1])
            counts[f"{path} {reason}"] = float(line.split()[-1])
    return counts


@pytest.fixture
async def graphql_core(live_server: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An app on the same database, in this process, that runs every operation on
    graphql-core."""
    async with (
        live_server.serve(operation_plans=False) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=30) as client,
    ):
        yield client


@pytest.fixture
async def seeded(org: Org) -> Org:
    """The pipeline's data set, and the cases a plan must get right: a participant whose
    contact is deleted, an opportunity without a primary contact, tags, a private opportunity
    of a teammate, a lead with an account, and a contact without one."""
    await seed_pipeline(org.seller.id, 12)
    gone = await create_contact(org.seller)
    deal = await create_opportunity(org.seller)
    await org.seller.api.data(
        """mutation($r: ID!, $c: ID!) { addParticipant(input: {recordId: $r, contactId: $c}) {
            id } }""",
        r=deal["id"],
        c=gone["id"],
    )
    await org.seller.api.data(DELETE["Contact"], id=gone["id"])
    org.extra["gone"] = gone["id"]
    await create_opportunity(org.teammate, visibility="PRIVATE")
    tagged = await create_contact(org.seller)
    await org.seller.api.data(
        """mutation($id: ID!) { updateContact(input: {id: $id, tags: ["vip", "board"]}) {
            id } }""",
        id=tagged["id"],
    )
    account = (await org.seller.api.data("{ accounts(first: 1) { nodes { id } } }"))["accounts"]
    lead = await create_lead(
        org.seller, accountId=account["nodes"][0]["id"], contactId=tagged["id"]
    )
    await org.seller.api.data(
        """mutation($r: ID!, $c: ID!) { addParticipant(input: {recordId: $r, contactId: $c,
            role: "CFO"}) { id } }""",
        r=lead["id"],
        c=(await create_contact(org.seller))["id"],
    )
    await org.seller.api.data(ADD_FOLLOWER, record=lead["id"], user=org.manager.id)
    return org


def _viewers(org: Org, other: Org) -> list[Member]:
    return [org.admin, org.manager, org.seller, org.teammate, org.outsider, other.admin]


async def _same_answer(
    member: Member, graphql_core: httpx.AsyncClient, query: str, variables: dict[str, Any]
) -> dict[str, Any]:
    planned = await member.api.post(query, variables)
    reference = await Api(graphql_core, member.api.token).post(query, variables)
    # Key order too: a client may rely on the response following the query.
    assert json.dumps(planned) == json.dumps(reference)
    return planned


@pytest.mark.parametrize(
    ("query", "variables"),
    DOCUMENTS,
    ids=["pipeline", "fragments", "people", "projected", "coverage", "board"],
)
async def test_plans_answer_as_graphql_core_for_every_viewer(
    seeded, other_org, graphql_core, http, query, variables
):
    before = await _plan_counts(http)
    viewers = _viewers(seeded, other_org)
    for member in viewers:
        body = await _same_answer(member, graphql_core, query, variables)
        assert not body.get("errors"), body
    after = await _plan_counts(http)
    assert after["planned"] - before["planned"] == len(viewers)
    assert after["fallback"] == before["fallback"] and after["shared"] == before["shared"]


async def test_the_board_answers_as_graphql_core_with_converted_leads_and_a_team_agenda(
    seeded, other_org, graphql_core, http
):
    convert = """mutation($id: ID!) { convertLead(input: {leadId: $id,
        expectedCloseDate: "2027-06-30"}) { opportunity { id } } }"""
    for member, visibility in ((seeded.seller, "ORGANIZATION"), (seeded.teammate, "PRIVATE")):
        lead = await create_lead(member, visibility=visibility)
        made = await member.api.data(convert, id=lead["id"])
        deal = made["convertLead"]["opportunity"]["id"]
        await plan(member, subject=f"Call on {visibility}", opportunityId=deal)
    before = await _plan_counts(http)
    viewers = _viewers(seeded, other_org)
    for member in viewers:
        body = await _same_answer(member, graphql_core, BOARD, {})
        assert not body.get("errors"), body
    after = await _plan_counts(http)
    assert after["planned"] - before["planned"] == len(viewers)
    seller = (await seeded.manager.api.data(BOARD))["agenda"]["nodes"]
    assert len(seller) == 2  # the manager's team: the seller's and the teammate's


async def test_the_pipeline_reads_only_what_each_viewer_may(seeded, other_org, graphql_core):
    """Plans or not, the teammate's private deal is for the teammate and those above, the other
    organization sees nothing, and a deleted contact is nobody's participant."""
    seen = []
    for member in _viewers(seeded, other_org):
        body = await _same_answer(member, graphql_core, PIPELINE, {"first": 50})
        edges = body["data"]["opportunities"]["edges"]
        seen.append(len(edges))
        participants = [p["contact"]["id"] for e in edges for p in e["node"]["participants"]]
        assert seeded.extra["gone"] not in participants
    # 12 seeded, one with a deleted participant, and the teammate's private one.
    assert seen == [14, 14, 13, 14, 13, 0]


async def test_every_field_declared_in_sql_is_covered(seeded, other_org, graphql_core, live_server):
    """Every field declared in SQL (`sql=`, `sql_field`) runs, as SQL on PostgreSQL and on its
    batch function on SQLite, in a planned query of this file, answered for every viewer as
    graphql-core answers it. A declaration no document here selects fails this test: add it to
    COVERAGE."""
    COVERED.clear()
    BATCHED.clear()
    for member in _viewers(seeded, other_org):
        for query, variables in DOCUMENTS:
            await _same_answer(member, graphql_core, query, variables)
    schema = build_schema(live_server.settings)._schema
    declared = sql_declarations(schema)
    ran = COVERED if live_server.database == "postgres" else BATCHED
    assert "Lead.participants" in declared
    assert not declared - ran, f"declared in SQL, never run by a plan: {sorted(declared - ran)}"


async def test_a_resolver_error_surfaces_once(org, http, sql_statements):
    """A root resolver that reads, then refuses (another seller's agenda): the planned run
    answers with its error, as graphql-core does, without running it again: as many
    statements as the same operation without a plan."""
    headers = {"authorization": f"Bearer {org.seller.api.token}", NO_COMPARE: "off"}

    async def run(query: str) -> tuple[dict[str, Any], int]:
        with sql_statements() as seen:
            response = await http.post(
                "/graphql",
                json={"query": query, "variables": {"owner": org.outsider.id}},
                headers=headers,
            )
        return response.json(), len(seen)

    await run(AGENDA_UNPLANNED)  # the session's first use (its last-used time) out of the way
    reference, unplanned_statements = await run(AGENDA_UNPLANNED)
    before = await _plan_counts(http)
    body, statements = await run(AGENDA)
    after = await _plan_counts(http)
    assert body["data"] is None and body["errors"][0]["path"] == ["agenda"]
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert [e["message"] for e in body["errors"]] == [e["message"] for e in reference["errors"]]
    assert statements == unplanned_statements > 0
    assert after["planned"] - before["planned"] == 1
    assert after["fallback"] == before["fallback"]


UNPLANNED_REASONS = {
    "a nested field with arguments": "arguments",
    "an abstract root field": "abstract",
    "a directive": "directive",
}


@pytest.mark.parametrize("name", list(UNPLANNED))
async def test_operations_without_a_plan_run_on_graphql_core(seeded, graphql_core, http, name):
    opportunity = (await seeded.seller.api.data("{ opportunities(first: 1) { nodes { id } } }"))[
        "opportunities"
    ]["nodes"][0]["id"]
    before = await _plan_counts(http)
    body = await _same_answer(
        seeded.seller, graphql_core, UNPLANNED[name], {"id": opportunity, "on": True}
    )
    assert not body.get("errors"), body
    after = await _plan_counts(http)
    assert after["unplanned"] - before["unplanned"] == 1
    reason = f"unplanned {UNPLANNED_REASONS[name]}"
    assert after[reason] - before.get(reason, 0) == 1
    assert after["planned"] == before["planned"]


@pytest.mark.parametrize("name", list(FAILING))
async def test_a_failing_planned_run_gives_graphql_cores_errors(seeded, graphql_core, http, name):
    before = await _plan_counts(http)
    body = await _same_answer(seeded.seller, graphql_core, FAILING[name], {})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    after = await _plan_counts(http)
    assert after["fallback"] == before["fallback"]
    assert after["planned"] - before["planned"] == 1


FOLLOWED = """subscription { followedEvents {
  kind cursor recordId changes createdAt actor { id fullName role manager { email } } } }"""
FOLLOWED_RECORDS = """subscription { followedEvents { kind record { id
  ... on Lead { isFollowedByViewer owner { fullName } } } } }"""


async def _followers_of_a_lead(org: Org) -> tuple[str, list[Member]]:
    lead = await create_lead(org.seller)
    followers = [org.admin, org.manager, org.teammate, org.outsider]
    for member in followers:
        await org.seller.api.data(ADD_FOLLOWER, record=lead["id"], user=member.id)
    return lead["id"], followers


async def test_a_live_event_runs_once_for_all_its_subscribers(live_server, http, org):
    """Four followers with the same selection: the first to take the event runs its plan, the
    other three take its result, and all four get the same payload."""
    lead, followers = await _followers_of_a_lead(org)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(live_client(live_server.base_url, m.api.token))
            for m in followers
        ]
        before_open = await wait_for_subscriptions(http, 0)
        subscriptions = [await client.subscribe(FOLLOWED) for client in clients]
        await wait_for_subscriptions(http, before_open + len(followers))
        before = await _plan_counts(http)
        await org.seller.api.data(COMMENT, record=lead, body="Shared")
        payloads = [await subscription.next() for subscription in subscriptions]
        after = await _plan_counts(http)
    assert payloads[0]["data"]["followedEvents"]["actor"]["id"] == org.seller.id
    assert all(payload == payloads[0] for payload in payloads)
    assert (after["planned"] - before["planned"], after["shared"] - before["shared"]) == (1, 3)


async def test_a_selection_that_depends_on_the_viewer_runs_for_each(live_server, http, org):
    """A record, and whether the viewer follows it, are each follower's own: such a selection
    runs for each subscriber, and each gets its own answer."""
    lead, _ = await _followers_of_a_lead(org)
    await org.admin.api.data("mutation($r: ID!) { unfollowRecord(recordId: $r) { id } }", r=lead)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(live_client(live_server.base_url, m.api.token))
            for m in (org.admin, org.manager)
        ]
        before_open = await wait_for_subscriptions(http, 0)
        subscriptions = [await client.subscribe(FOLLOWED_RECORDS) for client in clients]
        await wait_for_subscriptions(http, before_open + 2)
        before = await _plan_counts(http)
        await org.seller.api.data(COMMENT, record=lead, body="Yours")
        manager = await subscriptions[1].next()
        await subscriptions[0].expect_nothing(0.3)  # the admin no longer follows it
        after = await _plan_counts(http)
    assert manager["data"]["followedEvents"]["record"]["isFollowedByViewer"] is True
    assert after["shared"] == before["shared"]
    assert after["unplanned"] - before["unplanned"] == 2  # the comment, and its one delivery


def test_only_fields_the_same_for_every_viewer_make_a_shared_plan():
    """A live event's result is shared only when no field of the selection depends on who
    reads it: users (actors, owners, managers) are the organization's; contacts and accounts
    are read through the viewer's rules."""
    schema = build_schema(Settings(database_url="sqlite://:memory:"))._schema
    shared = "subscription { followedEvents { kind actor { id manager { fullName } } } }"
    per_viewer = "{ opportunities { nodes { name owner { id } contact { email } } } }"
    plans = {}
    for text in (shared, per_viewer):
        operation = operation_of(parse(text), None)
        assert operation is not None
        plans[text] = compile_plan(schema, operation, {})
    assert plans[shared].same_for_all
    assert not plans[per_viewer].same_for_all


def _node_selection(text: str) -> Selection:
    """The selection on the opportunities' nodes of a query's plan."""
    schema = build_schema(Settings(database_url="sqlite://:memory:"))._schema
    document = parse(text)
    operation = operation_of(document, None)
    assert operation is not None
    fragments = {
        node.name.value: node
        for node in document.definitions
        if isinstance(node, FragmentDefinitionNode)
    }
    connection = compile_plan(schema, operation, fragments).root_fields[0].shape
    assert isinstance(connection, Objects)
    nodes = next(f for f in connection.selection.fields if f.key == "nodes").shape
    assert isinstance(nodes, ListOf) and isinstance(nodes.item, Objects)
    return nodes.item.selection


def test_relations_are_projected_when_sql_can_build_all_they_select():
    """A relation is read as JSON when everything selected below it is declared in SQL; a
    datetime (addedAt) or a list of strings (tags) below it leaves it on its batch function."""
    fragments = _node_selection(FRAGMENTS)
    assert fragments.statement is not None
    assert set(fragments.statement.keys) == {"owner", "primary", "stage"}
    projected = _node_selection(PROJECTED)
    assert projected.statement is not None
    assert set(projected.statement.keys) == {"primary", "participants", "stage"}
    assert "$3" not in projected.statement.sql  # no viewer in it: two parameters
    viewer = _node_selection("{ opportunities { nodes { isFollowedByViewer followers { id } } } }")
    assert viewer.statement is not None and viewer.statement.viewer
    assert set(viewer.statement.keys) == {"isFollowedByViewer", "followers"}


async def test_loader_rows_are_the_instances_tortoise_builds(seeded):
    """resolvers/loaders.py builds model instances itself, a statement at a time: for every
    model with rows, they are what Tortoise's own `_init_from_db` builds from the same rows."""
    checked = []
    for model in Tortoise.apps["models"].values():
        table = model._meta.db_table
        _, rows = await model._meta.db.execute_query(f'SELECT * FROM "{table}" LIMIT 50')
        if not rows:
            continue
        ours = [vars(instance) for instance in instances(model, rows)]
        theirs = [vars(model._init_from_db(**dict(row))) for row in rows]
        assert ours == theirs, table
        # the same types too: time zones, enum members
        assert [{k: repr(v) for k, v in row.items()} for row in ours] == [
            {k: repr(v) for k, v in row.items()} for row in theirs
        ], table
        checked.append(table)
    assert {"contact", "crm_user", "opportunity", "opportunity_participant"} <= set(checked)


async def test_fetch_gives_what_awaiting_the_query_gives(seeded):
    """resolvers/loaders.py's `fetch` runs a plain query itself (every page does): the same
    rows, in the same order, as the same instances as `await query`; a query it does not
    handle (related rows, chosen fields) goes through Tortoise, unchanged."""
    seller = await User.get(id=pk(seeded.seller.id))
    organization = seller.organization_id
    queries: list[QuerySet[Any]] = [
        Opportunity.filter(organization_id=organization).order_by("-amount_cents", "-id").limit(7),
        Opportunity.filter(
            Q(owner_id=seller.id) | Q(visibility="ORGANIZATION"), organization_id=organization
        ).order_by("name", "id"),
        Contact.filter(organization_id=organization, deleted_at__isnull=False),
        Account.filter(organization_id=organization).order_by("-updated_at").offset(1).limit(2),
        Opportunity.filter(organization_id=organization).select_related("account").limit(3),
        Opportunity.filter(organization_id=organization).only("id", "name").limit(3),
    ]
    for query in queries:
        ours = [vars(row) for row in await fetch(query)]
        theirs = [vars(row) for row in await query]
        assert ours == theirs, query.sql()
        assert ours


async def test_a_stored_backslash_u0000_is_not_a_missing_value(seeded, graphql_core, http):
    """On PostgreSQL a null where GraphQL forbids one comes back as the JSON text \\u0000
    (schema/engine/projections.py). A stored name whose text is backslash-u0000 is not taken for it:
    the page stays on its plan, and answers as graphql-core does."""
    seller = await User.get(id=pk(seeded.seller.id))
    await Contact.filter(organization_id=seller.organization_id).update(last_name="Odd \\u0000")
    before = await _plan_counts(http)
    body = await _same_answer(seeded.seller, graphql_core, PIPELINE, {"first": 20})
    after = await _plan_counts(http)
    names = [edge["node"]["contact"] for edge in body["data"]["opportunities"]["edges"]]
    assert any(contact and contact["fullName"].endswith("Odd \\u0000") for contact in names)
    assert after["planned"] - before["planned"] == 1
    assert after["fallback"] == before["fallback"]


def _without_request_ids(body: dict[str, Any]) -> dict[str, Any]:
    for error in body.get("errors") or ():
        error.get("extensions", {}).pop("requestId", None)
    return body


async def test_a_null_in_a_non_null_field_gives_graphql_cores_answer(
    seeded, graphql_core, http, caplog
):
    """An account deleted behind the API's back (its rules refuse that while it has live deals):
    its opportunities' non-null `account` is null. The planned run is dropped, and the answer is
    graphql-core's: the error, and nulls up to the nearest nullable field."""
    seller = await User.get(id=pk(seeded.seller.id))
    await Account.filter(organization_id=seller.organization_id, name="Pipeline account 0").update(
        deleted_at=datetime.now(UTC)
    )
    before = await _plan_counts(http)
    planned = _without_request_ids(await seeded.seller.api.post(PIPELINE, {"first": 50}))
    reference = _without_request_ids(
        await Api(graphql_core, seeded.seller.api.token).post(PIPELINE, {"first": 50})
    )
    after = await _plan_counts(http)
    assert json.dumps(planned) == json.dumps(reference)
    assert planned["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert planned["errors"][0]["path"][-1] == "account"
    assert after["fallback"] - before["fallback"] == 1
    assert after["fallback null"] - before.get("fallback null", 0) == 1
    warned = [
        record.getMessage()
        for record in caplog.records
        if record.name == "crm.plans" and record.levelno == logging.WARNING
    ]
    assert any("Pipeline fell back on graphql-core: null" in message for message in warned)


@pytest.mark.skipif(not PLANS_COMPARE, reason="compare mode is off (PLANS_COMPARE, CI)")
async def test_a_planned_answer_unlike_graphql_cores_fails_the_request(org, monkeypatch):
    """Under compare mode a planned answer that differs from graphql-core's fails the request
    that got it, with the diff; the client still gets the planned answer."""
    run = Plan.run

    async def off_by_one(self: Plan, executor: Any) -> Any:
        result = await run(self, executor)
        if result.data and "users" in result.data:
            result.data["users"]["totalCount"] += 1
        return result

    monkeypatch.setattr(Plan, "run", off_by_one)
    with pytest.raises(AssertionError) as failed:
        await org.admin.api.post("{ users(first: 1) { totalCount } }")
    message = str(failed.value)
    assert "planned run differs from graphql-core" in message
    assert '-   "totalCount": 5' in message and '+   "totalCount": 6' in message


REFUSED = "{ opportunities(first: 5) { nodes { id followers { id createdAt } } } }"


async def test_a_batch_that_raises_answers_its_error_once(seeded, http, monkeypatch):
    """A relation's batch function that raises (here the followers' loader, refusing) fails the
    field for every parent of its level in one call, never run again: one error, located at
    the first parent, its null carried up to the nearest nullable position (here the whole
    answer: the connection is non-null), as graphql-core answers (compare mode checks it)."""
    calls: list[list[int]] = []

    class Refusing:
        async def load_many(self, keys: list[int]) -> list[Any]:
            calls.append(list(keys))
            raise forbidden("No followers today.")

    monkeypatch.setattr(Loaders, "follower_ids", lambda self, kind: Refusing())
    before = await _plan_counts(http)
    response = await http.post(
        "/graphql",
        json={"query": REFUSED},
        headers={"authorization": f"Bearer {seeded.seller.api.token}", NO_COMPARE: "off"},
    )
    after = await _plan_counts(http)
    body = response.json()
    assert len(calls) == 1 and len(calls[0]) == 5  # one batch for the level, not five
    assert body["data"] is None
    assert [error["path"] for error in body["errors"]] == [
        ["opportunities", "nodes", 0, "followers"]
    ]
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert after["planned"] - before["planned"] == 1
    assert after["fallback"] == before["fallback"]
    # Through the suite's helper: under compare mode, graphql-core's answer is the same.
    assert (await seeded.seller.api.post(REFUSED))["errors"] == body["errors"]
