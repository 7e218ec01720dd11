"""List filters: every filter field of each top-level list, filters combined, word search,
updatedSince in any time zone, and lists that never cross organizations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from typing import Any

from tests.helpers import (
    UPDATE,
    Api,
    Org,
    create_account,
    create_contact,
    create_lead,
    create_opportunity,
)
from tests.paging import (
    ACCOUNTS,
    CONTACTS,
    LEADS,
    LISTS,
    OPPORTUNITIES,
    USERS,
    all_nodes,
    ids_of,
    time_of,
)

FOLLOW = "mutation($record: ID!) { followRecord(recordId: $record) { id } }"
STAGES = "{ pipelineStages { id name isWon isLost } }"


async def matching(api: Api, query: str, **filter: Any) -> set[str]:
    return set(await ids_of(api, query, filter=filter))


async def check_updated_since(
    api: Api, query: str, made: list[str], mutation: str, change: dict[str, Any]
) -> None:
    """updatedSince keeps the rows changed at or after a time, however the time is written."""
    nodes = await all_nodes(api, query)
    times = {node["id"]: time_of(node) for node in nodes if node["id"] in made}
    newest = max(made, key=times.__getitem__)
    start = times[newest]
    touched = made[0] if made[0] != newest else made[1]
    await api.data(mutation, input={"id": touched, **change})
    find = partial(matching, api, query)
    expected = {newest, touched}
    assert await find(updatedSince=start.isoformat()) == expected
    zulu = start.astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert await find(updatedSince=zulu) == expected
    for hours in (2, -5):  # the same instant in other time zones
        elsewhere = start.astimezone(timezone(timedelta(hours=hours))).isoformat()
        assert await find(updatedSince=elsewhere) == expected
    naive = start.astimezone(UTC).replace(tzinfo=None).isoformat()
    assert await find(updatedSince=naive) == expected  # without an offset a time is UTC
    assert await find(updatedSince=(start + timedelta(microseconds=1)).isoformat()) == {touched}
    assert await find(updatedSince="2000-01-01T00:00:00Z") >= set(made)
    assert await find(updatedSince="2999-01-01T00:00:00+00:00") == set()


async def test_account_filters(org: Org, other_org: Org) -> None:
    find = partial(matching, org.admin.api, ACCOUNTS)
    acme = await create_account(
        org.admin, name="Acme Rocket Works", website="acme.example", industry="Aerospace",
        country="FR", city="Toulouse",
    )  # fmt: skip
    globex = await create_account(
        org.manager, name="Globex", website="https://globex-rockets.example", industry="Energy",
        country="US", region="Oregon",
    )  # fmt: skip
    initech = await create_account(
        org.seller, name="Initech 50%_off", industry="aerospace", country="fr"
    )
    await create_account(other_org.admin, name="Acme Rocket Works")
    acme, globex, initech = acme["id"], globex["id"], initech["id"]

    assert await find() == {acme, globex, initech}
    assert await find(search="acme") == {acme}
    assert await find(search="ROCKET") == {acme, globex}  # in the name or the website
    assert await find(search="rocket acme") == {acme}  # every word must match
    assert await find(search="  works   ACME ") == {acme}
    assert await find(search="rocket initech") == set()
    assert await find(search="%") == await find(search="_") == {initech}  # no wildcards
    assert await find(search="h_off") == set()
    assert await find(ownerIds=[org.manager.id, org.seller.id]) == {globex, initech}
    assert await find(ownerIds=[other_org.admin.id]) == set()
    assert await find(industry="AEROSPACE") == {acme, initech}
    assert await find(country="fr") == {acme, initech}
    assert await find(region="oregon") == {globex}
    assert await find(city="Toulouse") == {acme}
    # Filters AND together.
    assert await find(country="FR", ownerIds=[org.admin.id]) == {acme}
    assert await find(country="FR", search="globex") == set()
    made = [acme, globex, initech]
    await check_updated_since(org.admin.api, ACCOUNTS, made, UPDATE["Account"], {"city": "Lyon"})


async def test_contact_filters(org: Org) -> None:
    find = partial(matching, org.admin.api, CONTACTS)
    acme, globex = (await create_account(org.admin))["id"], (await create_account(org.admin))["id"]
    ada = await create_contact(
        org.admin, firstName="Ada", lastName="Lovelace", email="ada@analytical.example",
        accountId=acme, lifecycleStage="ACTIVE_CLIENT",
    )  # fmt: skip
    alan = await create_contact(
        org.seller, firstName="Alan", lastName="Turing", email="alan@bletchley.example",
        accountId=acme,
    )  # fmt: skip
    grace = await create_contact(
        org.manager, firstName="Grace", lastName="Hopper", email=None, accountId=globex,
        lifecycleStage="INACTIVE_CLIENT",
    )  # fmt: skip
    byron = await create_contact(
        org.seller, firstName="Ada", lastName="Byron", email="byron@poets.example"
    )
    ada, alan, grace, byron = ada["id"], alan["id"], grace["id"], byron["id"]

    assert await find(search="ada") == {ada, byron}  # first name, and email
    assert await find(search="LOVELACE") == {ada}
    assert await find(search="Analytical") == {ada}  # email
    assert await find(search="ada poets") == {byron}
    assert await find(search="grace turing") == set()
    assert await find(search=".example") == {ada, alan, byron}
    assert await find(ownerIds=[org.seller.id]) == {alan, byron}
    assert await find(accountId=acme) == {ada, alan}
    assert await find(lifecycleStages=["PROSPECT"]) == {alan, byron}
    assert await find(lifecycleStages=["ACTIVE_CLIENT", "INACTIVE_CLIENT"]) == {ada, grace}
    assert await find(accountId=acme, ownerIds=[org.seller.id], search="alan") == {alan}
    assert await find(accountId=globex, lifecycleStages=["PROSPECT"]) == set()
    made = [ada, alan, grace, byron]
    await check_updated_since(org.admin.api, CONTACTS, made, UPDATE["Contact"], {"title": "CTO"})


async def test_lead_filters(org: Org) -> None:
    admin = org.admin
    find = partial(matching, admin.api, LEADS)
    acme, ada = (await create_account(admin))["id"], (await create_contact(admin))["id"]
    web = await create_lead(
        admin, title="Website redesign", source="Website", accountId=acme, contactId=ada
    )
    fair = await create_lead(
        org.seller, title="Trade fair booth", source="Fair", status="CONTACTED",
        visibility="PRIVATE",
    )  # fmt: skip
    cold = await create_lead(
        org.teammate, title="Cold call redesign", status="DISQUALIFIED", contactId=ada
    )
    robots = await create_lead(
        org.outsider, title="Warehouse robots", source="Website", accountId=acme,
        status="QUALIFIED",
    )  # fmt: skip
    web, fair, cold, robots = web["id"], fair["id"], cold["id"], robots["id"]
    await org.seller.api.data(FOLLOW, record=web)
    await org.seller.api.data(FOLLOW, record=robots)
    find_followed = partial(matching, org.seller.api, LEADS, followedByViewer=True)

    assert await find(search="REDESIGN") == {web, cold}
    assert await find(search="redesign cold") == {cold}
    assert await find(ownerIds=[org.seller.id, org.outsider.id]) == {fair, robots}
    assert await find(accountId=acme) == {web, robots}
    assert await find(contactId=ada) == {web, cold}
    assert await find(statuses=["NEW"]) == {web}
    assert await find(statuses=["CONTACTED", "QUALIFIED"]) == {fair, robots}
    assert await find(sources=["Website"]) == {web, robots}
    assert await find(sources=["Fair", "Radio"]) == {fair}
    assert await find(visibility="PRIVATE") == {fair}
    assert await find(visibility="ORGANIZATION") == {web, cold, robots}
    assert await find_followed() == {web, robots, fair}  # fair: the seller's own
    not_followed = partial(matching, org.seller.api, LEADS, followedByViewer=False)
    assert await not_followed() == {cold}
    assert await find(followedByViewer=True) == {web}  # the admin made it
    # Filters AND together.
    assert await find(sources=["Website"], statuses=["QUALIFIED"], accountId=acme) == {robots}
    assert await find_followed(search="warehouse") == {robots}
    assert await find(contactId=ada, visibility="PRIVATE") == set()
    made = [web, fair, cold, robots]
    await check_updated_since(admin.api, LEADS, made, UPDATE["Lead"], {"source": "Radio"})


async def test_opportunity_filters(org: Org) -> None:
    admin = org.admin
    find = partial(matching, admin.api, OPPORTUNITIES)
    stages = (await admin.api.data(STAGES))["pipelineStages"]
    first, second = stages[0]["id"], stages[1]["id"]
    won = next(stage["id"] for stage in stages if stage["isWon"])
    acme, globex = (await create_account(admin))["id"], (await create_account(admin))["id"]
    ada = (await create_contact(admin))["id"]

    async def add(member: Any, name: str, amount: str, day: str, **values: Any) -> str:
        values = {"name": name, "amount": amount, "expectedCloseDate": day, **values}
        values.setdefault("accountId", acme)
        return (await create_opportunity(member, **values))["id"]

    small = await add(admin, "Small pilot", "100.00", "2027-01-10", contactId=ada)
    mid = await add(
        org.seller, "Pilot rollout", "2500.50", "2027-02-28", stageId=second, visibility="PRIVATE"
    )
    big = await add(
        org.manager, "Global rollout", "90000.00", "2027-06-30", accountId=globex, stageId=won
    )
    edge = await add(org.outsider, "Edge case", "2500.49", "2027-02-27", contactId=ada)
    await org.teammate.api.data(FOLLOW, record=big)

    assert await find(search="pilot") == {small, mid}
    assert await find(search="ROLLOUT pilot") == {mid}
    assert await find(ownerIds=[org.seller.id]) == {mid}
    assert await find(accountId=globex) == {big}
    assert await find(contactId=ada) == {small, edge}
    assert await find(stageIds=[first]) == {small, edge}
    assert await find(stageIds=[second, won]) == {mid, big}
    assert await find(statuses=["WON"]) == {big}
    assert await find(statuses=["OPEN", "LOST"]) == {small, mid, edge}
    # Amount bounds are inclusive and compare as money, to the cent.
    assert await find(amountMin="2500.50") == {mid, big}
    assert await find(amountMax="2500.49") == {small, edge}
    assert await find(amountMin="200", amountMax="2500.5") == {mid, edge}
    assert await find(amountMin="95000") == set()
    # Close dates too.
    assert await find(closeDateFrom="2027-02-28") == {mid, big}
    assert await find(closeDateTo="2027-02-27") == {small, edge}
    assert await find(closeDateFrom="2027-02-01", closeDateTo="2027-03-01") == {mid, edge}
    assert await find(visibility="PRIVATE") == {mid}
    assert await matching(org.teammate.api, OPPORTUNITIES, followedByViewer=True) == {big}
    assert await find(followedByViewer=True) == {small}  # the admin made it
    # Everything given must match.
    assert await find(contactId=ada, amountMin="1000", closeDateTo="2027-03-01") == {edge}
    assert await find(statuses=["WON"], search="pilot") == set()
    made = [small, mid, big, edge]
    await check_updated_since(admin.api, OPPORTUNITIES, made, UPDATE["Opportunity"], {"name": "X"})


async def test_user_filters(org: Org) -> None:
    api = org.admin.api
    find = partial(matching, api, USERS)
    boss = await org.add_user("SALES_MANAGER")
    rookie = await org.add_user("SELLER", boss)
    await api.data(UPDATE["User"], input={"id": org.outsider.id, "isActive": False})
    admin, manager, seller, teammate, outsider = (
        member.id for member in (org.admin, org.manager, org.seller, org.teammate, org.outsider)
    )
    everyone = {admin, manager, seller, teammate, outsider, boss.id, rookie.id}

    assert await find() == everyone
    assert await find(search="ADMIN person") == {admin}
    assert await find(search=org.seller.email.upper()) == {seller}
    assert await find(search="example.com admin") == {admin}  # name and email words
    assert await find(roles=["SALES_MANAGER"]) == {manager, boss.id}
    assert await find(roles=["ADMIN", "SALES_MANAGER"]) == {admin, manager, boss.id}
    assert await find(isActive=False) == {outsider}
    assert await find(isActive=True) == everyone - {outsider}
    assert await find(managerId=manager) == {seller, teammate}
    assert await find(managerId=boss.id) == {rookie.id}
    assert await find(managerId=manager, roles=["SALES_MANAGER"]) == set()
    assert await find(roles=["SELLER"], isActive=True) == {seller, teammate, rookie.id}

    changed = await api.data(UPDATE["User"], input={"id": rookie.id, "fullName": "Rookie Two"})
    since = datetime.fromisoformat(changed["updateUser"]["updatedAt"])
    assert await find(updatedSince=since.isoformat()) == {rookie.id}
    in_tokyo = since.astimezone(timezone(timedelta(hours=9))).isoformat()
    assert await find(updatedSince=in_tokyo) == {rookie.id}
    assert await find(updatedSince=(since + timedelta(microseconds=1)).isoformat()) == set()
    assert outsider in await find(updatedSince="2000-01-01T00:00:00Z")


async def test_lists_never_cross_organizations(org: Org, other_org: Org) -> None:
    theirs = await create_opportunity(other_org.admin)
    their_contact = await create_contact(other_org.admin)
    await create_lead(other_org.admin, contactId=their_contact["id"])
    foreign = {theirs["id"], theirs["account"]["id"], their_contact["id"], other_org.admin.id}
    for query in LISTS.values():
        assert not set(await ids_of(org.admin.api, query)) & foreign
    opportunities_there = {"accountId": theirs["account"]["id"]}
    assert await ids_of(org.admin.api, OPPORTUNITIES, filter=opportunities_there) == []
    assert await ids_of(org.admin.api, LEADS, filter={"contactId": their_contact["id"]}) == []
