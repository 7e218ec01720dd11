"""Admins configure the pipeline: add, rename, re-weight, move and remove stages."""

from __future__ import annotations

import pytest

from tests.helpers import create_opportunity
from tests.test_deals import UPDATE_OPPORTUNITY

STAGES = "{ pipelineStages { id name position probability isWon isLost } }"
CREATE = """mutation($input: CreatePipelineStageInput!) {
  createPipelineStage(input: $input) { id name position probability isWon isLost }
}"""
UPDATE = """mutation($input: UpdatePipelineStageInput!) {
  updatePipelineStage(input: $input) { id name position probability isWon isLost }
}"""
DELETE = "mutation($id: ID!) { deletePipelineStage(id: $id) { id name } }"


async def stages(member) -> list[dict]:
    return (await member.api.data(STAGES))["pipelineStages"]


async def test_an_admin_adds_moves_renames_and_removes_stages(org):
    before = await stages(org.admin)
    demo = (
        await org.admin.api.data(CREATE, input={"name": "Demo", "probability": 40, "position": 3})
    )["createPipelineStage"]
    assert (demo["position"], demo["probability"]) == (3, 40)
    names = [s["name"] for s in await stages(org.admin)]
    assert names == [*[s["name"] for s in before[:2]], "Demo", *[s["name"] for s in before[2:]]]
    assert [s["probability"] for s in await stages(org.admin)][2] == 40

    # An opportunity moved to it takes its probability.
    opportunity = await create_opportunity(org.seller)
    moved = (
        await org.seller.api.data(
            UPDATE_OPPORTUNITY, input={"id": opportunity["id"], "stageId": demo["id"]}
        )
    )["updateOpportunity"]
    assert (moved["probability"], moved["stage"]["name"]) == (40, "Demo")

    # Re-weighting changes the default for later moves, not the opportunities already there.
    renamed = (
        await org.admin.api.data(
            UPDATE, input={"id": demo["id"], "name": "Live demo", "probability": 45, "position": 1}
        )
    )["updatePipelineStage"]
    assert (renamed["name"], renamed["position"], renamed["probability"]) == ("Live demo", 1, 45)
    after = await stages(org.admin)
    assert [s["position"] for s in after] == list(range(1, len(after) + 1))
    assert after[0]["id"] == demo["id"]
    detail = "query($id: ID!) { node(id: $id) { ... on Opportunity { probability } } }"
    assert (await org.seller.api.data(detail, id=opportunity["id"]))["node"]["probability"] == 40

    # In use: it cannot go, nor start winning.
    error = await org.admin.api.error(DELETE, id=demo["id"])
    assert error["extensions"]["code"] == "CONFLICT"
    flag = {"id": demo["id"], "isWon": True, "probability": 100}
    assert await org.admin.api.error_code(UPDATE, input=flag) == "CONFLICT"
    # Once free, it goes, and the positions close up.
    await org.seller.api.data(
        UPDATE_OPPORTUNITY, input={"id": opportunity["id"], "stageId": before[0]["id"]}
    )
    assert (await org.admin.api.data(DELETE, id=demo["id"]))["deletePipelineStage"]["id"] == (
        demo["id"]
    )
    assert [(s["id"], s["position"]) for s in await stages(org.admin)] == [
        (s["id"], n) for n, s in enumerate(before, start=1)
    ]


async def test_only_admins_configure_the_pipeline(org, other_org):
    stage = (await stages(org.admin))[0]
    for member in (org.manager, org.seller):
        assert await member.api.error_code(CREATE, input={"name": "X", "probability": 5}) == (
            "FORBIDDEN"
        )
        assert await member.api.error_code(DELETE, id=stage["id"]) == "FORBIDDEN"
    assert await other_org.admin.api.error_code(DELETE, id=stage["id"]) == "NOT_FOUND"
    assert await other_org.admin.api.error_code(UPDATE, input={"id": stage["id"]}) == "NOT_FOUND"


@pytest.mark.parametrize(
    ("values", "code", "field"),
    [
        ({"name": " ", "probability": 5}, "BAD_USER_INPUT", "name"),
        ({"name": "Closed WON", "probability": 5}, "CONFLICT", "name"),  # names are unique
        ({"name": "X", "probability": 101}, "BAD_USER_INPUT", "probability"),
        ({"name": "X", "probability": 50, "isWon": True}, "BAD_USER_INPUT", "probability"),
        (
            {"name": "X", "probability": 0, "isWon": True, "isLost": True},
            "BAD_USER_INPUT",
            "isLost",
        ),
        ({"name": "X", "probability": 5, "position": 0}, "BAD_USER_INPUT", "position"),
        ({"name": "X", "probability": 5, "position": 99}, "BAD_USER_INPUT", "position"),
    ],
)
async def test_bad_stages_are_refused_and_change_nothing(org, values, code, field):
    before = await stages(org.admin)
    error = await org.admin.api.error(CREATE, input=values)
    assert (error["extensions"]["code"], error["extensions"].get("field")) == (code, field)
    assert await stages(org.admin) == before


async def test_the_pipeline_keeps_an_open_a_won_and_a_lost_stage(org):
    pipeline = await stages(org.admin)
    won = next(s for s in pipeline if s["isWon"])
    lost = next(s for s in pipeline if s["isLost"])
    assert await org.admin.api.error_code(DELETE, id=won["id"]) == "CONFLICT"
    assert await org.admin.api.error_code(DELETE, id=lost["id"]) == "CONFLICT"
    open_stages = [s for s in pipeline if not s["isWon"] and not s["isLost"]]
    for stage in open_stages[:-1]:
        await org.admin.api.data(DELETE, id=stage["id"])
    error = await org.admin.api.error(DELETE, id=open_stages[-1]["id"])
    assert error["extensions"]["code"] == "CONFLICT"
    assert "open stage" in error["message"]
