"""Leaks and errors closed: suggestions without introspection, private deals named elsewhere,
out-of-range times, over-long search words, Apollo's hash-only GET, CORS request headers, and
the GraphQL-over-HTTP media type."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import httpx
import pytest

from server import create_app
from tests.helpers import UPDATE, create_lead, create_opportunity, global_id
from tests.test_deals import COMMENT
from tests.test_lead_conversion import CLOSE, CONVERT

ORIGIN = "https://app.example"
HISTORY = """query($id: ID!) { node(id: $id) { ... on Deal {
  history(first: 20) { nodes { kind changes } } } } }"""


async def test_no_suggestions_where_introspection_is_off(live_server):
    production = replace(
        live_server.settings, environment="production", graphiql=False, introspection=False
    )
    transport = httpx.ASGITransport(app=create_app(production))
    async with httpx.AsyncClient(transport=transport, base_url="http://prod") as client:
        for document in ("{ viewr { id } }", "mutation { createUsr { id } }"):
            response = await client.post("/graphql", json={"query": document})
            error = response.json()["errors"][0]
            assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
            assert "Did you mean" not in error["message"], error["message"]


async def test_suggestions_stay_in_development(api):
    error = await api.error("{ viewr { id } }")
    assert "Did you mean" in error["message"]


async def test_a_comment_on_an_unreadable_deal_answers_like_a_missing_comment(org):
    deal = await create_opportunity(org.seller, visibility="PRIVATE")
    comment = (await org.seller.api.data(COMMENT, record=deal["id"], body="private"))["addComment"]
    query = "query($id: ID!) { node(id: $id) { id } }"
    hidden = await org.outsider.api.error(query, id=comment["id"])
    missing = await org.outsider.api.error(query, id=global_id("Comment", 999_999_999))
    assert hidden["extensions"] == missing["extensions"]
    assert hidden["message"] == missing["message"]


async def test_events_do_not_name_private_deals_to_those_who_cannot_read_them(org):
    lead = await create_lead(org.seller)
    converted = await org.seller.api.data(
        CONVERT, input={"leadId": lead["id"], "expectedCloseDate": CLOSE}
    )
    opportunity = converted["convertLead"]["opportunity"]["id"]
    await org.seller.api.data(
        UPDATE["Opportunity"], input={"id": opportunity, "visibility": "PRIVATE"}
    )

    def named(history: dict) -> list[str]:
        return [json.dumps(event["changes"]) for event in history["node"]["history"]["nodes"]]

    owner_view = named(await org.seller.api.data(HISTORY, id=lead["id"]))
    assert any(opportunity in changes for changes in owner_view)
    outsider_view = named(await org.outsider.api.data(HISTORY, id=lead["id"]))
    assert not any(opportunity in changes for changes in outsider_view), outsider_view
    assert any("convertedOpportunityId" in changes for changes in outsider_view)


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"])
async def test_out_of_range_times_are_bad_input(org, since):
    query = "query($s: DateTime) { opportunities(filter: {updatedSince: $s}) { totalCount } }"
    error = await org.seller.api.error(query, s=since)
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    agenda = "query($s: DateTime) { agenda(filter: {from: $s}) { totalCount } }"
    error = await org.seller.api.error(agenda, s=since)
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error


async def test_an_over_long_search_word_is_bad_input(org):
    query = "query($q: String) { accounts(filter: {search: $q}) { totalCount } }"
    error = await org.seller.api.error(query, q="x" * 60_000)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["field"] == "search"


async def test_apollo_hash_only_get_runs_the_query(http, org):
    query = "query HashOnly { viewer { id } }"
    digest = hashlib.sha256(query.encode()).hexdigest()
    headers = {"authorization": f"Bearer {org.seller.api.token}"}
    sent = await http.post(
        "/graphql",
        json={
            "query": query,
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": digest}},
        },
        headers=headers,
    )
    assert sent.json()["data"]["viewer"]["id"] == org.seller.id
    extensions = json.dumps({"persistedQuery": {"version": 1, "sha256Hash": digest}})
    response = await http.get(
        "/graphql",
        params={"operationName": "HashOnly", "extensions": extensions},
        headers={**headers, "accept": "*/*"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["viewer"]["id"] == org.seller.id


async def test_cors_allows_the_headers_graphql_clients_send(http):
    wanted = "authorization,content-type,apollographql-client-name,sentry-trace,baggage"
    preflight = await http.options(
        "/graphql",
        headers={
            "origin": ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": wanted,
        },
    )
    assert preflight.status_code == 200, preflight.text
    allowed = preflight.headers["access-control-allow-headers"].lower()
    for header in wanted.split(","):
        assert header in allowed


async def test_the_graphql_response_media_type_and_its_status_codes(http, org):
    accept = {"accept": "application/graphql-response+json, application/json;q=0.9"}
    signed_in = {"authorization": f"Bearer {org.seller.api.token}"}
    ok = await http.post(
        "/graphql", json={"query": "{ viewer { id } }"}, headers={**accept, **signed_in}
    )
    assert ok.status_code == 200
    assert ok.headers["content-type"].startswith("application/graphql-response+json")
    for document in ("{ viewer {", "{ nope }"):
        refused = await http.post("/graphql", json={"query": document}, headers=accept)
        assert refused.status_code == 400
        assert refused.headers["content-type"].startswith("application/graphql-response+json")
        assert "data" not in refused.json()
        # application/json clients keep today's answers.
        today = await http.post("/graphql", json={"query": document})
        assert today.status_code == 200
        assert today.headers["content-type"].startswith("application/json")
        assert today.json()["data"] is None
