"""Who may read or change what: every rule, its refusals, and tenancy isolation.

Besides the `org` fixture's admin, manager, seller, teammate and outsider, the `chain` fixture
adds director -> mid -> rep: rep's records have a direct (mid) and an indirect (director)
manager, while `manager` leads another team. Records under test are rep's unless said otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from models import Role, User
from resolvers.auth import digest, session_user
from resolvers.permissions import reporting_lines, reports_of
from tests.conftest import DATABASE
from tests.helpers import (
    CREATE_ACCOUNT,
    CREATE_CONTACT,
    CREATE_LEAD,
    CREATE_OPPORTUNITY,
    CREATE_USER,
    LOGIN,
    PASSWORD,
    GraphQLFailed,
    Member,
    Org,
    create_account,
    create_contact,
    create_lead,
    create_opportunity,
    new_org,
    pk,
    unique_email,
)

NODE = "query($id: ID!) { node(id: $id) { id } }"
NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { id } }"
OWNER = """query($id: ID!) { node(id: $id) {
  ... on Account { owner { id } } ... on Contact { owner { id } } ... on Deal { owner { id } }
} }"""
TITLE = "query($id: ID!) { node(id: $id) { ... on Account { name } ... on Contact { lastName } } }"
STATE = """query($id: ID!) { node(id: $id) { ... on Deal {
  version contact { id } participants { contact { id } } followers { id }
  comments { totalCount } } } }"""
ACCOUNT_OPPORTUNITIES = """query($id: ID!) {
  node(id: $id) { ... on Account { opportunities { totalCount nodes { id } } } } }"""
LISTS = """{ accounts { totalCount nodes { id } } contacts { totalCount nodes { id } }
  leads { totalCount nodes { id } } opportunities { totalCount nodes { id } }
  users { totalCount nodes { id } } }"""
VIEWER = "{ viewer { id role isActive } }"
MANAGER = "query($id: ID!) { node(id: $id) { ... on User { manager { id } } } }"
ACTIVE_ADMINS = "{ users(filter: {roles: [ADMIN], isActive: true}) { totalCount } }"
SIGN_UP = "mutation($input: SignUpInput!) { signUp(input: $input) { token } }"
UPDATE_USER = """mutation($input: UpdateUserInput!) {
  updateUser(input: $input) { id role isActive manager { id } } }"""
ROLES = "id contact { id } participants { contact { id } } followers { id }"
SET_PRIMARY = f"""mutation($record: ID!, $contact: ID) {{
  setPrimaryContact(recordId: $record, contactId: $contact) {{ {ROLES} }} }}"""
ADD_PARTICIPANT = f"""mutation($input: AddParticipantInput!) {{
  addParticipant(input: $input) {{ {ROLES} }} }}"""
REMOVE_PARTICIPANT = f"""mutation($record: ID!, $contact: ID!) {{
  removeParticipant(recordId: $record, contactId: $contact) {{ {ROLES} }} }}"""
ADD_FOLLOWER = f"""mutation($record: ID!, $user: ID!) {{
  addFollower(recordId: $record, userId: $user) {{ {ROLES} }} }}"""
REMOVE_FOLLOWER = f"""mutation($record: ID!, $user: ID!) {{
  removeFollower(recordId: $record, userId: $user) {{ {ROLES} }} }}"""
FOLLOW = "mutation($record: ID!) { followRecord(recordId: $record) { id isFollowedByViewer } }"
UNFOLLOW = "mutation($record: ID!) { unfollowRecord(recordId: $record) { id isFollowedByViewer } }"
COMMENT = """mutation($record: ID!, $body: String!) {
  addComment(recordId: $record, body: $body) { id author { id } } }"""


@dataclass(frozen=True)
class Kind:
    create: Callable[..., Awaitable[dict[str, Any]]]  # a helper of tests.helpers
    type_name: str
    title: str  # the field the edits below change

    @property
    def update(self) -> str:
        return f"""mutation($input: Update{self.type_name}Input!) {{
  update{self.type_name}(input: $input) {{ id {self.title} owner {{ id }} }} }}"""

    @property
    def delete(self) -> str:
        return f"mutation($id: ID!) {{ delete{self.type_name}(id: $id) {{ id deletedAt }} }}"


KINDS = {
    "account": Kind(create_account, "Account", "name"),
    "contact": Kind(create_contact, "Contact", "lastName"),
    "lead": Kind(create_lead, "Lead", "title"),
    "opportunity": Kind(create_opportunity, "Opportunity", "name"),
}
DEAL_KINDS = ["lead", "opportunity"]
EVERYONE = ["admin", "manager", "seller", "outsider", "director", "mid", "rep"]
EDITORS = {"admin", "rep", "mid", "director"}  # of rep's records
PRIVATE_READERS = EDITORS | {"outsider"}  # outsider follows rep's private records


class _NotNull:
    def __eq__(self, other: object) -> bool:
        return other is not None


NOT_NULL = _NotNull()


@dataclass
class Chain:
    director: Member
    mid: Member
    rep: Member


@pytest.fixture
async def chain(org: Org) -> Chain:
    director = await org.add_user("SALES_MANAGER")
    mid = await org.add_user("SALES_MANAGER", director)
    return Chain(director, mid, await org.add_user("SELLER", mid))


def member(org: Org, chain: Chain, name: str) -> Member:
    return getattr(chain, name, None) or getattr(org, name)


def codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors") or []]


async def attempt(call: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """The payload of a helper call that succeeded, or {"error": extensions of its error}."""
    try:
        return await call
    except GraphQLFailed as failed:
        return {"error": failed.args[0][0]["extensions"]}


async def owner_of(org: Org, record_id: str) -> str:
    return (await org.admin.api.data(OWNER, id=record_id))["node"]["owner"]["id"]


# Tenancy -------------------------------------------------------------------------------------


async def _records(org: Org) -> dict[str, str]:
    """One record of every type in `org`, made by its seller: global ids by type."""
    opportunity = await create_opportunity(org.seller)
    comment = await org.seller.api.data(COMMENT, record=opportunity["id"], body="Mine")
    top = await org.admin.api.data("{ organization { id } pipelineStages { id } }")
    return {
        "account": opportunity["account"]["id"],
        "contact": (await create_contact(org.seller))["id"],
        "lead": (await create_lead(org.seller))["id"],
        "opportunity": opportunity["id"],
        "comment": comment["addComment"]["id"],
        "user": org.seller.id,
        "manager": org.manager.id,
        "stage": top["pipelineStages"][0]["id"],
        "organization": top["organization"]["id"],
    }


async def test_node_and_nodes_never_resolve_another_organizations_ids(org, other_org):
    mine, theirs = await _records(org), await _records(other_org)
    for name in ("account", "contact", "lead", "opportunity", "comment", "user", "stage"):
        assert (await org.admin.api.data(NODE, id=mine[name]))["node"] == {"id": mine[name]}
        body = await org.admin.api.post(NODE, {"id": theirs[name]})
        assert body["data"] is None and codes(body) == ["NOT_FOUND"], name
    assert await org.admin.api.error_code(NODE, id=theirs["organization"]) == "NOT_FOUND"

    foreign = [theirs[name] for name in ("account", "lead", "opportunity", "user", "comment")]
    body = await org.admin.api.post(NODES, {"ids": [mine["account"], *foreign]})
    assert body["data"]["nodes"] == [{"id": mine["account"]}] + [None] * len(foreign)
    assert sorted(error["path"][1] for error in body["errors"]) == list(range(1, 6))
    assert set(codes(body)) == {"NOT_FOUND"}


async def test_lists_show_only_the_viewers_organization(org, other_org):
    mine, _ = await _records(org), await _records(other_org)
    seen = await org.admin.api.data(LISTS)
    users = {org.admin.id, org.manager.id, org.seller.id, org.teammate.id, org.outsider.id}
    for name, expected in (
        ("accounts", {mine["account"]}),
        ("contacts", {mine["contact"]}),
        ("leads", {mine["lead"]}),
        ("opportunities", {mine["opportunity"]}),
        ("users", users),
    ):
        assert {node["id"] for node in seen[name]["nodes"]} == expected, name
        assert seen[name]["totalCount"] == len(expected), name


def _foreign_mutations(m: dict[str, str], t: dict[str, str]) -> list[tuple[str, dict, str]]:
    """(mutation, variables, NOT_FOUND:<its field> or the field of a BAD_USER_INPUT), naming
    `t`'s ids."""
    acc, con, lead, opp = (KINDS[name] for name in ("account", "contact", "lead", "opportunity"))
    user = {"email": unique_email(), "fullName": "New", "password": PASSWORD}
    return [
        (acc.update, {"input": {"id": t["account"], "name": "X"}}, "NOT_FOUND:id"),
        (acc.delete, {"id": t["account"]}, "NOT_FOUND:id"),
        (con.update, {"input": {"id": t["contact"], "lastName": "X"}}, "NOT_FOUND:id"),
        (con.delete, {"id": t["contact"]}, "NOT_FOUND:id"),
        (lead.update, {"input": {"id": t["lead"], "title": "X"}}, "NOT_FOUND:id"),
        (lead.delete, {"id": t["lead"]}, "NOT_FOUND:id"),
        (opp.update, {"input": {"id": t["opportunity"], "name": "X"}}, "NOT_FOUND:id"),
        (opp.delete, {"id": t["opportunity"]}, "NOT_FOUND:id"),
        (SET_PRIMARY, {"record": t["lead"], "contact": m["contact"]}, "NOT_FOUND:recordId"),
        (ADD_PARTICIPANT, {"input": {"recordId": t["lead"], "contactId": m["contact"]}},
         "NOT_FOUND:recordId"),
        (REMOVE_PARTICIPANT, {"record": t["opportunity"], "contact": m["contact"]},
         "NOT_FOUND:recordId"),
        (ADD_FOLLOWER, {"record": t["opportunity"], "user": m["user"]}, "NOT_FOUND:recordId"),
        (REMOVE_FOLLOWER, {"record": t["lead"], "user": m["user"]}, "NOT_FOUND:recordId"),
        (FOLLOW, {"record": t["opportunity"]}, "NOT_FOUND:recordId"),
        (UNFOLLOW, {"record": t["lead"]}, "NOT_FOUND:recordId"),
        (COMMENT, {"record": t["opportunity"], "body": "Hi"}, "NOT_FOUND:recordId"),
        (UPDATE_USER, {"input": {"id": t["user"], "isActive": False}}, "NOT_FOUND:id"),
        # Ids an input refers to: a bad input, named by its field.
        (CREATE_ACCOUNT, {"input": {"name": "X", "ownerId": t["user"]}}, "ownerId"),
        (CREATE_CONTACT, {"input": {"firstName": "A", "lastName": "B", "accountId": t["account"]}},
         "accountId"),
        (CREATE_LEAD, {"input": {"title": "X", "contactId": t["contact"]}}, "contactId"),
        (CREATE_OPPORTUNITY, {"input": {"name": "X", "accountId": t["account"],
                                        "expectedCloseDate": "2027-01-31"}}, "accountId"),
        (con.update, {"input": {"id": m["contact"], "accountId": t["account"]}}, "accountId"),
        (lead.update, {"input": {"id": m["lead"], "ownerId": t["user"]}}, "ownerId"),
        (opp.update, {"input": {"id": m["opportunity"], "accountId": t["account"]}}, "accountId"),
        (SET_PRIMARY, {"record": m["lead"], "contact": t["contact"]}, "contactId"),
        (ADD_PARTICIPANT, {"input": {"recordId": m["lead"], "contactId": t["contact"]}},
         "contactId"),
        (ADD_FOLLOWER, {"record": m["opportunity"], "user": t["user"]}, "userId"),
        (CREATE_USER, {"input": {**user, "managerId": t["manager"]}}, "managerId"),
        (UPDATE_USER, {"input": {"id": m["user"], "managerId": t["manager"]}}, "managerId"),
    ]  # fmt: skip


