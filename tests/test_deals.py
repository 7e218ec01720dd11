"""Leads and opportunities: their three roles, comments, stages, versions."""

from __future__ import annotations

from tests.helpers import create_contact, create_lead, create_opportunity

DETAIL = """
query($id: ID!) {
  node(id: $id) {
    ... on Deal {
      id version
      contact { id }
      participants { role contact { id } }
      followers { id }
      isFollowedByViewer
      defaultRecipient { email reason message contact { id } }
      comments(first: 10) { totalCount edges { node { body author { id } } } }
    }
    ... on Opportunity { status probability probabilityOverridden closedAt stage { name } }
  }
}"""
SET_PRIMARY = """mutation($record: ID!, $contact: ID) {
  setPrimaryContact(recordId: $record, contactId: $contact) { id version contact { id } }
}"""
ADD_PARTICIPANT = """mutation($input: AddParticipantInput!) {
  addParticipant(input: $input) { id participants { role contact { id } } }
}"""
REMOVE_PARTICIPANT = """mutation($record: ID!, $contact: ID!) {
  removeParticipant(recordId: $record, contactId: $contact) { id participants { contact { id } } }
}"""
ADD_FOLLOWER = """mutation($record: ID!, $user: ID!) {
  addFollower(recordId: $record, userId: $user) { id followers { id } }
}"""
REMOVE_FOLLOWER = """mutation($record: ID!, $user: ID!) {
  removeFollower(recordId: $record, userId: $user) { id followers { id } }
}"""
FOLLOW = "mutation($record: ID!) { followRecord(recordId: $record) { id isFollowedByViewer } }"
UNFOLLOW = "mutation($record: ID!) { unfollowRecord(recordId: $record) { id isFollowedByViewer } }"
COMMENT = """mutation($record: ID!, $body: String!) {
  addComment(recordId: $record, body: $body) { id body author { id } record { id } }
}"""
UPDATE_OPPORTUNITY = """mutation($input: UpdateOpportunityInput!) {
  updateOpportunity(input: $input) {
    id version name amount probability probabilityOverridden status closedAt stage { id name }
  }
}"""
STAGES = "{ pipelineStages { id name probability isWon isLost } }"


async def detail(member, record_id):
    return (await member.api.data(DETAIL, id=record_id))["node"]


async def test_primary_contact_participants_and_default_recipient(org):
    for create in (create_opportunity, create_lead):
        record = await create(org.seller)
        cfo = await create_contact(org.seller, title="CFO")
        it = await create_contact(org.seller, email=None)
        assert (await detail(org.seller, record["id"]))["defaultRecipient"]["reason"] == (
            "NO_PRIMARY_CONTACT"
        )

        await org.seller.api.data(
            ADD_PARTICIPANT, input={"recordId": record["id"], "contactId": cfo["id"], "role": "CFO"}
        )
        await org.seller.api.data(
            ADD_PARTICIPANT, input={"recordId": record["id"], "contactId": it["id"]}
        )
        await org.seller.api.data(SET_PRIMARY, record=record["id"], contact=it["id"])
        seen = await detail(org.seller, record["id"])
        # The participant promoted to primary contact is no longer a participant.
        assert seen["contact"] == {"id": it["id"]}
        assert seen["participants"] == [{"role": "CFO", "contact": {"id": cfo["id"]}}]
        assert seen["defaultRecipient"]["reason"] == "PRIMARY_CONTACT_HAS_NO_EMAIL"

        await org.seller.api.data(SET_PRIMARY, record=record["id"], contact=cfo["id"])
        seen = await detail(org.seller, record["id"])
        # The previous primary contact stays a participant (it had no role).
        assert seen["participants"] == [{"role": None, "contact": {"id": it["id"]}}]
        assert seen["defaultRecipient"] == {
            "email": cfo["email"],
            "reason": None,
            "message": None,
            "contact": {"id": cfo["id"]},
        }

        error = await org.seller.api.error(
            ADD_PARTICIPANT, input={"recordId": record["id"], "contactId": cfo["id"]}
        )
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "contactId"}

        error = await org.seller.api.error(
            ADD_PARTICIPANT, input={"recordId": record["id"], "contactId": it["id"]}
        )
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        removed = await org.seller.api.data(
            REMOVE_PARTICIPANT, record=record["id"], contact=it["id"]
        )
        assert removed["removeParticipant"]["participants"] == []
        await org.seller.api.data(SET_PRIMARY, record=record["id"], contact=None)
        assert (await detail(org.seller, record["id"]))["contact"] is None


