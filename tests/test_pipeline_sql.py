"""The frontend's pipeline query runs a constant number of SQL statements, whatever its size."""

from __future__ import annotations

from datetime import date

from strawberry import relay

from models import (
    Account,
    Contact,
    Opportunity,
    OpportunityFollower,
    OpportunityParticipant,
    PipelineStage,
    User,
)
from tests.conftest import DATABASE
from tests.helpers import create_contact, create_opportunity
from tests.test_activities import PLAN as PLAN_ACTIVITY
from tests.test_deals import ADD_FOLLOWER, ADD_PARTICIPANT, COMMENT

PIPELINE = """
query Pipeline($first: Int!) {
  opportunities(first: $first, orderBy: {field: AMOUNT, direction: DESC}) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges {
      cursor
      node {
        id name amount currency probability expectedCloseDate status isFollowedByViewer
        account { id name industry }
        contact { id fullName email }
        participants { role contact { id fullName email } }
        followers { id fullName }
        owner { id fullName }
        stage { id name probability }
      }
    }
  }
}"""

# On PostgreSQL: the token with the viewer's team, the page with totalCount, then every
# relation of the page's opportunities in one statement that builds their JSON
# (schema/engine/projections.py). On SQLite: the token, the viewer's team, the page with
# totalCount, then one batch per relation and wave of loading: accounts, primary contacts,
# participants, follower ids, owners, stages; then the participants' contacts and the
# followers' users. The number must not depend on the page size.
EXPECTED_STATEMENTS = 3 if DATABASE == "postgres" else 11


async def seed_pipeline(owner_global_id: str, count: int) -> None:
    owner = await User.get(id=int(relay.GlobalID.from_id(owner_global_id).node_id))
    org_id = owner.organization_id
    colleagues = await User.filter(organization_id=org_id).order_by("id")
    stages = await PipelineStage.filter(organization_id=org_id).order_by("position")
    accounts = [
        await Account.create(organization_id=org_id, name=f"Pipeline account {i}", owner=owner)
        for i in range(count)
    ]
    contacts = [
        await Contact.create(
            organization_id=org_id,
            first_name="Pipe",
            last_name=f"Line {i}",
            email=f"pipe{i}@client.example",
            account=accounts[i // 3],
            owner=owner,
        )
        for i in range(count * 3)
    ]
    for i, account in enumerate(accounts):
        opportunity = await Opportunity.create(
            organization_id=org_id,
            name=f"Pipeline deal {i}",
            account=account,
            amount_cents=(i % 7) * 100_000,
            stage=stages[i % 4],
            probability=stages[i % 4].probability,
            expected_close_date=date(2027, 1, 1 + i % 28),
            contact=contacts[3 * i],
            owner=owner,
        )
        await OpportunityParticipant.bulk_create(
            [
                OpportunityParticipant(record=opportunity, contact=contacts[3 * i + 1], role="CFO"),
                OpportunityParticipant(record=opportunity, contact=contacts[3 * i + 2], role=None),
            ]
        )
        await OpportunityFollower.bulk_create(
            [OpportunityFollower(record=opportunity, user=user) for user in colleagues[:2]]
        )


async def test_pipeline_statements_do_not_grow_with_the_page(org, sql_statements):
    await seed_pipeline(org.seller.id, 100)
    counts = {}
    for size in (10, 100):
        with sql_statements() as seen:
            data = await org.seller.api.uncompared().data(PIPELINE, first=size)
        page = data["opportunities"]
        assert len(page["edges"]) == size
        assert page["totalCount"] == 100
        node = page["edges"][0]["node"]
        assert len(node["participants"]) == 2 and len(node["followers"]) == 2
        assert node["contact"]["email"].startswith("pipe")
        counts[size] = len(seen)
    heads = [s.split(" FROM ")[1][:60] if " FROM " in s else s[:60] for s in seen]
    assert counts == {10: EXPECTED_STATEMENTS, 100: EXPECTED_STATEMENTS}, (counts, "\n".join(heads))


DETAIL = """
query Detail($id: ID!) {
  node(id: $id) {
    ... on Opportunity {
      id name amount status version
      account { id name owner { fullName } }
      contact { id fullName email tags }
      participants { role contact { id fullName account { name } } }
      followers { id fullName manager { fullName } }
      owner { id fullName }
      stage { id name }
      comments(first: 20) { totalCount edges { node { id body author { fullName } } } }
      activities(first: 20) { edges { node { id subject owner { fullName }
        attendees { fullName } } } }
      history(first: 20) { edges { node { kind actor { fullName } } } }
    }
  }
}"""


# The token and the record; the comments (with their count), activities and history pages;
# the record's account, participants, follower ids, owner and stage; the participants' contacts
# and the activities' attendees; and two batches of users (those the record names, then those
# its comments, activities, history and followers name: authors, owners, actors, managers).
DETAIL_STATEMENTS = 13


async def _detail_record(org, size: int) -> str:
    """An opportunity with `size` participants, followers, comments and activities."""
    opportunity = await create_opportunity(org.seller)
    # The manager first: with the seller (its owner, a follower) the followers' managers are
    # among the followers whatever the size.
    colleagues = [org.manager, org.admin, org.teammate, org.outsider]
    for i in range(size):
        contact = await create_contact(org.seller, tags=[f"t{i}"])
        await org.seller.api.data(
            ADD_PARTICIPANT, input={"recordId": opportunity["id"], "contactId": contact["id"]}
        )
        member = colleagues[i % len(colleagues)]
        await org.seller.api.data(ADD_FOLLOWER, record=opportunity["id"], user=member.id)
        await member.api.data(COMMENT, record=opportunity["id"], body=f"Comment {i}")
        await org.seller.api.data(
            PLAN_ACTIVITY,
            input={
                "kind": "CALL",
                "subject": f"Call {i}",
                "dueDate": "2027-01-15",
                "opportunityId": opportunity["id"],
                "attendeeIds": [contact["id"]],
            },
        )
    return opportunity["id"]


async def test_detail_view_statements_do_not_grow_with_the_record(org, sql_statements):
    """The record's detail view (its relations, and pages of its comments, activities and
    history with theirs) runs as many statements for 1 of each as for 4."""
    counts = {}
    for size in (1, 4):
        record = await _detail_record(org, size)
        with sql_statements() as seen:
            data = await org.seller.api.uncompared().data(DETAIL, id=record)
        node = data["node"]
        # The followers added, and the seller who made it.
        assert len(node["participants"]) == size and len(node["followers"]) == min(size, 4) + 1
        assert node["comments"]["totalCount"] == size
        assert len(node["activities"]["edges"]) == size
        counts[size] = len(seen)
    assert counts == {1: DETAIL_STATEMENTS, 4: DETAIL_STATEMENTS}, counts


async def test_a_count_under_a_directive_is_read_only_when_included(org, sql_statements):
    """`totalCount @include(if: false)` counts nothing; included, it is counted apart."""
    await seed_pipeline(org.seller.id, 12)
    query = PIPELINE.replace("($first: Int!)", "($first: Int!, $count: Boolean!)").replace(
        "    totalCount\n", "    totalCount @include(if: $count)\n"
    )
    api = org.seller.api.uncompared()
    for count in (False, True):
        with sql_statements() as seen:
            data = await api.data(query, first=5, count=count)
        page = data["opportunities"]
        assert len(page["edges"]) == 5
        assert page.get("totalCount") == (12 if count else None)
        counting = [s for s in seen if "count(" in s.lower()]
        assert len(counting) == (1 if count else 0), "\n".join(counting)