async def test_mutations_on_another_organizations_ids_are_refused(org, other_org):
    mine, theirs = await _records(org), await _records(other_org)
    before = await other_org.admin.api.data(STATE, id=theirs["opportunity"])
    failures = []
    for query, variables, expected in _foreign_mutations(mine, theirs):
        body = await org.admin.api.post(query, variables)
        code, _, field = expected.rpartition(":")
        wanted = {"code": code or "BAD_USER_INPUT", "field": field}
        if body["data"] is not None or body["errors"][0]["extensions"] != wanted:
            failures.append((query, variables, body))
    assert not failures
    # Nothing of the other organization changed: its records are there, its seller active.
    assert await other_org.admin.api.data(STATE, id=theirs["opportunity"]) == before
    for name in ("account", "contact", "lead"):
        assert (await other_org.seller.api.data(NODE, id=theirs[name]))["node"]
    assert (await other_org.seller.api.data(VIEWER))["viewer"]["isActive"] is True


# Reading -------------------------------------------------------------------------------------


async def test_everyone_in_the_organization_reads_accounts_and_contacts(org, chain):
    account = await create_account(org.outsider)
    contact = await create_contact(org.outsider, accountId=account["id"])
    for name in EVERYONE:
        api = member(org, chain, name).api
        for record in (account, contact):
            assert (await api.data(NODE, id=record["id"]))["node"] == {"id": record["id"]}, name
        lists = await api.data(LISTS)
        assert [node["id"] for node in lists["accounts"]["nodes"]] == [account["id"]], name
        assert [node["id"] for node in lists["contacts"]["nodes"]] == [contact["id"]], name