async def test_followers_and_comments(org):
    record = await create_opportunity(org.seller)
    # Its owner (who made it) follows it from the start.
    added = await org.seller.api.data(ADD_FOLLOWER, record=record["id"], user=org.teammate.id)
    assert added["addFollower"]["followers"] == [{"id": org.seller.id}, {"id": org.teammate.id}]
    # Adding the same follower again changes nothing.
    again = await org.seller.api.data(ADD_FOLLOWER, record=record["id"], user=org.teammate.id)
    assert again["addFollower"]["followers"] == [{"id": org.seller.id}, {"id": org.teammate.id}]

    followed = await org.outsider.api.data(FOLLOW, record=record["id"])
    assert followed["followRecord"]["isFollowedByViewer"] is True
    seen = await detail(org.outsider, record["id"])
    assert [f["id"] for f in seen["followers"]] == [org.seller.id, org.teammate.id, org.outsider.id]

    comment = await org.outsider.api.data(COMMENT, record=record["id"], body="  Call them Monday ")
    assert comment["addComment"]["body"] == "Call them Monday"
    assert comment["addComment"]["author"] == {"id": org.outsider.id}
    assert comment["addComment"]["record"] == {"id": record["id"]}

    unfollowed = await org.outsider.api.data(UNFOLLOW, record=record["id"])
    assert unfollowed["unfollowRecord"]["isFollowedByViewer"] is False
    removed = await org.seller.api.data(REMOVE_FOLLOWER, record=record["id"], user=org.teammate.id)
    assert removed["removeFollower"]["followers"] == [{"id": org.seller.id}]
    seen = await detail(org.seller, record["id"])
    assert seen["comments"]["totalCount"] == 1


async def test_stage_sets_probability_and_status(org):
    stages = (await org.seller.api.data(STAGES))["pipelineStages"]
    first, proposal, won, lost = stages[0], stages[2], stages[4], stages[5]
    opportunity = await create_opportunity(org.seller)
    assert opportunity["stage"]["id"] == first["id"]
    assert opportunity["probability"] == first["probability"]

    moved = await org.seller.api.data(
        UPDATE_OPPORTUNITY, input={"id": opportunity["id"], "stageId": proposal["id"]}
    )
    assert moved["updateOpportunity"]["probability"] == proposal["probability"]

    overridden = await org.seller.api.data(
        UPDATE_OPPORTUNITY, input={"id": opportunity["id"], "probability": 33}
    )
    assert overridden["updateOpportunity"]["probability"] == 33
    assert overridden["updateOpportunity"]["probabilityOverridden"] is True
    kept = await org.seller.api.data(
        UPDATE_OPPORTUNITY, input={"id": opportunity["id"], "stageId": stages[3]["id"]}
    )
    assert kept["updateOpportunity"]["probability"] == 33

    reset = await org.seller.api.data(
        UPDATE_OPPORTUNITY, input={"id": opportunity["id"], "probability": None}
    )
    assert reset["updateOpportunity"]["probability"] == stages[3]["probability"]

    closed = await org.seller.api.data(
        UPDATE_OPPORTUNITY, input={"id": opportunity["id"], "stageId": won["id"]}
    )
    assert closed["updateOpportunity"]["status"] == "WON"
    assert closed["updateOpportunity"]["closedAt"] is not None
    lost_one = await org.seller.api.data(
        UPDATE_OPPORTUNITY,
        input={"id": opportunity["id"], "stageId": lost["id"], "lostReason": "Budget cut"},
    )
    assert lost_one["updateOpportunity"]["status"] == "LOST"
    assert lost_one["updateOpportunity"]["probability"] == 0
    reopened = await org.seller.api.data(
        UPDATE_OPPORTUNITY, input={"id": opportunity["id"], "stageId": first["id"]}
    )
    assert reopened["updateOpportunity"]["status"] == "OPEN"
    assert reopened["updateOpportunity"]["closedAt"] is None


