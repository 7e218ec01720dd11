"""Partners: API keys and their scopes, page sizes, and the change feed (snapshot, changes,
tombstones, retention), down to a sync that ends equal to the database under concurrent writes."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from models import (
    Account,
    ApiKey,
    Contact,
    OpportunityFollower,
    OpportunityParticipant,
)
from resolvers.sync import prune
from tests.helpers import (
    DELETE,
    UPDATE,
    Api,
    Org,
    create_account,
    create_contact,
    create_opportunity,
    global_id,
    pk,
)
from tests.test_deals import ADD_FOLLOWER, ADD_PARTICIPANT, REMOVE_FOLLOWER

CREATE_KEY = """mutation($input: CreateApiKeyInput!) {
  createApiKey(input: $input) {
    secret apiKey { id name prefix scopes lastUsedAt createdBy { id } }
  }
}"""
REVOKE_KEY = "mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }"
KEYS = "{ apiKeys { id prefix scopes revokedAt lastUsedAt } }"
ACCOUNTS = "query($first: Int) { accounts(first: $first) { nodes { id name } } }"
CREATE_ACCOUNT = "mutation($input: CreateAccountInput!) { createAccount(input: $input) { id } }"
CREATE_CONTACT = "mutation($input: CreateContactInput!) { createContact(input: $input) { id } }"
CHANGES = """query($since: String, $types: [String!], $first: Int!) {
  changes(since: $since, types: $types, first: $first) {
    pageInfo { hasNextPage endCursor }
    nodes {
      cursor op recordType recordId changedAt link
      node {
        id
        ... on Account { name }
        ... on Contact { firstName }
        ... on Lead { title }
        ... on Opportunity { name }
        ... on Activity { subject }
      }
    }
  }
}"""


async def new_key(org: Org, scopes: list[str] | None = None, **more: Any) -> tuple[Api, dict]:
    values = {"name": "Warehouse", "scopes": scopes or [], **more}
    made = (await org.admin.api.data(CREATE_KEY, input=values))["createApiKey"]
    return org.admin.api.as_(made["secret"]), made


async def test_api_keys_are_made_by_admins_and_shown_once(org, other_org):
    key, made = await new_key(org)
    assert made["secret"].startswith("crmk_" + made["apiKey"]["prefix"])
    assert made["apiKey"]["scopes"] == ["READ"]
    assert made["apiKey"]["createdBy"] == {"id": org.admin.id}
    stored = await ApiKey.get(id=pk(made["apiKey"]["id"]))
    assert made["secret"] not in (stored.secret_hash, stored.prefix)  # a digest only
    listed = (await org.admin.api.data(KEYS))["apiKeys"]
    assert [k["prefix"] for k in listed] == [made["apiKey"]["prefix"]]
    assert "secret" not in listed[0]
    assert (await other_org.admin.api.data(KEYS))["apiKeys"] == []
    for member in (org.manager, org.seller):
        error = await member.api.error(CREATE_KEY, input={"name": "Mine"})
        assert error["extensions"]["code"] == "FORBIDDEN"
    for values, field in (
        ({"name": " "}, "name"),
        ({"name": "Old", "expiresAt": "2020-01-01T00:00:00Z"}, "expiresAt"),
    ):
        error = await org.admin.api.error(CREATE_KEY, input=values)
        assert (error["extensions"]["code"], error["extensions"]["field"]) == (
            "BAD_USER_INPUT",
            field,
        )

    # The key reads its organization, and only it.
    mine = await create_account(org.seller, name="Visible to the key")
    theirs = await create_account(other_org.seller, name="Not for this key")
    names = {a["name"] for a in (await key.data(ACCOUNTS, first=100))["accounts"]["nodes"]}
    assert mine["name"] in names and theirs["name"] not in names
    error = await key.error("query($id: ID!) { node(id: $id) { id } }", id=theirs["id"])
    assert error["extensions"]["code"] == "NOT_FOUND"
    assert (await org.admin.api.data(KEYS))["apiKeys"][0]["lastUsedAt"] is not None


async def test_scopes_decide_what_a_key_may_change(org):
    reader, _ = await new_key(org)
    accounts_only, _ = await new_key(org, ["WRITE_ACCOUNTS"])
    writer, _ = await new_key(org, ["WRITE"])
    account = {"input": {"name": "From the ERP"}}
    contact = {"input": {"firstName": "A", "lastName": "B"}}

    error = await reader.error(CREATE_ACCOUNT, **account)
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert (await accounts_only.data(CREATE_ACCOUNT, **account))["createAccount"]["id"]
    error = await accounts_only.error(CREATE_CONTACT, **contact)
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert (await writer.data(CREATE_CONTACT, **contact))["createContact"]["id"]
    # Aliases and fragments do not smuggle a mutation past the check.
    sneaky = 'mutation { ... on Mutation { a: createContact(input: {firstName: "X", lastName: "Y"}) { id } } }'  # noqa: E501
    assert (await accounts_only.error(sneaky))["extensions"]["code"] == "FORBIDDEN"
    # No key manages keys, users or settings, whatever its scopes.
    error = await writer.error(CREATE_KEY, input={"name": "Child"})
    assert error["extensions"]["code"] == "FORBIDDEN"
    for mutation in (
        'mutation { createUser(input: {email: "k@x.example", fullName: "K", password: '
        '"correct horse battery", role: ADMIN}) { id } }',
        'mutation { createPipelineStage(input: {name: "K", probability: 5}) { id } }',
        'mutation { updateOrganization(input: {name: "K"}) { name } }',
    ):
        assert (await writer.error(mutation))["extensions"]["code"] == "FORBIDDEN", mutation
    before = await Account.filter(name="From the ERP").count()
    await reader.error(CREATE_ACCOUNT, **account)
    assert await Account.filter(name="From the ERP").count() == before  # refused, not written


async def test_revoked_expired_and_orphaned_keys_stop_working(org):
    key, made = await new_key(org)
    assert await key.data(ACCOUNTS)
    await org.admin.api.data(REVOKE_KEY, id=made["apiKey"]["id"])
    assert (await key.error(ACCOUNTS))["extensions"]["code"] == "UNAUTHENTICATED"
    again = await org.admin.api.error(REVOKE_KEY, id=made["apiKey"]["id"])
    assert again["extensions"]["code"] == "CONFLICT"

    expiring, made = await new_key(org, expiresAt="2100-01-01T00:00:00Z")
    assert await expiring.data(ACCOUNTS)
    past = datetime.now(UTC) - timedelta(minutes=1)
    await ApiKey.filter(id=pk(made["apiKey"]["id"])).update(expires_at=past)
    assert (await expiring.error(ACCOUNTS))["extensions"]["code"] == "UNAUTHENTICATED"

    # A second admin's key stops when that admin is no longer one.
    other_admin = await org.add_user("ADMIN")
    made = (await other_admin.api.data(CREATE_KEY, input={"name": "Theirs"}))["createApiKey"]
    theirs = org.admin.api.as_(made["secret"])
    assert await theirs.data(ACCOUNTS)
    await org.admin.api.data(UPDATE["User"], input={"id": other_admin.id, "role": "SELLER"})
    assert (await theirs.error(ACCOUNTS))["extensions"]["code"] == "UNAUTHENTICATED"


async def test_keys_page_further_than_people(org):
    key, _ = await new_key(org)
    assert (await key.data(ACCOUNTS, first=1000))["accounts"]["nodes"] is not None
    error = await key.error(ACCOUNTS, first=1001)
    assert (error["extensions"]["code"], error["extensions"]["field"]) == (
        "BAD_USER_INPUT",
        "first",
    )
    error = await org.admin.api.error(ACCOUNTS, first=101)
    assert (error["extensions"]["code"], error["extensions"]["field"]) == (
        "BAD_USER_INPUT",
        "first",
    )
    # Timelines page like every list.
    account = await create_account(org.admin)
    timeline = """query($id: ID!, $first: Int) { node(id: $id) { ... on Account {
      timeline(first: $first) { edges { cursor } } } } }"""
    assert (await key.data(timeline, id=account["id"], first=1000))["node"]["timeline"]
    for api, first in ((key, 1001), (org.admin.api, 101)):
        error = await api.error(timeline, id=account["id"], first=first)
        assert (error["extensions"]["code"], error["extensions"]["field"]) == (
            "BAD_USER_INPUT",
            "first",
        )
        assert f"between 0 and {first - 1}" in error["message"]


# The change feed


async def pull(api: Api, since: str | None, types: list[str] | None = None, first: int = 50):
    """Every change from `since` to now: (entries, the cursor to resume from)."""
    entries: list[dict[str, Any]] = []
    for _ in range(1000):
        page = (await api.data(CHANGES, since=since, types=types, first=first))["changes"]
        entries += page["nodes"]
        since = page["pageInfo"]["endCursor"]
        if not page["pageInfo"]["hasNextPage"]:
            return entries, since
    raise AssertionError("the feed does not end")


def labels(entries: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["op"], e["recordType"], e["recordId"]) for e in entries]


async def test_the_feed_starts_with_everything_then_serves_each_change_once(org, other_org):
    key, _ = await new_key(org)
    account = await create_account(org.seller, name="Acme")
    contact = await create_contact(org.seller, firstName="Ada")
    deal = await create_opportunity(org.seller, accountId=account["id"], name="Big deal")
    await create_account(other_org.seller, name="Elsewhere")

    snapshot, cursor = await pull(key, None, first=2)
    seen = labels(snapshot)
    assert ("UPSERT", "Account", account["id"]) in seen
    assert ("UPSERT", "Contact", contact["id"]) in seen
    assert ("UPSERT", "Opportunity", deal["id"]) in seen
    assert all(e["node"] is None or e["node"].get("name") != "Elsewhere" for e in snapshot)
    types = [e["recordType"] for e in snapshot]
    order = ["Account", "Contact", "Lead", "Opportunity", "OpportunityFollower"]
    assert types == sorted(types, key=order.index)
    # The owner follows the deal from its creation.
    owner = next(e for e in snapshot if e["recordType"] == "OpportunityFollower")
    assert owner["link"] == {"recordId": deal["id"], "userId": org.seller.id}

    nothing, same = await pull(key, cursor)
    assert nothing == []  # nothing new: the cursor stays valid

    await org.seller.api.data(UPDATE["Account"], input={"id": account["id"], "name": "Acme Ltd"})
    await org.seller.api.data(
        ADD_PARTICIPANT, input={"recordId": deal["id"], "contactId": contact["id"], "role": "CFO"}
    )
    await org.seller.api.data(ADD_FOLLOWER, record=deal["id"], user=org.teammate.id)
    await org.seller.api.data(REMOVE_FOLLOWER, record=deal["id"], user=org.teammate.id)
    await org.seller.api.data(DELETE["Contact"], id=contact["id"])
    await create_account(other_org.seller, name="Still elsewhere")

    changes, cursor = await pull(key, same)
    kinds = [(op, record_type) for op, record_type, _ in labels(changes)]
    assert ("UPSERT", "Account") in kinds
    assert ("UPSERT", "OpportunityParticipant") in kinds
    assert kinds.index(("UPSERT", "OpportunityFollower")) < kinds.index(
        ("DELETE", "OpportunityFollower")
    )
    tombstone = next(e for e in changes if e["op"] == "DELETE" and e["recordType"] == "Contact")
    assert (tombstone["recordId"], tombstone["node"]) == (contact["id"], None)
    assert tombstone["changedAt"] is not None
    # Deleting the contact removed its participation: a tombstone for the link too.
    link = next(
        e for e in changes if e["op"] == "DELETE" and e["recordType"] == "OpportunityParticipant"
    )
    assert link["link"] == {"recordId": deal["id"], "contactId": contact["id"]}
    renamed = next(e for e in changes if e["recordType"] == "Account")
    assert renamed["node"]["name"] == "Acme Ltd"
    assert all(
        e["recordType"] != "Account" or e["node"]["name"] != "Still elsewhere" for e in changes
    )
    again, cursor = await pull(key, cursor)
    assert again == []  # each change once

    # Deleting the opportunity tombstones its links too.
    await org.seller.api.data(ADD_FOLLOWER, record=deal["id"], user=org.manager.id)
    _, cursor = await pull(key, cursor)
    await org.seller.api.data(DELETE["Opportunity"], id=deal["id"])
    gone, _ = await pull(key, cursor)
    assert ("DELETE", "Opportunity") in [(e["op"], e["recordType"]) for e in gone]
    followers = [e for e in gone if e["recordType"] == "OpportunityFollower"]
    assert {e["op"] for e in followers} == {"DELETE"}
    assert sorted(e["link"]["userId"] for e in followers) == sorted([org.seller.id, org.manager.id])
    assert {e["link"]["recordId"] for e in followers} == {deal["id"]}

    only_accounts, _ = await pull(key, same, types=["Account"])
    assert {e["recordType"] for e in only_accounts} == {"Account"}


async def test_the_feed_is_for_admins_and_checks_its_arguments(org):
    key, _ = await new_key(org)
    for member in (org.manager, org.seller):
        error = await member.api.error(CHANGES, first=10)
        assert error["extensions"]["code"] == "FORBIDDEN"
    for arguments, field in (
        ({"since": "garbage"}, "since"),
        ({"types": ["Invoice"]}, "types"),
        ({"first": 0}, "first"),
        ({"first": 1001}, "first"),
    ):
        error = await key.error(CHANGES, **{"first": 10, **arguments})
        assert (error["extensions"]["code"], error["extensions"]["field"]) == (
            "BAD_USER_INPUT",
            field,
        ), arguments
    error = await org.admin.api.error(CHANGES, first=101)  # people page up to 100
    assert error["extensions"]["field"] == "first"


async def test_a_cursor_older_than_the_retention_must_resync(org):
    key, _ = await new_key(org)
    await create_account(org.seller)
    _, cursor = await pull(key, None)
    await create_account(org.seller)
    await prune(timedelta(seconds=-1))  # forget everything so far
    error = await key.error(CHANGES, since=cursor, first=10)
    assert (error["extensions"]["code"], error["extensions"]["field"]) == (
        "RESYNC_REQUIRED",
        "since",
    )
    fresh, _ = await pull(key, None)  # starting over works
    assert fresh


# A partner's sync under concurrent writers


async def truth(org: Org) -> dict[tuple[str, str], Any]:
    """The organization's synced records as the partner should hold them."""
    organization_id = (await Contact.filter(owner_id=pk(org.seller.id)).first()).organization_id  # type: ignore[union-attr]
    copy: dict[tuple[str, str], Any] = {}
    for row in await Account.filter(organization_id=organization_id, deleted_at__isnull=True):
        copy[("Account", global_id("Account", row.id))] = row.name
    for person in await Contact.filter(organization_id=organization_id, deleted_at__isnull=True):
        copy[("Contact", global_id("Contact", person.id))] = person.first_name
    for link in await OpportunityParticipant.filter(
        record__organization_id=organization_id, record__deleted_at__isnull=True
    ):
        copy[("OpportunityParticipant", global_id("OpportunityParticipant", link.id))] = {
            "recordId": global_id("Opportunity", link.record_id),
            "contactId": global_id("Contact", link.contact_id),
        }
    for follower in await OpportunityFollower.filter(
        record__organization_id=organization_id, record__deleted_at__isnull=True
    ):
        copy[("OpportunityFollower", global_id("OpportunityFollower", follower.id))] = {
            "recordId": global_id("Opportunity", follower.record_id),
            "userId": global_id("User", follower.user_id),
        }
    return copy