@pytest.mark.parametrize("viewer", EVERYONE)
async def test_who_reads_leads_and_opportunities(org, chain, viewer):
    kinds, visibilities = {}, {}
    for kind in DEAL_KINDS:
        for visibility in ("ORGANIZATION", "PRIVATE"):
            record = await KINDS[kind].create(chain.rep, visibility=visibility)
            kinds[record["id"]], visibilities[record["id"]] = kind, visibility
            if visibility == "PRIVATE":
                await chain.rep.api.data(ADD_FOLLOWER, record=record["id"], user=org.outsider.id)
    secret = record  # the private opportunity
    comment = await chain.rep.api.data(COMMENT, record=secret["id"], body="Secret")
    reads_private = viewer in PRIVATE_READERS
    readable = {rid for rid in kinds if reads_private or visibilities[rid] == "ORGANIZATION"}
    api = member(org, chain, viewer).api

    for rid in kinds:
        body = await api.post(NODE, {"id": rid})
        if rid in readable:
            assert body["data"]["node"] == {"id": rid}
        else:
            assert body["data"] is None and codes(body) == ["NOT_FOUND"]
    body = await api.post(NODE, {"id": comment["addComment"]["id"]})
    assert codes(body) == ([] if reads_private else ["NOT_FOUND"])

    lists = await api.data(LISTS)
    for kind, name in (("lead", "leads"), ("opportunity", "opportunities")):
        expected = {rid for rid in readable if kinds[rid] == kind}
        assert {node["id"] for node in lists[name]["nodes"]} == expected
        assert lists[name]["totalCount"] == len(expected)
    on_account = await api.data(ACCOUNT_OPPORTUNITIES, id=secret["account"]["id"])
    assert on_account["node"]["opportunities"]["totalCount"] == (1 if reads_private else 0)


