"""Webhooks: endpoints managed by admins, each change of the feed pushed to a real receiver."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from standardwebhooks import Webhook

from tests.conftest import LiveServer
from tests.helpers import (
    DELETE,
    UPDATE,
    Api,
    Member,
    Org,
    create_account,
    create_contact,
    create_opportunity,
)
from tests.processes import ServerProcess
from tests.receiver import Receiver
from tests.test_deals import ADD_FOLLOWER
from webhooks.addresses import Refused, is_public, parse, resolve
from webhooks.delivery import Deliverer

ENDPOINT_FIELDS = "id url description changeTypes status disabledReason cursor failingSince"
CREATE = f"""mutation($input: CreateWebhookEndpointInput!) {{
  createWebhookEndpoint(input: $input) {{ secret webhookEndpoint {{ {ENDPOINT_FIELDS} }} }}
}}"""
UPDATE_ENDPOINT = f"""mutation($id: ID!, $input: UpdateWebhookEndpointInput!) {{
  updateWebhookEndpoint(id: $id, input: $input) {{ {ENDPOINT_FIELDS} }}
}}"""
PAUSE = f"mutation($id: ID!) {{ pauseWebhookEndpoint(id: $id) {{ {ENDPOINT_FIELDS} }} }}"
RESUME = f"mutation($id: ID!) {{ resumeWebhookEndpoint(id: $id) {{ {ENDPOINT_FIELDS} }} }}"
ROTATE = f"""mutation($id: ID!) {{
  rotateWebhookSecret(id: $id) {{ secret webhookEndpoint {{ {ENDPOINT_FIELDS} }} }}
}}"""
DELETE_ENDPOINT = "mutation($id: ID!) { deleteWebhookEndpoint(id: $id) }"
REDELIVER = f"""mutation($id: ID!, $from: String!) {{
  redeliverWebhooks(endpointId: $id, fromCursor: $from) {{ {ENDPOINT_FIELDS} }}
}}"""
ENDPOINTS = f"{{ webhookEndpoints {{ {ENDPOINT_FIELDS} }} }}"
# The delivery loop writes attempts and moves endpoints' cursors while a query runs: compare
# mode would run each query twice against moving rows, so this file's requests are not compared.
DELIVERIES = """query($id: ID!, $first: Int, $after: String) {
  webhookDeliveries(endpointId: $id, first: $first, after: $after) {
    edges { cursor node { webhookId recordType op status attemptCount redelivery
      attempts { at responseCode durationMs error } } }
    pageInfo { hasNextPage endCursor }
  }
}"""
NOTIFICATIONS = """{ notifications(first: 50) {
  nodes { kind message webhookEndpointId event { id } } } }"""
FEED_CURSOR = "{ changes(first: 100) { pageInfo { endCursor } } }"


def feed_query(live_server: LiveServer) -> str:
    """The `changes` query whose entries the deliveries carry (webhooks/payload.py)."""
    return live_server.app.state.deliverer.renderer.document


async def create_endpoint(admin: Member, url: str, **values: Any) -> tuple[dict[str, Any], str]:
    data = await admin.api.uncompared().data(CREATE, input={"url": url, **values})
    created = data["createWebhookEndpoint"]
    return created["webhookEndpoint"], created["secret"]


async def feed(api: Api, document: str, since: str) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    while True:
        data = await api.data(document, since=since, types=None, first=100)
        nodes += data["changes"]["nodes"]
        since = data["changes"]["pageInfo"]["endCursor"]
        if not data["changes"]["pageInfo"]["hasNextPage"]:
            return nodes


async def make_changes(org: Org) -> None:
    """Accounts, contacts, an opportunity, its follower, an update and a deletion."""
    account = await create_account(org.seller)
    await create_contact(org.seller, accountId=account["id"])
    opportunity = await create_opportunity(org.seller, accountId=account["id"])
    await org.seller.api.uncompared().data(
        ADD_FOLLOWER, record=opportunity["id"], user=org.teammate.id
    )
    await org.seller.api.uncompared().data(
        UPDATE["Account"], input={"id": account["id"], "city": "Lyon"}
    )
    doomed = await create_account(org.seller)
    await org.seller.api.uncompared().data(DELETE["Account"], id=doomed["id"])


def verify(secret: str, received: Any) -> Any:
    return Webhook(secret).verify(received.body, received.headers)


@contextlib.asynccontextmanager
async def delivery_settings(live_server: LiveServer, **changes: Any) -> AsyncIterator[None]:
    """The suite's app, its delivery loop and its requests, with other settings for one test
    (`live_server.serve` would start a second delivery loop beside the suite's)."""
    deliverer = live_server.app.state.deliverer
    graphql = live_server.app.state.graphql
    saved = deliverer.settings, graphql.settings
    deliverer.settings = replace(deliverer.settings, **changes)
    graphql.settings = replace(graphql.settings, **changes)
    try:
        yield
    finally:
        deliverer.settings, graphql.settings = saved


async def test_every_change_arrives_as_the_feed_has_it_signed(
    org: Org, live_server: LiveServer
) -> None:
    async with Receiver() as receiver:
        endpoint, secret = await create_endpoint(org.admin, receiver.url, description="ERP")
        assert secret.startswith("whsec_") and endpoint["status"] == "ACTIVE"
        # Paused while the changes are made, so that each record is rendered as it ends up,
        # as the feed read afterwards shows it.
        await org.admin.api.uncompared().data(PAUSE, id=endpoint["id"])
        await make_changes(org)
        expected = await feed(org.admin.api, feed_query(live_server), endpoint["cursor"])
        assert len(expected) >= 8
        await org.admin.api.uncompared().data(RESUME, id=endpoint["id"])
        await receiver.wait_for(len(expected))
        await asyncio.sleep(0.3)  # nothing more arrives
        assert [verify(secret, r) for r in receiver.received] == expected
        assert [r.headers["webhook-id"] for r in receiver.received] == [
            e["cursor"] for e in expected
        ]
        assert receiver.received[0].headers["content-type"] == "application/json"

        # Delivered live as well, each change once, in order.
        before = len(receiver.received)
        account = await create_account(org.seller)
        await receiver.wait_for(before + 1, seconds=10)
        live = verify(secret, receiver.received[before])
        assert live["recordType"] == "Account" and live["node"]["id"] == account["id"]

        # The deliveries are listed, newest first, with their attempt.
        data = await org.admin.api.uncompared().data(DELIVERIES, id=endpoint["id"], first=3)
        newest = data["webhookDeliveries"]["edges"][0]["node"]
        assert newest["webhookId"] == live["cursor"] and newest["status"] == "SUCCEEDED"
        assert newest["attempts"][0]["responseCode"] == 204
        assert newest["attempts"][0]["error"] is None
        listed = (await org.admin.api.uncompared().data(ENDPOINTS))["webhookEndpoints"]
        assert [e["id"] for e in listed] == [endpoint["id"]]
        assert listed[0]["cursor"] == live["cursor"]


async def test_change_types_filter_and_secret_rotation(org: Org) -> None:
    async with Receiver() as receiver:
        endpoint, secret = await create_endpoint(
            org.admin, receiver.url, changeTypes=["Contact", "OpportunityFollower"]
        )
        assert endpoint["changeTypes"] == ["Contact", "OpportunityFollower"]
        await create_account(org.seller)
        contact = await create_contact(org.seller)
        await receiver.wait_for(1, seconds=10)
        await asyncio.sleep(0.5)
        assert [verify(secret, r)["recordType"] for r in receiver.received] == ["Contact"]
        assert verify(secret, receiver.received[0])["node"]["id"] == contact["id"]

        # After a rotation, deliveries verify with the new secret and, for a while, the old.
        rotated = (await org.admin.api.uncompared().data(ROTATE, id=endpoint["id"]))[
            "rotateWebhookSecret"
        ]
        new_secret = rotated["secret"]
        assert new_secret != secret and new_secret.startswith("whsec_")
        await org.admin.api.uncompared().data(
            UPDATE_ENDPOINT, id=endpoint["id"], input={"changeTypes": []}
        )
        await create_account(org.seller)
        await receiver.wait_for(2, seconds=10)
        assert verify(new_secret, receiver.received[1])["recordType"] == "Account"
        assert verify(secret, receiver.received[1])["recordType"] == "Account"

        error = await org.admin.api.error(
            UPDATE_ENDPOINT, id=endpoint["id"], input={"changeTypes": ["Invoice"]}
        )
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "changeTypes"}


