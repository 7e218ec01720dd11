"""The contact lifecycle: stages follow the facts, move forward, age with a sweep, and can be
set by a manager."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from datetime import UTC, datetime, timedelta

import pytest

from models import Opportunity
from tests.conftest import DATABASE
from tests.helpers import create_account, create_contact, create_lead, create_opportunity, pk
from tests.processes import ROOT
from tests.test_activities import COMPLETE, plan
from tests.test_deals import ADD_PARTICIPANT, STAGES, UPDATE_OPPORTUNITY
from tests.test_live import UPDATE_LEAD

STAGE = """query($id: ID!) { node(id: $id) { ... on Contact {
  lifecycleStage lifecyclePinned
  lifecycleHistory(first: 10) { nodes { fromStage toStage cause reason actor { id } } }
} } }"""
OVERRIDE = """mutation($id: ID!, $stage: LifecycleStage, $reason: String!) {
  setContactLifecycle(contactId: $id, stage: $stage, reason: $reason) {
    lifecycleStage lifecyclePinned
  }
}"""
SET_DAYS = """mutation($days: Int!) {
  setInactiveClientAfterDays(days: $days) { inactiveClientAfterDays }
}"""
BY_STAGE = """query($stages: [LifecycleStage!]) {
  contacts(filter: {lifecycleStages: $stages}) { nodes { id } }
}"""


async def stage_of(member, contact) -> dict:
    return (await member.api.data(STAGE, id=contact["id"]))["node"]


async def test_a_completed_activity_or_an_open_deal_makes_a_potential_client(org):
    called, qualified, involved = [await create_contact(org.seller) for _ in range(3)]
    assert (await stage_of(org.seller, called))["lifecycleStage"] == "PROSPECT"
    call = await plan(org.seller, contactId=called["id"])
    assert (await stage_of(org.seller, called))["lifecycleStage"] == "PROSPECT"  # only planned
    await org.seller.api.data(COMPLETE, id=call["id"], outcome="Interested")
    state = await stage_of(org.seller, called)
    assert state["lifecycleStage"] == "POTENTIAL_CLIENT"
    move = state["lifecycleHistory"]["nodes"][0]
    assert (move["fromStage"], move["toStage"], move["cause"]) == (
        "PROSPECT",
        "POTENTIAL_CLIENT",
        "ACTIVITY_COMPLETED",
    )
    assert "Discovery call" in move["reason"]
    assert move["actor"] == {"id": org.seller.id}

    lead = await create_lead(org.seller, contactId=qualified["id"])
    assert (await stage_of(org.seller, qualified))["lifecycleStage"] == "PROSPECT"  # NEW lead
    await org.seller.api.data(UPDATE_LEAD, input={"id": lead["id"], "status": "QUALIFIED"})
    assert (await stage_of(org.seller, qualified))["lifecycleStage"] == "POTENTIAL_CLIENT"
    # It never goes back: the lead is disqualified, the contact stays a potential client.
    await org.seller.api.data(UPDATE_LEAD, input={"id": lead["id"], "status": "DISQUALIFIED"})
    assert (await stage_of(org.seller, qualified))["lifecycleStage"] == "POTENTIAL_CLIENT"

    opportunity = await create_opportunity(org.seller)
    participant = {"recordId": opportunity["id"], "contactId": involved["id"], "role": "CTO"}
    await org.seller.api.data(ADD_PARTICIPANT, input=participant)
    history = (await stage_of(org.seller, involved))["lifecycleHistory"]["nodes"]
    assert [move["cause"] for move in history] == ["OPPORTUNITY_OPEN"]


async def test_a_win_makes_active_clients_at_the_account_and_time_makes_them_inactive(
    live_server, org
):
    account = await create_account(org.seller)
    buyer = await create_contact(org.seller, accountId=account["id"])
    colleague = await create_contact(org.seller, accountId=account["id"])
    elsewhere = await create_contact(org.seller)
    opportunity = await create_opportunity(
        org.seller, accountId=account["id"], contactId=buyer["id"]
    )
    won_stage = next(s for s in (await org.seller.api.data(STAGES))["pipelineStages"] if s["isWon"])
    await org.seller.api.data(
        UPDATE_OPPORTUNITY, input={"id": opportunity["id"], "stageId": won_stage["id"]}
    )
    for contact in (buyer, colleague):
        state = await stage_of(org.seller, contact)
        assert state["lifecycleStage"] == "ACTIVE_CLIENT"
        assert state["lifecycleHistory"]["nodes"][0]["cause"] == "OPPORTUNITY_WON"
    assert (await stage_of(org.seller, elsewhere))["lifecycleStage"] == "PROSPECT"
    active = (await org.seller.api.data(BY_STAGE, stages=["ACTIVE_CLIENT"]))["contacts"]["nodes"]
    assert {c["id"] for c in active} == {buyer["id"], colleague["id"]}

    # Ninety days pass; the organization's threshold is 60: the daily sweep makes them inactive.
    assert (await org.admin.api.data(SET_DAYS, days=60))["setInactiveClientAfterDays"] == {
        "inactiveClientAfterDays": 60
    }
    long_ago = datetime.now(UTC) - timedelta(days=90)
    await Opportunity.filter(id=pk(opportunity["id"])).update(closed_at=long_ago)
    output = await _sweep(live_server.database_url)
    assert "contact(s) became inactive clients" in output
    for contact in (buyer, colleague):
        state = await stage_of(org.seller, contact)
        assert state["lifecycleStage"] == "INACTIVE_CLIENT"
        move = state["lifecycleHistory"]["nodes"][0]
        assert (move["cause"], move["actor"]) == ("WIN_EXPIRED", None)
        assert "60 days" in move["reason"]
    # A new win makes them active again.
    again = await create_opportunity(org.seller, accountId=account["id"])
    await org.seller.api.data(
        UPDATE_OPPORTUNITY, input={"id": again["id"], "stageId": won_stage["id"]}
    )
    assert (await stage_of(org.seller, colleague))["lifecycleStage"] == "ACTIVE_CLIENT"


async def _sweep(database_url: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "manage.py",
        "lifecycle-sweep",
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    return output.decode()


async def test_a_manager_may_set_the_stage_by_hand_until_they_clear_it(org, other_org):
    contact = await create_contact(org.seller)
    reason = "Bought through a partner last year"
    set_active = {"id": contact["id"], "stage": "ACTIVE_CLIENT", "reason": reason}
    assert await org.seller.api.error_code(OVERRIDE, **set_active) == "FORBIDDEN"
    assert await other_org.admin.api.error_code(OVERRIDE, **set_active) == "NOT_FOUND"
    blank = await org.manager.api.error(OVERRIDE, **{**set_active, "reason": " "})
    assert (blank["extensions"]["code"], blank["extensions"]["field"]) == (
        "BAD_USER_INPUT",
        "reason",
    )
    done = (await org.manager.api.data(OVERRIDE, **set_active))["setContactLifecycle"]
    assert done == {"lifecycleStage": "ACTIVE_CLIENT", "lifecyclePinned": True}
    move = (await stage_of(org.seller, contact))["lifecycleHistory"]["nodes"][0]
    assert (move["cause"], move["reason"], move["actor"]) == (
        "MANAGER_OVERRIDE",
        reason,
        {"id": org.manager.id},
    )
    # Pinned: the facts no longer move it.
    call = await plan(org.seller, contactId=contact["id"])
    await org.seller.api.data(COMPLETE, id=call["id"])
    assert (await stage_of(org.seller, contact))["lifecycleStage"] == "ACTIVE_CLIENT"
    # Cleared: back to what the facts say (a completed call: potential client).
    cleared = (
        await org.manager.api.data(
            OVERRIDE, id=contact["id"], stage=None, reason="The partner deal was not ours"
        )
    )["setContactLifecycle"]
    assert cleared == {"lifecycleStage": "POTENTIAL_CLIENT", "lifecyclePinned": False}


async def test_only_admins_set_the_inactivity_threshold(org):
    assert await org.manager.api.error_code(SET_DAYS, days=90) == "FORBIDDEN"
    for days in (0, 3651):
        error = await org.admin.api.error(SET_DAYS, days=days)
        assert (error["extensions"]["code"], error["extensions"]["field"]) == (
            "BAD_USER_INPUT",
            "days",
        )


CREATE = """mutation($input: CreateContactInput!) { createContact(input: $input) { id } }"""
UPDATE = """mutation($input: UpdateContactInput!) {
  updateContact(input: $input) { lifecycleStage title }
}"""
DEPRECATED_INPUTS = """{
  create: __type(name: "CreateContactInput") {
    inputFields(includeDeprecated: true) { name isDeprecated deprecationReason }
  }
  update: __type(name: "UpdateContactInput") {
    inputFields(includeDeprecated: true) { name isDeprecated deprecationReason }
  }
}"""


async def test_create_and_update_contact_refuse_a_stage_which_moves_only_recorded(org, other_org):
    contact = await create_contact(org.seller)
    for member in (org.seller, org.manager, org.admin):
        for query, values in (
            (CREATE, {"firstName": "Ann", "lastName": "Lee", "lifecycleStage": "ACTIVE_CLIENT"}),
            (UPDATE, {"id": contact["id"], "lifecycleStage": "ACTIVE_CLIENT"}),
            (UPDATE, {"id": contact["id"], "lifecycleStage": "PROSPECT", "title": "CFO"}),
        ):
            error = await member.api.error(query, input=values)
            assert (error["extensions"]["code"], error["extensions"]["field"]) == (
                "BAD_USER_INPUT",
                "lifecycleStage",
            )
            assert "setContactLifecycle" in error["message"]
    # Refused as a whole: the title was not saved either; null is no change.
    kept = await org.seller.api.data(UPDATE, input={"id": contact["id"], "lifecycleStage": None})
    assert kept["updateContact"] == {"lifecycleStage": "PROSPECT", "title": None}
    state = await stage_of(org.seller, contact)
    assert state["lifecycleHistory"]["nodes"] == []
    # The deprecation shows in the schema.
    types = await org.seller.api.data(DEPRECATED_INPUTS)
    for name in ("create", "update"):
        field = next(f for f in types[name]["inputFields"] if f["name"] == "lifecycleStage")
        assert field["isDeprecated"] and "setContactLifecycle" in field["deprecationReason"]


async def test_setting_the_stage_by_hand_is_for_admins_and_the_owners_managers(org, other_org):
    mine, outsiders = await create_contact(org.seller), await create_contact(org.outsider)
    values = {"stage": "POTENTIAL_CLIENT", "reason": "Met at the fair"}
    assert await org.teammate.api.error_code(OVERRIDE, id=mine["id"], **values) == "FORBIDDEN"
    assert await org.outsider.api.error_code(OVERRIDE, id=outsiders["id"], **values) == (
        "FORBIDDEN"
    )  # even a seller's own contact
    assert await org.manager.api.error_code(OVERRIDE, id=outsiders["id"], **values) == (
        "FORBIDDEN"
    )  # a manager outside the owner's chain
    assert await other_org.admin.api.error_code(OVERRIDE, id=mine["id"], **values) == "NOT_FOUND"
    missing = await org.admin.api.error(OVERRIDE, id=mine["id"], stage="ACTIVE_CLIENT")
    assert missing["extensions"]["code"] == "BAD_USER_INPUT"  # reason is required (a variable)
    for member, contact in ((org.admin, outsiders), (org.manager, mine)):
        done = await member.api.data(OVERRIDE, id=contact["id"], **values)
        assert done["setContactLifecycle"]["lifecycleStage"] == "POTENTIAL_CLIENT"
        moves = (await stage_of(org.seller, contact))["lifecycleHistory"]["nodes"]
        assert [(m["toStage"], m["reason"], m["actor"]) for m in moves] == [
            ("POTENTIAL_CLIENT", "Met at the fair", {"id": member.id})
        ]


async def test_the_demo_organization_agrees_with_its_facts(tmp_path):
    """The demo's contacts have the stages their deals give them, each move recorded: a
    contact's stage never contradicts its lifecycle history (the embedded default's database)."""
    if DATABASE != "sqlite":
        pytest.skip("the demo loads into the embedded default (SQLite): its pass runs this")
    database = tmp_path / "demo.sqlite3"
    for command in ("migrate", "seed-demo"):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "manage.py",
            command,
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": f"sqlite://{database}"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        assert process.returncode == 0, output.decode()
    db = sqlite3.connect(database)
    try:
        rows = db.execute(
            "SELECT c.lifecycle_stage, (SELECT m.to_stage FROM lifecycle_change AS m"
            " WHERE m.contact_id = c.id ORDER BY m.id DESC LIMIT 1) FROM contact AS c"
        ).fetchall()
    finally:
        db.close()
    assert rows and all(stage == (moved or "PROSPECT") for stage, moved in rows), rows
    stages = {stage for stage, _ in rows}
    assert {"ACTIVE_CLIENT", "POTENTIAL_CLIENT"} <= stages, stages