# Changing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("actor", EVERYONE)
@pytest.mark.parametrize("kind", ["account", "contact"])
async def test_who_edits_accounts_and_contacts(org, chain, kind, actor):
    k, api = KINDS[kind], member(org, chain, actor).api
    record = await k.create(chain.rep)
    update = {"input": {"id": record["id"], k.title: "Edited"}}
    if actor in EDITORS:
        assert (await api.data(k.update, **update))[f"update{k.type_name}"][k.title] == "Edited"
        assert (await api.data(k.delete, id=record["id"]))[f"delete{k.type_name}"]["deletedAt"]
        assert await org.admin.api.error_code(NODE, id=record["id"]) == "NOT_FOUND"
    else:
        assert await api.error_code(k.update, **update) == "FORBIDDEN"
        assert await api.error_code(k.delete, id=record["id"]) == "FORBIDDEN"
        seen = await org.admin.api.data(TITLE, id=record["id"])
        assert seen["node"][k.title] == record[k.title]


async def _deal_with_roles(org: Org, chain: Chain, kind: str, visibility: str) -> tuple[str, list]:
    """A record of rep's with a participant and a follower (outsider); its id and every edit of
    it as (mutation, variables, what it returns when allowed), in an order where all succeed."""
    k, rep = KINDS[kind], chain.rep
    rid = (await k.create(rep, visibility=visibility))["id"]
    participant, primary, extra = [(await create_contact(rep))["id"] for _ in range(3)]
    await rep.api.data(ADD_PARTICIPANT, input={"recordId": rid, "contactId": participant})
    await rep.api.data(ADD_FOLLOWER, record=rid, user=org.outsider.id)
    follower, user = org.outsider.id, org.teammate.id
    return rid, [
        (k.update, {"input": {"id": rid, k.title: "Edited"}}, {k.title: "Edited"}),
        (SET_PRIMARY, {"record": rid, "contact": primary}, {"contact": {"id": primary}}),
        (ADD_PARTICIPANT, {"input": {"recordId": rid, "contactId": extra}},
         {"participants": [{"contact": {"id": participant}}, {"contact": {"id": extra}}]}),
        (REMOVE_PARTICIPANT, {"record": rid, "contact": participant},
         {"participants": [{"contact": {"id": extra}}]}),
        (ADD_FOLLOWER, {"record": rid, "user": user},
         {"followers": [{"id": rep.id}, {"id": follower}, {"id": user}]}),
        (REMOVE_FOLLOWER, {"record": rid, "user": follower},
         {"followers": [{"id": rep.id}, {"id": user}]}),
        (k.delete, {"id": rid}, {"deletedAt": NOT_NULL}),
    ]  # fmt: skip


