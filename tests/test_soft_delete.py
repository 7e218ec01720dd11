"""Soft deletion: deleted records leave every list and count, an account with live records
cannot go, and a deleted contact leaves the deals it was on."""

from __future__ import annotations

from typing import Any

from tests.helpers import (
    DELETE,
    Org,
    create_account,
    create_contact,
    create_lead,
    create_opportunity,
)
from tests.paging import (
    ACCOUNT_CHILDREN,
    ACCOUNTS,
    CONTACTS,
    LEADS,
    OPPORTUNITIES,
    field_of,
    ids,
    ids_of,
    walk,
)

DEAL_ROLES = """
query($id: ID!) {
  node(id: $id) { ... on Deal { version contact { id } participants { contact { id } } } }
}"""
ADD_PARTICIPANT = """mutation($input: AddParticipantInput!) {
  addParticipant(input: $input) { id participants { contact { id } } }
}"""


async def test_deleted_records_leave_lists_and_counts(org: Org) -> None:
    api = org.admin.api
    spare = (await create_account(org.admin))["id"]
    account = (await create_account(org.admin))["id"]
    makers = {
        "Contact": (CONTACTS, create_contact),
        "Lead": (LEADS, create_lead),
        "Opportunity": (OPPORTUNITIES, create_opportunity),
    }
    made = {
        name: [(await make(org.admin, accountId=account))["id"] for _ in range(3)]
        for name, (_, make) in makers.items()
    }
    for name, (query, _) in makers.items():
        deleted = (await api.data(DELETE[name], id=made[name][1]))[f"delete{name}"]
        assert deleted["deletedAt"] is not None
        expected = [made[name][2], made[name][0]]
        assert await ids_of(api, query) == expected
        assert await walk(api, query, field_of(query), size=1) == expected
        assert await walk(api, query, field_of(query), size=1, backward=True) == expected
        assert await ids_of(api, query, filter={"accountId": account}) == expected
    nested = (await api.data(ACCOUNT_CHILDREN, id=account, first=10))["node"]
    assert set(ids(nested["contacts"])) == {made["Contact"][0], made["Contact"][2]}
    assert nested["contacts"]["totalCount"] == nested["opportunities"]["totalCount"] == 2

    # An account with live contacts, leads or opportunities cannot go.
    for name, (query, _) in makers.items():
        error = await api.error(DELETE["Account"], id=account)
        assert error["extensions"]["code"] == "CONFLICT"
        for record in (made[name][0], made[name][2]):
            await api.data(DELETE[name], id=record)
        assert await ids_of(api, query) == []
    await api.data(DELETE["Account"], id=account)
    assert await ids_of(api, ACCOUNTS) == [spare]
    assert (await api.error(DELETE["Account"], id=account))["extensions"]["code"] == "NOT_FOUND"


async def test_deleting_an_account_with_each_kind_of_live_record_is_a_conflict(org: Org) -> None:
    api = org.admin.api
    for kind, make in (
        ("contacts", create_contact),
        ("leads", create_lead),
        ("opportunities", create_opportunity),
    ):
        account = (await create_account(org.admin))["id"]
        await make(org.admin, accountId=account)
        error = await api.error(DELETE["Account"], id=account)
        assert error["extensions"]["code"] == "CONFLICT"
        assert error["extensions"]["linked"][kind] == 1
        assert account in await ids_of(api, ACCOUNTS)


async def test_deleting_a_contact_removes_it_from_deals(org: Org) -> None:
    api = org.admin.api
    gone = (await create_contact(org.admin))["id"]
    kept = (await create_contact(org.admin))["id"]
    lead = (await create_lead(org.admin, contactId=gone))["id"]
    opportunity = (await create_opportunity(org.admin, contactId=kept))["id"]
    bystander = (await create_lead(org.admin, contactId=kept))["id"]
    await api.data(ADD_PARTICIPANT, input={"recordId": lead, "contactId": kept})
    await api.data(ADD_PARTICIPANT, input={"recordId": opportunity, "contactId": gone})

    async def roles(record: str) -> dict[str, Any]:
        return (await api.data(DEAL_ROLES, id=record))["node"]

    versions = {record: (await roles(record))["version"] for record in (lead, opportunity)}
    deleted = (await api.data(DELETE["Contact"], id=gone))["deleteContact"]

    assert await ids_of(api, CONTACTS) == [kept]
    assert await roles(lead) == {
        "version": versions[lead] + 1,
        "contact": None,
        "participants": [{"contact": {"id": kept}}],
    }
    assert await roles(opportunity) == {
        "version": versions[opportunity] + 1,
        "contact": {"id": kept},
        "participants": [],
    }
    assert await ids_of(api, LEADS, filter={"contactId": gone}) == []
    assert await ids_of(api, LEADS, filter={"contactId": kept}) == [bystander]
    assert await ids_of(api, OPPORTUNITIES, filter={"contactId": kept}) == [opportunity]
    # Both records changed with the deletion, so a partner syncing by updatedSince learns of it.
    since = {"updatedSince": deleted["deletedAt"]}
    assert await ids_of(api, LEADS, filter=since) == [lead]
    assert await ids_of(api, OPPORTUNITIES, filter=since) == [opportunity]
