"""History people can read: labels as they were at the time, no no-op fields, accounts' and
contacts' histories with their read rules, and events stored in the models' terms."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import sqlite3
import sys
from types import SimpleNamespace

import asyncpg
import httpx

from config import ROOT
from models import Event
from tests.conftest import _create_postgres_database, _drop_postgres_database
from tests.helpers import (
    create_account,
    create_contact,
    create_lead,
    create_opportunity,
    global_id,
    new_org,
    pk,
)
from tests.processes import ServerProcess
from tests.test_deals import (
    ADD_FOLLOWER,
    ADD_PARTICIPANT,
    SET_PRIMARY,
    STAGES,
    UPDATE_OPPORTUNITY,
)

HISTORY = """
query($id: ID!) {
  node(id: $id) {
    ... on Deal { history(first: 50) { edges { node { ...Event } } } }
    ... on Account { history(first: 50) { totalCount edges { node { ...Event } } } }
    ... on Contact { history(first: 50) { totalCount edges { node { ...Event } } } }
  }
}
fragment Event on Event {
  id kind recordType recordId changes actor { id }
  fieldChanges { field from to fromLabel toLabel }
  references { field id label }
}"""
UPDATE_STAGE = """mutation($input: UpdatePipelineStageInput!) {
  updatePipelineStage(input: $input) { id name }
}"""
UPDATE_PARTICIPANT = """mutation($record: ID!, $contact: ID!, $role: String) {
  updateParticipant(recordId: $record, contactId: $contact, role: $role) { id }
}"""
UPDATE_USER = "mutation($input: UpdateUserInput!) { updateUser(input: $input) { id fullName } }"
UPDATE_CONTACT = "mutation($input: UpdateContactInput!) { updateContact(input: $input) { id } }"
UPDATE_ACCOUNT = "mutation($input: UpdateAccountInput!) { updateAccount(input: $input) { id } }"
DELETE_CONTACT = "mutation($id: ID!) { deleteContact(id: $id) { id } }"
USER_NAME = "query($id: ID!) { node(id: $id) { ... on User { fullName } } }"
EVENT = "query($id: ID!) { node(id: $id) { id ... on Event { kind record { id } } } }"


async def history(member, record_id):
    data = await member.api.data(HISTORY, id=record_id)
    return [edge["node"] for edge in data["node"]["history"]["edges"]]


def changed(event):
    """field -> (from, to, fromLabel, toLabel)"""
    return {
        change["field"]: (change["from"], change["to"], change["fromLabel"], change["toLabel"])
        for change in event["fieldChanges"]
    }


async def test_a_change_keeps_the_names_of_what_it_named_at_the_time(org):
    stages = (await org.seller.api.data(STAGES))["pipelineStages"]
    first, second = stages[0], stages[1]
    buyer = await create_contact(org.seller, firstName="Ada", lastName="Byron")
    opportunity = await create_opportunity(org.seller)
    record = opportunity["id"]
    await org.seller.api.data(UPDATE_OPPORTUNITY, input={"id": record, "stageId": second["id"]})
    await org.seller.api.data(SET_PRIMARY, record=record, contact=buyer["id"])
    await org.manager.api.data(UPDATE_OPPORTUNITY, input={"id": record, "ownerId": org.teammate.id})
    seller_name, teammate_name = [
        (await org.admin.api.data(USER_NAME, id=member.id))["node"]["fullName"]
        for member in (org.seller, org.teammate)
    ]

    # Renamed since: the history still says what they were called then.
    await org.admin.api.data(UPDATE_STAGE, input={"id": second["id"], "name": "Renamed stage"})
    await org.admin.api.data(UPDATE_STAGE, input={"id": first["id"], "name": "Renamed first"})
    await org.seller.api.data(UPDATE_CONTACT, input={"id": buyer["id"], "lastName": "Lovelace"})
    await org.admin.api.data(UPDATE_USER, input={"id": org.teammate.id, "fullName": "New Name"})

    owner, primary, stage, created = await history(org.manager, record)
    assert stage["kind"] == "STAGE_CHANGED"
    assert changed(stage)["stageId"] == (first["id"], second["id"], first["name"], second["name"])
    assert stage["changes"]["stageId"] == {"old": first["id"], "new": second["id"]}
    assert changed(stage)["probability"][2:] == (None, None)  # a plain value has no label
    assert changed(primary) == {"contactId": (None, buyer["id"], None, "Ada Byron")}
    assert changed(owner)["ownerId"] == (org.seller.id, org.teammate.id, seller_name, teammate_name)
    assert changed(created)["stageId"] == (None, first["id"], None, first["name"])
    assert changed(created)["ownerId"] == (None, org.seller.id, None, seller_name)


async def test_participant_and_follower_events_name_whom_they_were_about(org):
    deal = await create_opportunity(org.seller)
    record = deal["id"]
    buyer = await create_contact(org.seller, firstName="Grace", lastName="Hopper")
    await org.seller.api.data(
        ADD_PARTICIPANT, input={"recordId": record, "contactId": buyer["id"], "role": "CTO"}
    )
    await org.seller.api.data(UPDATE_PARTICIPANT, record=record, contact=buyer["id"], role="CEO")
    await org.seller.api.data(ADD_FOLLOWER, record=record, user=org.teammate.id)
    teammate = (await org.admin.api.data(USER_NAME, id=org.teammate.id))["node"]["fullName"]
    # Renamed since: the events keep the names of the time.
    await org.seller.api.data(UPDATE_CONTACT, input={"id": buyer["id"], "lastName": "Murray"})
    await org.admin.api.data(UPDATE_USER, input={"id": org.teammate.id, "fullName": "Renamed"})

    followed, updated, added = (await history(org.seller, record))[:3]
    assert (followed["kind"], updated["kind"], added["kind"]) == (
        "FOLLOWER_ADDED", "PARTICIPANT_UPDATED", "PARTICIPANT_ADDED",
    )  # fmt: skip
    grace = {"field": "contactId", "id": buyer["id"], "label": "Grace Hopper"}
    assert added["references"] == [grace]
    assert updated["references"] == [grace]
    assert changed(updated) == {"role": ("CTO", "CEO", None, None)}
    assert followed["references"] == [{"field": "userId", "id": org.teammate.id, "label": teammate}]
    # A change of a field names its records in fieldChanges, not here.
    assert (await history(org.seller, record))[-1]["references"] == []


async def test_creations_leave_out_empty_fields_and_updates_unchanged_ones(org):
    lead = await create_lead(org.seller)
    created = (await history(org.seller, lead["id"]))[0]
    assert created["kind"] == "CREATED"
    assert all(value is not None for value in created["changes"].values())
    assert all(change["to"] is not None for change in created["fieldChanges"])
    assert "accountId" not in created["changes"] and "contactId" not in created["changes"]
    assert {"title", "ownerId"} <= set(changed(created))

    opportunity = await create_opportunity(org.seller, amount="100.00")
    record = opportunity["id"]
    same_and_new = {"id": record, "name": opportunity["name"], "amount": "150.00"}
    await org.seller.api.data(UPDATE_OPPORTUNITY, input=same_and_new)
    updated = (await history(org.seller, record))[0]
    assert updated["changes"] == {"amount": {"old": "100.00", "new": "150.00"}}
    assert changed(updated) == {"amount": ("100.00", "150.00", None, None)}
    before = await history(org.seller, record)
    await org.seller.api.data(UPDATE_OPPORTUNITY, input={"id": record, "name": opportunity["name"]})
    assert await history(org.seller, record) == before  # nothing changed: no event


async def test_accounts_and_contacts_have_a_history(org):
    account = await create_account(org.seller, industry="Retail")
    contact = await create_contact(
        org.seller, accountId=account["id"], title="CFO", tags=["vip", "board"]
    )
    await org.seller.api.data(
        UPDATE_ACCOUNT, input={"id": account["id"], "industry": "Retail", "city": "Lyon"}
    )
    await org.manager.api.data(
        UPDATE_CONTACT, input={"id": contact["id"], "title": "CEO", "tags": ["vip"]}
    )

    updated, created = await history(org.seller, account["id"])
    assert (created["kind"], created["recordType"], created["recordId"]) == (
        "CREATED",
        "Account",
        account["id"],
    )
    assert created["actor"] == {"id": org.seller.id}
    assert created["changes"] == {
        "ownerId": {"old": None, "new": org.seller.id},
        "name": {"old": None, "new": account["name"]},
        "industry": {"old": None, "new": "Retail"},
    }
    assert changed(created)["ownerId"][3]  # the owner's name
    assert updated["kind"] == "UPDATED"
    assert updated["changes"] == {"city": {"old": None, "new": "Lyon"}}  # industry: unchanged

    contact_updated, contact_created = await history(org.seller, contact["id"])
    assert changed(contact_created)["accountId"] == (None, account["id"], None, account["name"])
    assert changed(contact_created)["tags"][:2] == (None, ["board", "vip"])
    assert "phone" not in changed(contact_created)
    assert contact_updated["actor"] == {"id": org.manager.id}
    assert changed(contact_updated) == {
        "title": ("CFO", "CEO", None, None),
        "tags": (["board", "vip"], ["vip"], None, None),
    }
    # Their events are nodes too, read with their record, and no deal's.
    event = await org.teammate.api.data(EVENT, id=contact_updated["id"])
    assert event["node"] == {"id": contact_updated["id"], "kind": "UPDATED", "record": None}


async def test_account_and_contact_histories_follow_their_read_rules(org, other_org):
    account = await create_account(org.seller)
    contact = await create_contact(org.seller, accountId=account["id"])
    lead = await create_lead(org.seller, contactId=contact["id"])
    # Accounts and contacts are the organization's: every role reads them and their history.
    for member in (org.admin, org.manager, org.seller, org.teammate, org.outsider):
        assert [e["kind"] for e in await history(member, account["id"])] == ["CREATED"]
        assert [e["kind"] for e in await history(member, contact["id"])] == ["CREATED"]
    # Another organization reads neither them, nor their history, nor their events.
    assert await other_org.admin.api.error_code(HISTORY, id=account["id"]) == "NOT_FOUND"
    assert await other_org.seller.api.error_code(HISTORY, id=contact["id"]) == "NOT_FOUND"
    event_id = (await history(org.seller, contact["id"]))[0]["id"]
    assert await other_org.admin.api.error_code(EVENT, id=event_id) == "NOT_FOUND"

    # A deleted contact is out of reach, history included; the records it left say so.
    await org.seller.api.data(DELETE_CONTACT, id=contact["id"])
    for member in (org.admin, org.seller, org.outsider):
        assert await member.api.error_code(HISTORY, id=contact["id"]) == "NOT_FOUND"
        assert await member.api.error_code(EVENT, id=event_id) == "NOT_FOUND"
    left = (await history(org.seller, lead["id"]))[0]
    assert changed(left)["contactId"][:3] == (contact["id"], None, "Pat " + contact["lastName"])


async def test_events_are_stored_in_the_models_terms(org):
    opportunity = await create_opportunity(org.seller)
    cfo = await create_contact(org.seller, firstName="Grace", lastName="Hopper")
    await org.seller.api.data(
        ADD_PARTICIPANT,
        input={"recordId": opportunity["id"], "contactId": cfo["id"], "role": "CFO"},
    )
    added = (await history(org.seller, opportunity["id"]))[0]
    assert added["changes"] == {"contactId": cfo["id"], "role": "CFO"}  # as before
    assert added["fieldChanges"] == []
    stored = await Event.get(id=pk(added["id"]))
    assert stored.changes == {
        "contact_id": pk(cfo["id"]),
        "role": "CFO",
        "labels": {"contact_id": "Grace Hopper"},
    }
    stages = (await org.seller.api.data(STAGES))["pipelineStages"]
    await org.seller.api.data(
        UPDATE_OPPORTUNITY,
        input={"id": opportunity["id"], "stageId": stages[1]["id"], "amount": "5.00"},
    )
    moved = (await history(org.seller, opportunity["id"]))[0]
    stored = await Event.get(id=pk(moved["id"]))
    assert stored.changes["fields"]["stage_id"] == {
        "from": pk(stages[0]["id"]),
        "to": pk(stages[1]["id"]),
        "from_label": stages[0]["name"],
        "to_label": stages[1]["name"],
    }
    assert stored.changes["fields"]["amount_cents"] == {"from": 100000, "to": 500}


async def _run_migration(name):
    """Apply a migration's operations to the suite's database, as `migrate` would (it was
    applied already, to an empty log: here it meets the rows seeded since)."""
    migration = importlib.import_module(f"migrations.{name}").Migration
    editor = SimpleNamespace(client=Event._meta.db)
    state = SimpleNamespace(apps=None)
    for operation in migration.operations:
        await operation.database_forward("models", state, state, editor)


async def test_migration_0017_converts_old_events_with_the_same_answers(org):
    stages = (await org.seller.api.data(STAGES))["pipelineStages"]
    opportunity = await create_opportunity(org.seller)
    hidden = await create_opportunity(org.outsider, visibility="PRIVATE")
    lead = await create_lead(org.seller)
    cfo = await create_contact(org.seller)
    other = {
        "comment": global_id("Comment", 2**40),
        "activity": global_id("Activity", 2**40),
        "line": global_id("LineItem", 2**40),
        "product": global_id("Product", 2**40),
        "campaign": global_id("Campaign", 2**40),
    }
    # As the API stored them before: its field names, global ids, decimal strings.
    on_opportunity = [
        (
            "CREATED",
            {
                "name": {"old": None, "new": opportunity["name"]},
                "amount": {"old": None, "new": "1000.00"},
                "stageId": {"old": None, "new": stages[0]["id"]},
                "ownerId": {"old": None, "new": org.seller.id},
                "expectedCloseDate": {"old": None, "new": "2027-03-31"},
                "contactId": {"old": None, "new": None},
            },
        ),
        (
            "STAGE_CHANGED",
            {
                "stageId": {"old": stages[0]["id"], "new": stages[1]["id"]},
                "probability": {"old": 10, "new": 25},
            },
        ),
        ("PARTICIPANT_ADDED", {"contactId": cfo["id"], "role": "CFO"}),
        ("FOLLOWER_ADDED", {"userId": org.teammate.id}),
        ("COMMENT_ADDED", {"commentId": other["comment"], "body": "Looks good"}),
        (
            "ACTIVITY_PLANNED",
            {
                "activityId": other["activity"],
                "activityKind": "CALL",
                "subject": "Discovery",
                "startsAt": "2027-01-05T10:00:00+00:00",
                "dueDate": None,
            },
        ),
        (
            "LINE_ITEM_ADDED",
            {
                "amount": {"old": "1000.00", "new": "10.94"},
                "lineItem": {
                    "lineItemId": other["line"],
                    "productId": other["product"],
                    "quantity": 5,
                    "unitPrice": "2.50",
                    "discount": "12.5",
                    "total": "10.94",
                },
            },
        ),
        (
            "CONVERTED",
            {
                "leadId": lead["id"],
                "participants": [cfo["id"]],
                "followers": [org.teammate.id],
                "plannedActivities": 1,
            },
        ),
        (
            "CAMPAIGN_RESPONSE",
            {"campaignId": other["campaign"], "contactId": cfo["id"], "responded": True},
        ),
        ("DELETED", {}),
    ]
    on_lead = [
        (
            "CONVERTED",
            {
                "status": {"old": "NEW", "new": "CONVERTED"},
                "convertedOpportunityId": {"old": None, "new": hidden["id"]},
                "convertedAt": {"old": None, "new": "2026-12-01T09:00:00+00:00"},
            },
        )
    ]
    organization = await Event.get(id=pk((await history(org.seller, lead["id"]))[0]["id"]))
    written_now = await Event.get(id=pk((await history(org.seller, opportunity["id"]))[0]["id"]))
    for record, seeded in ((opportunity, on_opportunity), (lead, on_lead)):
        for kind, changes in seeded:
            await Event.create(
                organization_id=organization.organization_id,
                record_type="Lead" if record is lead else "Opportunity",
                record_id=pk(record["id"]),
                kind=kind,
                actor_id=pk(org.seller.id),
                changes=changes,
            )

    await _run_migration("0017_event_facts")

    newest_first = [changes for _, changes in reversed(on_opportunity)]
    seen = await history(org.admin, opportunity["id"])
    assert [event["changes"] for event in seen[: len(newest_first)]] == newest_first
    created, stage = seen[len(newest_first) - 1], seen[len(newest_first) - 2]
    assert changed(stage) == {
        "stageId": (stages[0]["id"], stages[1]["id"], None, None),  # no labels were kept then
        "probability": (10, 25, None, None),
    }
    assert changed(created)["amount"] == (None, "1000.00", None, None)
    assert [event["changes"] for event in (await history(org.admin, lead["id"]))[:1]] == [
        on_lead[0][1]
    ]
    # Who may not read the opportunity the lead became reads no id of it, as before.
    converted = (await history(org.seller, lead["id"]))[0]
    assert converted["changes"]["convertedOpportunityId"] == {"old": None, "new": None}
    assert changed(converted)["convertedOpportunityId"] == (None, None, None, None)

    # Stored in the models' terms now; events written in them already are left alone.
    participant = await Event.get(id=pk(seen[7]["id"]))
    assert participant.changes == {"contact_id": pk(cfo["id"]), "role": "CFO"}
    line = await Event.get(id=pk(seen[3]["id"]))
    assert line.changes["fields"] == {"amount_cents": {"from": 100000, "to": 1094}}
    assert line.changes["line_item"]["discount_basis_points"] == 1250
    assert (await Event.get(id=written_now.id)).changes == written_now.changes
    await _run_migration("0017_event_facts")  # twice changes nothing
    assert await history(org.admin, opportunity["id"]) == seen


async def _migrate(database_url, target=None):
    """`manage.py migrate` (to `target` when given), in a process of its own (Tortoise binds one
    database per process, and the suite's server runs in this one)."""
    if target is None:
        command = [sys.executable, "manage.py", "migrate"]
    else:
        code = (
            "import asyncio, sys\n"
            "from tortoise import Tortoise\n"
            "from tortoise.migrations.api import migrate\n"
            "from config import tortoise_config\n"
            "async def main():\n"
            "    await migrate(config=tortoise_config(sys.argv[1]), target=sys.argv[2])\n"
            "    await Tortoise.close_connections()\n"
            "asyncio.run(main())\n"
        )
        command = [sys.executable, "-c", code, database_url, target]
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()


async def _unapply(database_url, migration):
    """Mark a migration unapplied (its changes stay), so that the next `migrate` runs it."""
    sql = "DELETE FROM tortoise_migrations WHERE app = 'models' AND name = {name}"
    if database_url.startswith("sqlite://"):
        with sqlite3.connect(database_url.removeprefix("sqlite://")) as db:
            db.execute(sql.format(name="?"), (migration,))
        return
    db = await asyncpg.connect(database_url)
    try:
        await db.execute(sql.format(name="$1"), migration)
    finally:
        await db.close()


async def _insert_like(database_url, event_id, kind, changes):
    """An event like `event_id` (same record, actor and time) with these `changes`, written
    straight into the database."""
    sql = (
        "INSERT INTO event (organization_id, record_type, record_id, kind, actor_id, changes, "
        "created_at) SELECT organization_id, record_type, record_id, {kind}, actor_id, {changes}, "
        "created_at FROM event WHERE id = {id}"
    )
    if database_url.startswith("sqlite://"):
        with sqlite3.connect(database_url.removeprefix("sqlite://")) as db:
            db.execute(
                sql.format(kind="?", changes="?", id="?"), (kind, json.dumps(changes), event_id)
            )
        return
    db = await asyncpg.connect(database_url)
    try:
        statement = sql.format(kind="$1", changes="$2::jsonb", id="$3")
        await db.execute(statement, kind, json.dumps(changes), event_id)
    finally:
        await db.close()


async def test_migrate_converts_the_events_of_a_database_written_before(live_server, tmp_path):
    if live_server.database == "sqlite":
        database_url, name = f"sqlite://{tmp_path / 'before.sqlite3'}", None
    else:
        name, database_url = await _create_postgres_database()
    try:
        # Today's app needs the later migrations' tables (followers of accounts, 0018), so it
        # writes on a migrated database, the old event is stored as 0016's code wrote it, and
        # 0017 is marked unapplied: `migrate` then runs 0017 alone, on the events as they were.
        await _migrate(database_url)
        env = {"DATABASE_URL": database_url, "SIGNUPS_PER_HOUR": "0"}
        async with (
            ServerProcess(env) as server,
            httpx.AsyncClient(base_url=server.base_url, timeout=30) as http,
        ):
            org = await new_org(http)
            stages = (await org.seller.api.data(STAGES))["pipelineStages"]
            opportunity = await create_opportunity(org.seller, amount="100.00")
            written = await history(org.seller, opportunity["id"])  # in the new terms already
            old = {
                "stageId": {"old": stages[0]["id"], "new": stages[1]["id"]},
                "amount": {"old": "100.00", "new": "5.00"},
            }
            await _insert_like(database_url, pk(written[0]["id"]), "STAGE_CHANGED", old)
            await _unapply(database_url, "0017_event_facts")

            await _migrate(database_url)

            seeded, *rest = await history(org.seller, opportunity["id"])
            assert (seeded["kind"], seeded["changes"]) == ("STAGE_CHANGED", old)
            assert changed(seeded)["stageId"] == (stages[0]["id"], stages[1]["id"], None, None)
            assert rest == written
    finally:
        if name is not None:
            await _drop_postgres_database(name)