@pytest.mark.parametrize("actor", EVERYONE)
@pytest.mark.parametrize("visibility", ["ORGANIZATION", "PRIVATE"])
@pytest.mark.parametrize("kind", DEAL_KINDS)
async def test_who_edits_leads_and_opportunities(org, chain, kind, visibility, actor):
    rid, edits = await _deal_with_roles(org, chain, kind, visibility)
    before = await org.admin.api.data(STATE, id=rid)
    api = member(org, chain, actor).api
    refusal = None if actor in EDITORS else "FORBIDDEN"
    if visibility == "PRIVATE" and actor not in PRIVATE_READERS:
        refusal = "NOT_FOUND"
    for query, variables, allowed in edits:
        body = await api.post(query, variables)
        if refusal:
            assert body["data"] is None and codes(body) == [refusal], query
        else:
            payload = next(iter(body["data"].values()))
            assert {key: payload[key] for key in allowed} == allowed, query
    if refusal:
        assert await org.admin.api.data(STATE, id=rid) == before
    else:
        assert await org.admin.api.error_code(NODE, id=rid) == "NOT_FOUND"


@pytest.mark.parametrize("kind", DEAL_KINDS)
async def test_readers_follow_unfollow_and_comment(org, chain, kind):
    public = (await KINDS[kind].create(chain.rep))["id"]
    private = (await KINDS[kind].create(chain.rep, visibility="PRIVATE"))["id"]
    await chain.rep.api.data(ADD_FOLLOWER, record=private, user=org.outsider.id)

    # A reader who may not edit (a seller of another team) follows, comments and unfollows...
    seller = org.seller.api
    assert (await seller.data(FOLLOW, record=public))["followRecord"]["isFollowedByViewer"]
    comment = await seller.data(COMMENT, record=public, body="Seen")
    assert comment["addComment"]["author"] == {"id": org.seller.id}
    unfollowed = await seller.data(UNFOLLOW, record=public)
    assert unfollowed["unfollowRecord"]["isFollowedByViewer"] is False
    # ...but not on the private record, which does not exist for them.
    for query, variables in ((FOLLOW, {}), (UNFOLLOW, {}), (COMMENT, {"body": "Psst"})):
        assert await seller.error_code(query, record=private, **variables) == "NOT_FOUND"

    # A follower of the private record reads it: comments, then unfollows and loses sight of it.
    outsider = org.outsider.api
    await outsider.data(COMMENT, record=private, body="Noted")
    unfollowed = await outsider.data(UNFOLLOW, record=private)
    assert unfollowed["unfollowRecord"]["isFollowedByViewer"] is False
    assert await outsider.error_code(NODE, id=private) == "NOT_FOUND"
    state = (await org.admin.api.data(STATE, id=private))["node"]
    # (The rep made it and owns it: the rep follows it.)
    assert state["followers"] == [{"id": chain.rep.id}] and state["comments"]["totalCount"] == 1
    assert (await org.admin.api.data(STATE, id=public))["node"]["comments"]["totalCount"] == 1


