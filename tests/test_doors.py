"""Every door under the limits: subscriptions on both websocket protocols, and what is checked
over HTTP before any work (body size, JSON depth, document length, the rate draw, aliases)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.helpers import PASSWORD, SIGN_UP, create_opportunity, unique_email
from tests.ws import PROTOCOLS, OperationError, expect_rejected, live_client

# One event costs 1 + 1 + 1 + 1 + 100 x (1 + 1 + 1 + 100): over MAX_SUBSCRIPTION_COST
# (10,000), well under MAX_QUERY_COST (200,000).
COSTLY_SUBSCRIPTION = """subscription($id: ID!) { recordEvents(recordId: $id) { record {
  history(first: 100) { nodes { record { history(first: 100) { nodes { id } } } } } } } }"""
CHEAP_SUBSCRIPTION = "subscription($id: ID!) { recordEvents(recordId: $id) { kind } }"
NOTIFICATIONS = "subscription { notificationAdded { id } }"


def code_of(errors: list[dict[str, Any]]) -> str:
    return errors[0]["extensions"]["code"]


async def refused(client: Any, query: str, variables: dict[str, Any] | None = None) -> list[dict]:
    """The errors of an operation the server must refuse with an `error` message."""
    operation = await client.subscribe(query, variables)
    with pytest.raises(OperationError) as refusal:
        await operation.next(timeout=5)
    return refusal.value.errors


# Subscriptions


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_costly_subscription_is_refused_when_it_subscribes(live_server, org, protocol):
    deal = await create_opportunity(org.seller)
    async with live_client(live_server.base_url, org.seller.api.token, protocol) as client:
        errors = await refused(client, COSTLY_SUBSCRIPTION, {"id": deal["id"]})
        assert code_of(errors) == "QUERY_TOO_COSTLY"
        limit = live_server.settings.max_subscription_cost
        assert errors[0]["extensions"]["limit"] == limit
        assert errors[0]["extensions"]["cost"] > limit
        # A cheap one on the same socket runs.
        cheap = await client.subscribe(CHEAP_SUBSCRIPTION, {"id": deal["id"]})
        await cheap.expect_nothing(0.2)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_subscriptions_draw_from_the_rate_limit_and_obey_the_allow_list(
    live_server, org, protocol
):
    async with (
        live_server.serve(
            rate_limit_per_second=0.05, rate_limit_burst=2, persisted_queries="allowlist"
        ) as server,
        live_client(server.base_url, org.seller.api.token, protocol) as client,
    ):
        codes = [code_of(await refused(client, NOTIFICATIONS)) for _ in range(3)]
    # Unregistered: refused, after drawing from the bucket, which then runs dry.
    assert codes == ["PERSISTED_QUERY_REQUIRED", "PERSISTED_QUERY_REQUIRED", "RATE_LIMITED"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_subscriptions_per_connection_are_capped(live_server, org, protocol):
    limit = live_server.settings.max_subscriptions_per_connection
    async with live_client(live_server.base_url, org.seller.api.token, protocol) as client:
        operations = [await client.subscribe(NOTIFICATIONS) for _ in range(limit)]
        await operations[-1].expect_nothing(0.3)
        errors = await refused(client, NOTIFICATIONS)
        assert code_of(errors) == "TOO_MANY_SUBSCRIPTIONS"
        await operations[0].stop()
        again = await client.subscribe(NOTIFICATIONS)
        await again.expect_nothing(0.3)  # a completed one made room


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_connections_per_user_are_capped(live_server, org, protocol):
    limit = live_server.settings.max_connections_per_user
    url, token = live_server.base_url, org.teammate.api.token
    clients = [live_client(url, token, protocol) for _ in range(limit)]
    try:
        for client in clients:
            await client.__aenter__()
        rejected = await expect_rejected(url, token, protocol)
        if protocol == "graphql-transport-ws":
            assert rejected.code == 4429
        else:
            assert rejected.payload["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
        async with live_client(url, org.manager.api.token, protocol):
            pass  # another user is not affected
    finally:
        for client in clients:
            await client.__aexit__(None, None, None)
    async with live_client(url, token, protocol):
        pass  # closed ones were given back


# Before any work, over HTTP


async def test_a_body_over_the_limit_is_refused_with_413(live_server, http):
    limit = live_server.settings.max_body_bytes
    padding = "x" * (limit + 1)
    body = json.dumps({"query": "{ __typename }", "variables": {"padding": padding}})
    response = await http.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "REQUEST_TOO_LARGE"
    assert error["extensions"]["requestId"] == response.headers["x-request-id"]

    async def chunks():  # no Content-Length: counted as it arrives
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    streamed = await http.post(
        "/graphql", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert streamed.json()["errors"][0]["extensions"]["code"] == "REQUEST_TOO_LARGE"


async def test_json_nested_too_deep_is_a_clear_400(live_server, http):
    for depth in (live_server.settings.max_json_depth + 5, 100_000):
        body = '{"query": "{ __typename }", "variables": {"a": ' + "[" * depth + "]" * depth + "}}"
        response = await http.post(
            "/graphql", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, response.text
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "BAD_REQUEST"
        assert "deeper than" in error["message"]
    broken = await http.post(
        "/graphql", content="{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400
    assert broken.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_a_websocket_message_over_the_body_limit_closes_the_socket(live_server, org):
    async with (
        live_server.serve(max_body_bytes=65536) as server,
        live_client(server.base_url, org.seller.api.token) as client,
    ):
        await client.subscribe("{ __typename }", {"padding": "x" * 70_000})
        code, _ = await client.wait_closed(timeout=5)
    assert code == 1009  # message too big


async def test_a_document_over_the_length_limit_is_refused_before_parsing(live_server, api):
    document = "{ __typename " + " " * live_server.settings.max_query_length + "}"
    error = await api.error(document)
    assert error["extensions"]["code"] == "REQUEST_TOO_LARGE"


async def test_invalid_documents_pay_the_rate_limit_too(live_server):
    async with (
        live_server.serve(rate_limit_per_second=0.05, rate_limit_burst=3) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=30, trust_env=False) as http,
    ):
        codes = []
        for document in ("{ nope }", "{ viewer {", "{ __typename }", "{ nope }"):
            answer = (await http.post("/graphql", json={"query": document})).json()
            codes.append(answer["errors"][0]["extensions"]["code"] if "errors" in answer else None)
    assert codes == ["GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED", None, "RATE_LIMITED"]


async def test_costly_mutations_cannot_be_multiplied_by_aliases(api, org):
    emails = [unique_email("alias"), unique_email("alias")]
    inputs = ", ".join(
        f'a{n}: signUp(input: {{organizationName: "Alias {n}", fullName: "A", '
        f'email: "{email}", password: "{PASSWORD}"}}) {{ token }}'
        for n, email in enumerate(emails)
    )
    error = await api.error(f"mutation {{ {inputs} }}")
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "signUp" in error["message"]
    for email in emails:  # nothing was created: each signs up on its own
        await api.data(
            SIGN_UP,
            input={
                "organizationName": "Alias",
                "fullName": "A",
                "email": email,
                "password": PASSWORD,
            },
        )
    change = f'changePassword(currentPassword: "{PASSWORD}", newPassword: "another one") {{ id }}'
    login = 'login(email: "x@y.z", password: "p") { token }'
    mixed = f"mutation {{ a: {change} b: {login} }}"
    error = await org.seller.api.error(mixed)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


async def test_several_operations_without_a_name_are_an_error(org):
    document = "query A { viewer { id } } mutation B { logout }"
    error = await org.seller.api.error(document)
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "operation name" in error["message"]
    assert (await org.seller.api.data("{ viewer { id } }"))["viewer"]  # not logged out
    named = await org.seller.api.http.post(
        "/graphql",
        json={"query": document, "operationName": "A"},
        headers={"authorization": f"Bearer {org.seller.api.token}"},
    )
    assert named.json()["data"]["viewer"]["id"] == org.seller.id


async def test_a_subscription_over_http_is_a_clear_error(org):
    error = await org.seller.api.error(NOTIFICATIONS)
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "websocket" in error["message"].lower()