async def test_stale_version_is_a_conflict_and_writes_nothing(org):
    opportunity = await create_opportunity(org.seller)
    version = opportunity["version"]
    first = await org.seller.api.data(
        UPDATE_OPPORTUNITY,
        input={"id": opportunity["id"], "expectedVersion": version, "name": "First writer"},
    )
    assert first["updateOpportunity"]["version"] == version + 1

    error = await org.manager.api.error(
        UPDATE_OPPORTUNITY,
        input={"id": opportunity["id"], "expectedVersion": version, "name": "Second writer"},
    )
    assert error["extensions"]["code"] == "CONFLICT"
    assert error["extensions"]["currentVersion"] == version + 1
    seen = await org.seller.api.data(
        "query($id: ID!) { node(id: $id) { ... on Opportunity { name version } } }",
        id=opportunity["id"],
    )
    assert seen["node"] == {"name": "First writer", "version": version + 1}


async def test_role_changes_bump_the_version(org):
    opportunity = await create_opportunity(org.seller)
    contact = await create_contact(org.seller)
    changed = await org.seller.api.data(
        SET_PRIMARY, record=opportunity["id"], contact=contact["id"]
    )
    assert changed["setPrimaryContact"]["version"] == opportunity["version"] + 1


async def test_unfollowing_shows_in_the_same_response(org):
    record = await create_opportunity(org.seller, visibility="PRIVATE")
    await org.seller.api.data(ADD_FOLLOWER, record=record["id"], user=org.outsider.id)
    # The outsider reads the private record as a follower (which loads its followers), then
    # unfollows: the answer must show the change, not what was loaded before it.
    unfollowed = await org.outsider.api.data(UNFOLLOW, record=record["id"])
    assert unfollowed["unfollowRecord"]["isFollowedByViewer"] is False


async def test_concurrent_writes_to_one_record_never_lose_or_duplicate(org):
    import asyncio

    record = await create_opportunity(org.seller)
    contact = await create_contact(org.seller)
    follows = await asyncio.gather(
        *[org.outsider.api.post(FOLLOW, {"record": record["id"]}) for _ in range(5)]
    )
    assert all("errors" not in body for body in follows)
    adds = await asyncio.gather(
        *[
            org.seller.api.post(
                ADD_PARTICIPANT, {"input": {"recordId": record["id"], "contactId": contact["id"]}}
            )
            for _ in range(5)
        ]
    )
    codes = [body["errors"][0]["extensions"]["code"] for body in adds if "errors" in body]
    assert len(codes) == 4 and set(codes) == {"BAD_USER_INPUT"}

    version = (await detail(org.seller, record["id"]))["version"]
    updates = await asyncio.gather(
        *[
            org.seller.api.post(
                UPDATE_OPPORTUNITY,
                {"input": {"id": record["id"], "expectedVersion": version, "name": f"Name {i}"}},
            )
            for i in range(5)
        ]
    )
    winners = [body for body in updates if "errors" not in body]
    assert len(winners) == 1
    assert {body["errors"][0]["extensions"]["code"] for body in updates if "errors" in body} == {
        "CONFLICT"
    }
    seen = await detail(org.seller, record["id"])
    assert [f["id"] for f in seen["followers"]] == [org.seller.id, org.outsider.id]
    assert [p["contact"]["id"] for p in seen["participants"]] == [contact["id"]]
    assert seen["version"] == version + 1


async def test_role_changes_on_two_records_in_one_document(org):
    """Each mutation forgets its record's cached roles; the second record's were never loaded
    (forgetting them used to raise)."""
    first, second = await create_opportunity(org.seller), await create_opportunity(org.seller)
    data = await org.seller.api.data(
        """mutation($a: ID!, $b: ID!, $u: ID!) {
          a: addFollower(recordId: $a, userId: $u) { id followers { id } }
          b: addFollower(recordId: $b, userId: $u) { id followers { id } }
        }""",
        a=first["id"],
        b=second["id"],
        u=org.teammate.id,
    )
    assert org.teammate.id in [f["id"] for f in data["a"]["followers"]]
    assert org.teammate.id in [f["id"] for f in data["b"]["followers"]]