# Assigning -----------------------------------------------------------------------------------

ASSIGNMENTS = [  # (who assigns, to whom, the refusal or None)
    ("seller", "seller", None),
    ("seller", "teammate", "FORBIDDEN"),
    ("manager", "seller", None),
    ("manager", "outsider", "FORBIDDEN"),
    ("manager", "admin", "FORBIDDEN"),
    ("director", "rep", None),  # a report of a report is in the team
    ("director", "seller", "FORBIDDEN"),
    ("admin", "outsider", None),
    ("admin", "inactive", "BAD_USER_INPUT"),
    ("admin", "foreign", "BAD_USER_INPUT"),
]


@pytest.mark.parametrize(("actor", "target", "refusal"), ASSIGNMENTS)
async def test_who_assigns_records_to_whom(org, other_org, chain, actor, target, refusal):
    assigner = member(org, chain, actor)
    if target == "inactive":
        owner = (await org.add_user("SELLER", org.manager)).id
        await org.admin.api.data(UPDATE_USER, input={"id": owner, "isActive": False})
    else:
        owner = other_org.seller.id if target == "foreign" else member(org, chain, target).id
    error = {"code": refusal, **({"field": "ownerId"} if refusal == "BAD_USER_INPUT" else {})}
    for kind, k in KINDS.items():
        created = await attempt(k.create(assigner, ownerId=owner))
        record = await k.create(assigner)
        updated = await attempt(
            assigner.api.data(k.update, input={"id": record["id"], "ownerId": owner})
        )
        if refusal:
            assert created == {"error": error} and updated == {"error": error}, kind
            assert await owner_of(org, record["id"]) == assigner.id, kind
        else:
            assert await owner_of(org, created["id"]) == owner, kind
            assert await owner_of(org, record["id"]) == owner, kind


# Users ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("actor", ["manager", "seller"])
async def test_only_admins_create_and_manage_users(org, actor):
    me = getattr(org, actor)
    new = {"email": unique_email(), "fullName": "New Person", "password": PASSWORD}
    assert await me.api.error_code(CREATE_USER, input={**new, "role": "ADMIN"}) == "FORBIDDEN"
    for target in (me, org.teammate):
        for change in ({"role": "ADMIN"}, {"managerId": None}, {"isActive": False}):
            code = await me.api.error_code(UPDATE_USER, input={"id": target.id, **change})
            assert code == "FORBIDDEN", (target, change)
    role = "SALES_MANAGER" if actor == "manager" else "SELLER"
    assert (await me.api.data(VIEWER))["viewer"] == {"id": me.id, "role": role, "isActive": True}
    seen = await org.teammate.api.data(MANAGER, id=org.teammate.id)
    assert seen["node"]["manager"] == {"id": org.manager.id}
    # The refused creation wrote nothing: the admin can create the same user.
    assert (await org.admin.api.data(CREATE_USER, input=new))["createUser"]["role"] == "SELLER"


async def test_admins_change_managers_and_roles_which_moves_rights(org):
    lead = await create_lead(org.outsider)
    rename, update = {"input": {"id": lead["id"], "title": "Renamed"}}, KINDS["lead"].update
    assert await org.manager.api.error_code(update, **rename) == "FORBIDDEN"
    moved = await org.admin.api.data(
        UPDATE_USER, input={"id": org.outsider.id, "managerId": org.manager.id}
    )
    assert moved["updateUser"]["manager"] == {"id": org.manager.id}
    assert (await org.manager.api.data(update, **rename))["updateLead"]["title"] == "Renamed"

    promoted = await org.admin.api.data(UPDATE_USER, input={"id": org.seller.id, "role": "ADMIN"})
    assert promoted["updateUser"]["role"] == "ADMIN"
    assert (await org.seller.api.data(update, **rename))["updateLead"]["title"] == "Renamed"
    new = {"email": unique_email(), "fullName": "By New Admin", "password": PASSWORD}
    assert (await org.seller.api.data(CREATE_USER, input=new))["createUser"]["email"]