def apply(copy: dict[tuple[str, str], Any], entries: list[dict[str, Any]]) -> None:
    for entry in entries:
        key = (entry["recordType"], entry["recordId"])
        if entry["op"] == "DELETE":
            copy.pop(key, None)
        elif entry["link"] is not None:
            copy[key] = entry["link"]
        elif entry["node"] is not None:
            node = entry["node"]
            copy[key] = node.get("name") or node.get("firstName")
        # an UPSERT of a record deleted since: its DELETE follows


SYNCED = ["Account", "Contact", "OpportunityParticipant", "OpportunityFollower"]


async def writer(org: Org, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    deal = await create_opportunity(org.seller)
    contacts = [await create_contact(org.seller, firstName=f"W{seed}x{n}") for n in range(3)]
    accounts = [await create_account(org.seller, name=f"A{seed}x{n}") for n in range(3)]
    for step in range(rounds):
        choice = rng.randrange(6)
        if choice == 0:
            accounts.append(await create_account(org.seller, name=f"A{seed}s{step}"))
        elif choice == 1 and accounts:
            target = rng.choice(accounts)
            await org.seller.api.data(
                UPDATE["Account"], input={"id": target["id"], "name": f"A{seed}r{step}"}
            )
        elif choice == 2 and len(accounts) > 1:
            target = accounts.pop(rng.randrange(len(accounts)))
            await org.seller.api.data(DELETE["Account"], id=target["id"])
        elif choice == 3 and contacts:
            target = contacts.pop(rng.randrange(len(contacts)))
            await org.seller.api.data(DELETE["Contact"], id=target["id"])
        elif choice == 4:
            contact = await create_contact(org.seller, firstName=f"W{seed}s{step}")
            contacts.append(contact)
            await org.seller.api.data(
                ADD_PARTICIPANT, input={"recordId": deal["id"], "contactId": contact["id"]}
            )
        else:
            user = rng.choice([org.teammate.id, org.manager.id])
            following = rng.random() < 0.5
            query = ADD_FOLLOWER if following else REMOVE_FOLLOWER
            await org.seller.api.post(query, {"record": deal["id"], "user": user})


async def late_committer(org: Org, database_url: str, stop: asyncio.Event) -> None:
    """Transactions that take their change ids early and commit late (PostgreSQL)."""
    from tortoise.transactions import in_transaction

    organization_id = (await Contact.filter(owner_id=pk(org.seller.id)).first()).organization_id  # type: ignore[union-attr]
    step = 0
    while not stop.is_set():
        async with in_transaction():
            account = await Account.create(
                organization_id=organization_id, name=f"Late {step}", owner_id=pk(org.seller.id)
            )
            await asyncio.sleep(0.15)  # others commit meanwhile, with higher change ids
            account.name = f"Late {step} done"
            await account.save()
        step += 1


async def test_a_partner_sync_ends_equal_to_the_database(live_server, org):
    key, _ = await new_key(org)
    await create_account(org.seller, name="Before the sync")
    await create_contact(org.seller, firstName="Before")
    copy: dict[tuple[str, str], Any] = {}
    stop = asyncio.Event()
    # On SQLite one transaction writes at a time: commits cannot come out of order there.
    late = asyncio.create_task(
        late_committer(org, live_server.database_url, stop)
        if live_server.database == "postgres"
        else stop.wait()
    )
    writers = asyncio.gather(*(writer(org, 25, seed) for seed in range(3)))
    cursor = None
    pulls = 0
    while not writers.done() or pulls < 3:
        entries, cursor = await pull(key, cursor, types=SYNCED, first=7)
        apply(copy, entries)
        pulls += 1
        await asyncio.sleep(0.05)
    await writers
    stop.set()
    await late
    entries, cursor = await pull(key, cursor, types=SYNCED)
    apply(copy, entries)
    assert copy == await truth(org)
    assert pulls >= 3


# Bulk export


async def export_lines(http, token: str | None, name: str) -> tuple[int, list[dict[str, Any]]]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await http.get(f"/export/{name}.ndjson", headers=headers)
    if response.status_code != 200:
        return response.status_code, []
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return 200, [json.loads(line) for line in response.text.splitlines()]


async def test_a_whole_type_exports_as_ndjson(http, org, other_org):
    _, made = await new_key(org)
    secret = made["secret"]
    accounts = [await create_account(org.seller, name=f"Export {n}") for n in range(3)]
    gone = await create_account(org.seller, name="Gone")
    await org.seller.api.data(DELETE["Account"], id=gone["id"])
    await create_account(other_org.seller, name="Not exported")
    status, lines = await export_lines(http, secret, "accounts")
    assert status == 200
    ids = [line["id"] for line in lines]
    assert {a["id"] for a in accounts} <= set(ids) and gone["id"] not in ids
    assert ids == sorted(ids, key=pk)
    assert all(line["name"] != "Not exported" for line in lines)
    first = next(line for line in lines if line["id"] == accounts[0]["id"])
    assert first["name"] == "Export 0" and first["ownerId"] == org.seller.id
    deal = await create_opportunity(org.seller, amount="12.50", currency="USD")
    _, deals = await export_lines(http, secret, "opportunities")
    assert next(d for d in deals if d["id"] == deal["id"])["amount"] == "12.50"

    assert (await export_lines(http, org.admin.api.token, "contacts"))[0] == 200
    assert (await export_lines(http, org.seller.api.token, "contacts"))[0] == 403
    assert (await export_lines(http, None, "contacts"))[0] == 401
    assert (await export_lines(http, secret, "invoices"))[0] == 404


async def test_an_export_is_one_snapshot(http, live_server, org):
    if live_server.database != "postgres":
        pytest.skip("SQLite's one connection serves the export alone: nothing changes meanwhile")
    _, made = await new_key(org)
    organization_id = (
        await Account.get(id=pk((await create_account(org.seller))["id"]))
    ).organization_id
    await Account.bulk_create(
        [
            Account(organization_id=organization_id, name=f"Bulk {n}", owner_id=pk(org.seller.id))
            for n in range(3000)
        ],
        batch_size=1000,
    )
    before = await Account.filter(organization_id=organization_id, deleted_at__isnull=True).count()
    last = await Account.filter(organization_id=organization_id).order_by("-id").first()
    assert last is not None
    headers = {"authorization": f"Bearer {made['secret']}"}
    seen = 0
    ids: list[str] = []
    async with http.stream("GET", "/export/accounts.ndjson", headers=headers) as response:
        async for line in response.aiter_lines():
            if not line:
                continue
            ids.append(json.loads(line)["id"])
            seen += 1
            if seen == 1:  # the export has begun: change the table under it
                await Account.filter(id=last.id).update(deleted_at=datetime.now(UTC))
                await Account.create(
                    organization_id=organization_id, name="Later", owner_id=pk(org.seller.id)
                )
    assert len(ids) == before  # as of the moment it began
    assert global_id("Account", last.id) in ids


@pytest.mark.parametrize(
    "query",
    [
        "query($t: DateTime) { products(filter: {updatedSince: $t}) { nodes { id } } }",
        "query($t: DateTime) { campaigns(updatedSince: $t) { nodes { id } } }",
        "query($t: DateTime) { segments(updatedSince: $t) { nodes { id } } }",
        "query($t: DateTime) { messages(updatedSince: $t) { nodes { id } } }",
        "query($t: DateTime) { agenda(filter: {updatedSince: $t}) { nodes { id } } }",
    ],
)
async def test_lists_take_updated_since(org, query):
    from tests.test_activities import plan
    from tests.test_campaigns import campaign, segment
    from tests.test_products import product

    await product(org.admin, "UPD", "1.00")
    await campaign(org.manager, segmentId=(await segment(org.manager, "upd"))["id"])
    await org.admin.api.data(
        "mutation($input: SendMessageInput!) { sendMessage(input: $input) { id } }",
        input={
            "recordId": (
                await create_opportunity(
                    org.admin, contactId=(await create_contact(org.admin))["id"]
                )
            )["id"],
            "subject": "S",
            "body": "B",
        },
    )
    await plan(org.admin, subject="Call", accountId=(await create_account(org.admin))["id"])

    def count(data: dict[str, Any]) -> int:
        return len(next(iter(data.values()))["nodes"])

    assert count(await org.admin.api.data(query, t="2000-01-01T00:00:00+02:00")) >= 1
    assert count(await org.admin.api.data(query, t="2100-01-01T00:00:00Z")) == 0