async def eventually(read: Any, expected: Any, what: str, seconds: float = 10) -> Any:
    """`read()` until it answers `expected` (the delivery loop records after each answer)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while (found := await read()) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"{what}: {found!r}"
        await asyncio.sleep(0.1)
    return found


async def endpoint_cursor(admin: Member) -> str:
    return (await admin.api.uncompared().data(ENDPOINTS))["webhookEndpoints"][0]["cursor"]


async def redelivery_flags(admin: Member, endpoint_id: str) -> list[bool]:
    data = await admin.api.uncompared().data(DELIVERIES, id=endpoint_id)
    return [e["node"]["redelivery"] for e in data["webhookDeliveries"]["edges"]]


async def test_redeliver_from_a_cursor(org: Org) -> None:
    async with Receiver() as receiver:
        endpoint, secret = await create_endpoint(org.admin, receiver.url)
        await create_account(org.seller)
        await create_account(org.seller)
        await receiver.wait_for(2, seconds=10)
        first_ids = [r.headers["webhook-id"] for r in receiver.received]
        # The endpoint moves past a change once its receiver has answered: wait for it, or the
        # second change is still in flight when the redelivery asks for it (not "sent again").
        await eventually(lambda: endpoint_cursor(org.admin), first_ids[-1], "the endpoint's cursor")
        await org.admin.api.uncompared().data(
            REDELIVER, id=endpoint["id"], **{"from": endpoint["cursor"]}
        )
        await receiver.wait_for(4, seconds=10)
        assert [r.headers["webhook-id"] for r in receiver.received] == first_ids * 2
        flags = await eventually(
            lambda: redelivery_flags(org.admin, endpoint["id"]),
            [True, True, False, False],
            "the deliveries recorded",
        )
        assert flags == [True, True, False, False]
        error = await org.admin.api.error(REDELIVER, id=endpoint["id"], **{"from": "nonsense"})
        assert error["extensions"]["field"] == "fromCursor"


async def test_redirects_are_not_followed(org: Org) -> None:
    async with Receiver() as receiver:
        receiver.answer(307, location=f"http://127.0.0.1:{receiver.port}/elsewhere")
        endpoint, _ = await create_endpoint(org.admin, receiver.url)
        await create_account(org.seller)
        await receiver.wait_for(2, seconds=10)  # retried, never redirected
        assert {r.path for r in receiver.received} == {"/hook"}
        data = await org.admin.api.uncompared().data(DELIVERIES, id=endpoint["id"])
        delivery = data["webhookDeliveries"]["edges"][0]["node"]
        assert delivery["status"] == "PENDING"
        assert delivery["attempts"][0]["responseCode"] == 307
        assert "redirects are not followed" in delivery["attempts"][0]["error"]
        await org.admin.api.uncompared().data(PAUSE, id=endpoint["id"])


async def test_private_addresses_are_refused_unless_allowed(
    org: Org, live_server: LiveServer
) -> None:
    async with Receiver() as receiver:
        endpoint, _ = await create_endpoint(org.admin, receiver.url)
        async with delivery_settings(live_server, webhook_allow_private_addresses=False):
            for url in (
                receiver.url,
                "http://localhost:9/hook",
                "http://10.1.2.3/hook",
                "http://169.254.169.254/latest/meta-data",
                "http://[::1]/hook",
                "http://[::ffff:127.0.0.1]/hook",
                "http://224.0.0.1/hook",
                "ftp://example.com/hook",
                "http://user:pw@example.com/hook",
            ):
                error = await org.admin.api.error(CREATE, input={"url": url})
                assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "url"}, url
            # The address is checked again at delivery: the endpoint registered while private
            # addresses were allowed is refused now, and the receiver hears nothing.
            await create_account(org.seller)
            deadline = asyncio.get_running_loop().time() + 10
            while True:
                data = await org.admin.api.uncompared().data(DELIVERIES, id=endpoint["id"])
                edges = data["webhookDeliveries"]["edges"]
                if edges or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.2)
            attempt = edges[0]["node"]["attempts"][0]
            assert attempt["error"].startswith("refused:") and attempt["responseCode"] is None
            assert receiver.received == []
            await org.admin.api.uncompared().data(PAUSE, id=endpoint["id"])


async def test_addresses() -> None:
    for host in ("8.8.8.8", "[2001:4860:4860::8888]"):
        assert await resolve(parse(f"http://{host}/"), allow_private=False)
    for url in ("http://127.0.0.1/", "http://[fe80::1]/", "http://100.64.0.1/", "http://0.0.0.0/"):
        with pytest.raises(Refused):
            await resolve(parse(url), allow_private=False)
    assert str(await resolve(parse("http://127.0.0.1/"), allow_private=True)) == "127.0.0.1"
    import ipaddress

    assert not is_public(ipaddress.ip_address("192.168.1.1"))
    assert not is_public(ipaddress.ip_address("240.0.0.1"))


async def test_disabled_after_the_retry_window_and_admins_notified(
    org: Org, live_server: LiveServer
) -> None:
    async with Receiver() as receiver:
        receiver.answer(503)
        second_admin = await org.add_user("ADMIN")
        async with delivery_settings(live_server, webhook_retry_window_seconds=1.5):
            endpoint, secret = await create_endpoint(org.admin, receiver.url)
            await create_account(org.seller)
            deadline = asyncio.get_running_loop().time() + 20
            while True:
                listed = (await org.admin.api.uncompared().data(ENDPOINTS))["webhookEndpoints"][0]
                if listed["status"] == "DISABLED":
                    break
                assert asyncio.get_running_loop().time() < deadline, listed
                await asyncio.sleep(0.2)
        assert len(receiver.received) >= 2  # retried with backoff meanwhile
        assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
        assert "failed since" in listed["disabledReason"]
        for admin in (org.admin, second_admin):
            nodes = (await admin.api.uncompared().data(NOTIFICATIONS))["notifications"]["nodes"]
            assert [n["kind"] for n in nodes] == ["WEBHOOK_ENDPOINT_DISABLED"]
            assert nodes[0]["webhookEndpointId"] == endpoint["id"] and nodes[0]["event"] is None
            assert receiver.url in nodes[0]["message"]
        for member in (org.manager, org.seller):
            nodes = (await member.api.uncompared().data(NOTIFICATIONS))["notifications"]["nodes"]
            assert "WEBHOOK_ENDPOINT_DISABLED" not in [n["kind"] for n in nodes]
        data = await org.admin.api.uncompared().data(DELIVERIES, id=endpoint["id"])
        delivery = data["webhookDeliveries"]["edges"][0]["node"]
        assert delivery["status"] == "FAILED" and delivery["attemptCount"] >= 2
        assert {a["responseCode"] for a in delivery["attempts"]} == {503}

        # Resumed once the receiver is back: the change it gave up on arrives, then the rest.
        receiver.answer(200)
        count = len(receiver.received)
        await org.admin.api.uncompared().data(RESUME, id=endpoint["id"])
        await receiver.wait_for(count + 1, seconds=10)
        assert verify(secret, receiver.received[-1])["recordType"] == "Account"


async def test_permissions(org: Org, other_org: Org) -> None:
    endpoint, _ = await create_endpoint(org.admin, "http://127.0.0.1:9/hook")
    await org.admin.api.uncompared().data(PAUSE, id=endpoint["id"])
    for member in (org.manager, org.seller, org.teammate, org.outsider):
        assert await member.api.error_code(CREATE, input={"url": "http://127.0.0.1:9/"}) == (
            "FORBIDDEN"
        )
        assert await member.api.error_code(ENDPOINTS) == "FORBIDDEN"
        assert await member.api.error_code(DELIVERIES, id=endpoint["id"]) == "FORBIDDEN"
        for mutation in (PAUSE, RESUME, ROTATE, DELETE_ENDPOINT):
            assert await member.api.error_code(mutation, id=endpoint["id"]) == "FORBIDDEN"
    # Another organization's admin sees nothing of it.
    stranger = other_org.admin.api
    assert (await stranger.data(ENDPOINTS))["webhookEndpoints"] == []
    assert await stranger.error_code(DELIVERIES, id=endpoint["id"]) == "NOT_FOUND"
    for mutation in (RESUME, ROTATE, DELETE_ENDPOINT):
        assert await stranger.error_code(mutation, id=endpoint["id"]) == "NOT_FOUND"
    assert (
        await stranger.error_code(UPDATE_ENDPOINT, id=endpoint["id"], input={"description": "x"})
        == "NOT_FOUND"
    )
    cursor = (await stranger.data(FEED_CURSOR))["changes"]["pageInfo"]["endCursor"]
    assert (
        await stranger.error_code(REDELIVER, id=endpoint["id"], **{"from": cursor}) == "NOT_FOUND"
    )
    # Anonymous.
    assert await Api(org.admin.api.http).error_code(ENDPOINTS) == "UNAUTHENTICATED"
    # The admin deletes it.
    await org.admin.api.uncompared().data(DELETE_ENDPOINT, id=endpoint["id"])
    assert (await org.admin.api.uncompared().data(ENDPOINTS))["webhookEndpoints"] == []


async def test_outage_and_kill_9_lose_nothing(org: Org, live_server: LiveServer) -> None:
    """The receiver hangs, the process delivering is killed -9 mid-attempt, the receiver is
    down while more changes are made; another process takes over when the lease expires, and
    every change arrives, in order (a change sent twice only as a redelivery, same id)."""
    deliverer = live_server.app.state.deliverer
    await deliverer.stop()  # only the processes below deliver
    env = {
        "DATABASE_URL": live_server.database_url,
        "WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true",
        "WEBHOOK_POLL_SECONDS": "0.3",
        "WEBHOOK_LEASE_SECONDS": "3",
        "WEBHOOK_BACKOFF_SECONDS": "0.2",
        "WEBHOOK_BACKOFF_MAX_SECONDS": "1",
        "WEBHOOK_TIMEOUT_SECONDS": "30",
    }
    try:
        async with Receiver() as receiver:
            receiver.hang = True
            endpoint, secret = await create_endpoint(org.admin, receiver.url)
            first = ServerProcess(env)
            second = ServerProcess(env)
            try:
                await first.start()
                await make_changes(org)
                await receiver.wait_for(1, seconds=20)  # held, unanswered, by the first process
                assert first.process is not None
                first.process.kill()  # -9: its lease stays until it expires
                await first.stop()
                await receiver.stop()
                await make_changes(org)  # while the receiver is down
                await second.start()
                await asyncio.sleep(2)  # the second process fails against the dead receiver
                await receiver.start()
                expected = await feed(org.admin.api, feed_query(live_server), endpoint["cursor"])
                ids = [e["cursor"] for e in expected]
                deadline = asyncio.get_running_loop().time() + 60
                while not set(ids) <= {r.headers.get("webhook-id") for r in receiver.received}:
                    assert asyncio.get_running_loop().time() < deadline, second.output()
                    await asyncio.sleep(0.2)
            finally:
                await second.stop()
                await first.stop()
        seen: list[str] = []
        for received in receiver.received:
            webhook_id = received.headers["webhook-id"]
            if webhook_id in seen:
                continue  # at-least-once: a resend keeps its id
            assert webhook_id == ids[len(seen)], "out of order"
            seen.append(webhook_id)
            body = verify(secret, received)
            assert body["cursor"] == webhook_id
        assert seen == ids
        bodies = {r.headers["webhook-id"]: verify(secret, r) for r in receiver.received}
        for entry in expected:  # the records are as they are now, as the feed shows them
            assert (bodies[entry["cursor"]]["op"], bodies[entry["cursor"]]["recordId"]) == (
                entry["op"],
                entry["recordId"],
            )
    finally:
        await deliverer.start()


async def test_stop_is_not_lost_in_a_storm_of_doorbells(org: Org, live_server: LiveServer) -> None:
    """Stopping while the hub rings without pause still stops: on Python 3.11 a cancellation
    that arrives as `asyncio.wait_for`'s inner wait completes is swallowed, and a loop waiting
    that way went on forever (the outage test above hung on it)."""
    deliverer = live_server.app.state.deliverer
    storming = True

    async def storm() -> None:
        while storming:
            deliverer.ring(None)
            await asyncio.sleep(0)

    ringer = asyncio.create_task(storm())
    try:
        for _ in range(20):
            async with asyncio.timeout(10):
                await deliverer.stop()
            await deliverer.start()
            await asyncio.sleep(0.01)
    finally:
        storming = False
        await ringer


async def test_the_poll_goes_round_every_endpoint(
    org: Org, other_org: Org, live_server: LiveServer
) -> None:
    """The poll (which covers for lost doorbells, and brings back endpoints whose retry is due)
    looks at a batch of endpoints a round and goes round them all: an endpoint past the first
    batch is delivered too, not left behind the first ones for ever."""
    deliverer = live_server.app.state.deliverer
    await deliverer.stop()  # only the poller below delivers, and only when it polls
    settings = replace(live_server.settings, webhook_scan_batch=1, webhook_poll_seconds=0.1)
    poller = Deliverer(deliverer.renderer.schema, settings)
    try:
        async with Receiver() as receiver:
            await create_endpoint(org.admin, receiver.url)
            later, _ = await create_endpoint(other_org.admin, receiver.url)
            await make_changes(other_org)
            await poller.start()
            expected = await feed(other_org.admin.api, feed_query(live_server), later["cursor"])
            ids = {entry["cursor"] for entry in expected}
            deadline = asyncio.get_running_loop().time() + 30
            while not ids <= {r.headers.get("webhook-id") for r in receiver.received}:
                assert asyncio.get_running_loop().time() < deadline, "never reached"
                await asyncio.sleep(0.1)
    finally:
        await poller.stop()
        await deliverer.start()