async def test_deactivated_users_tokens_stop_working_and_they_cannot_log_in(org):
    api, login = org.seller.api, {"email": org.seller.email, "password": PASSWORD}
    assert (await api.data(VIEWER))["viewer"]["id"] == org.seller.id
    off = await org.admin.api.data(UPDATE_USER, input={"id": org.seller.id, "isActive": False})
    assert off["updateUser"]["isActive"] is False
    for query in (VIEWER, LISTS):
        assert set(codes(await api.post(query))) == {"UNAUTHENTICATED"}
    assert await api.as_(None).error_code(LOGIN, **login) == "UNAUTHENTICATED"

    await org.admin.api.data(UPDATE_USER, input={"id": org.seller.id, "isActive": True})
    assert await api.error_code(VIEWER) == "UNAUTHENTICATED"  # revoked for good
    token = (await api.as_(None).data(LOGIN, **login))["login"]["token"]
    assert (await api.as_(token).data(VIEWER))["viewer"]["id"] == org.seller.id


async def test_the_last_active_admin_can_be_neither_deactivated_nor_demoted(org):
    admin = org.admin
    for change in ({"isActive": False}, {"role": "SALES_MANAGER"}, {"role": "SELLER"}):
        code = await admin.api.error_code(UPDATE_USER, input={"id": admin.id, **change})
        assert code == "CONFLICT", change
    viewer = (await admin.api.data(VIEWER))["viewer"]
    assert viewer == {"id": admin.id, "role": "ADMIN", "isActive": True}

    # A deactivated admin does not count, and can be demoted while one active admin is left.
    retired = await org.add_user("ADMIN")
    await admin.api.data(UPDATE_USER, input={"id": retired.id, "isActive": False})
    code = await admin.api.error_code(UPDATE_USER, input={"id": admin.id, "isActive": False})
    assert code == "CONFLICT"
    demoted = await admin.api.data(UPDATE_USER, input={"id": retired.id, "role": "SELLER"})
    assert demoted["updateUser"]["role"] == "SELLER"

    # With a second active admin the first may step down; the second is then the last one.
    second = await org.add_user("ADMIN")
    stepped = await admin.api.data(UPDATE_USER, input={"id": admin.id, "role": "SALES_MANAGER"})
    assert stepped["updateUser"]["role"] == "SALES_MANAGER"
    for change in ({"isActive": False}, {"role": "SELLER"}):
        code = await second.api.error_code(UPDATE_USER, input={"id": second.id, **change})
        assert code == "CONFLICT", change


@pytest.mark.parametrize("change", [{"isActive": False}, {"role": "SELLER"}])
async def test_two_admins_removing_each_other_at_once_leave_one(http, change):
    for _ in range(4):  # a few rounds: the two requests must really overlap to show a race
        org = await new_org(http)
        second = await org.add_user("ADMIN")
        bodies = await asyncio.gather(
            org.admin.api.post(UPDATE_USER, {"input": {"id": second.id, **change}}),
            second.api.post(UPDATE_USER, {"input": {"id": org.admin.id, **change}}),
        )
        # One wins. The other is refused: CONFLICT, or if it came second, its token is revoked
        # (UNAUTHENTICATED) or its author no longer an admin (FORBIDDEN).
        assert sorted(len(codes(body)) for body in bodies) == [0, 1], bodies
        refused = set(codes(bodies[0]) + codes(bodies[1]))
        assert refused <= {"CONFLICT", "UNAUTHENTICATED", "FORBIDDEN"}
        assert (await org.manager.api.data(ACTIVE_ADMINS))["users"]["totalCount"] == 1


async def test_manager_cycles_are_refused(org, chain):
    director, mid = chain.director, chain.mid
    low = await org.add_user("SALES_MANAGER", mid)  # director -> mid -> low
    for user, manager in ((mid, mid), (director, mid), (director, low)):  # self, direct, indirect
        change = {"id": user.id, "managerId": manager.id}
        error = await org.admin.api.error(UPDATE_USER, input=change)
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "managerId"}
    assert (await org.admin.api.data(MANAGER, id=chain.director.id))["node"]["manager"] is None
    assert (await org.admin.api.data(MANAGER, id=chain.mid.id))["node"]["manager"] == {
        "id": chain.director.id
    }
    # Not a blanket refusal: a manager from outside the chain is fine.
    moved = await org.admin.api.data(
        UPDATE_USER, input={"id": chain.director.id, "managerId": org.manager.id}
    )
    assert moved["updateUser"]["manager"] == {"id": org.manager.id}


# Authentication ------------------------------------------------------------------------------


async def test_only_sign_up_and_login_work_without_a_valid_token(org, api):
    lead = await create_lead(org.seller)
    spent = (await api.data(LOGIN, email=org.seller.email, password=PASSWORD))["login"]["token"]
    assert await api.as_(spent).data("mutation { logout }") == {"logout": True}
    new_user = {"email": unique_email(), "fullName": "Anon", "password": PASSWORD}
    operations = [
        (VIEWER, {}),
        (LISTS, {}),
        ("{ organization { id } pipelineStages { id } }", {}),
        (NODE, {"id": lead["id"]}),
        (NODES, {"ids": [lead["id"]]}),
        (CREATE_ACCOUNT, {"input": {"name": "Anon"}}),
        (KINDS["lead"].update, {"input": {"id": lead["id"], "title": "Anon"}}),
        (KINDS["lead"].delete, {"id": lead["id"]}),
        (FOLLOW, {"record": lead["id"]}),
        (COMMENT, {"record": lead["id"], "body": "Anon"}),
        (CREATE_USER, {"input": new_user}),
        (UPDATE_USER, {"input": {"id": org.admin.id, "isActive": False}}),
        ("mutation { logout }", {}),
        ('mutation { changePassword(currentPassword: "x", newPassword: "y") { id } }', {}),
    ]
    for anonymous in (api, api.as_("crm_not-a-token"), api.as_(spent)):
        for query, variables in operations:
            body = await anonymous.post(query, variables)
            assert codes(body) and set(codes(body)) == {"UNAUTHENTICATED"}, (query, body)
            assert not any((body.get("data") or {}).values()), body
    # Nothing happened: the lead is intact, the admin active; signing up needs no token.
    seen = (await org.admin.api.data(STATE, id=lead["id"]))["node"]
    assert seen["version"] == lead["version"] and seen["comments"]["totalCount"] == 0
    assert (await org.admin.api.data(VIEWER))["viewer"]["isActive"] is True
    sign_up = {"organizationName": "Anon Co", "fullName": "A", "email": unique_email()}
    assert (await api.data(SIGN_UP, input={**sign_up, "password": PASSWORD}))["signUp"]["token"]


async def test_the_sessions_team_is_the_walk_down_the_reporting_lines(org, chain):
    """On PostgreSQL the session's statement reads the viewer's team (what
    permissions.team_ids looks up otherwise): the walk over the organization's (user, manager)
    pairs, for every role, and with a cycle in the lines; admins get none from it (looked up
    when asked), nor does anyone on SQLite."""
    everyone = [org.admin, org.manager, org.seller, org.teammate, org.outsider]
    everyone += [chain.director, chain.mid, chain.rep]
    organization_id = (await User.get(id=pk(org.admin.id))).organization_id

    async def teams() -> dict[int, set[int] | None]:
        pairs = await User.filter(organization_id=organization_id).values_list("id", "manager_id")
        lines = reporting_lines(pairs)  # type: ignore[arg-type]
        found = {}
        for person in everyone:
            user, team, why = await session_user(digest(person.api.token or ""))
            assert user is not None and why is None, why
            if DATABASE != "postgres" or user.role == Role.ADMIN:
                assert team is None, person
            else:
                assert team == reports_of(user.id, lines), person
            found[user.id] = team
        return found

    found = await teams()
    if DATABASE == "postgres":
        assert found[pk(chain.director.id)] == {pk(chain.mid.id), pk(chain.rep.id)}
        assert found[pk(org.manager.id)] == {pk(org.seller.id), pk(org.teammate.id)}
    # A cycle (director -> mid -> rep -> director, written directly): each walk still ends.
    await User.filter(id=pk(chain.director.id)).update(manager_id=pk(chain.rep.id))
    found = await teams()
    if DATABASE == "postgres":
        assert found[pk(chain.mid.id)] == {pk(chain.rep.id), pk(chain.director.id)}
