"""What an operator and a browser frontend see: health, metrics, logs, CORS, limits, masking."""

from __future__ import annotations

import logging
from dataclasses import replace

import httpx

from config import Settings
from server import create_app

ORIGIN = "https://app.example"  # the CORS_ORIGINS of the test server (conftest)


async def test_health_and_readiness(http):
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "database": "ok", "bus": "ok"}


async def test_metrics_count_requests_and_operations(http, org):
    await org.admin.api.data("{ viewer { id } }")
    body = (await http.get("/metrics")).text
    assert 'crm_http_requests_total{method="POST",route="/graphql",status="200"}' in body
    assert 'crm_graphql_operations_total{outcome="ok",type="query"}' in body


async def test_request_id_is_returned_and_logged(http, org, caplog):
    caplog.set_level(logging.INFO, logger="crm.access")
    response = await http.post(
        "/graphql",
        json={"query": "query Pipeline { opportunities { totalCount } }"},
        headers={"authorization": f"Bearer {org.seller.api.token}", "x-request-id": "req-42"},
    )
    assert response.headers["x-request-id"] == "req-42"
    name, duration = response.headers["server-timing"].split(";dur=")
    assert name == "app" and 0 < float(duration) < 10_000
    entries = [r for r in caplog.records if r.name == "crm.access" and r.fields.get("operation")]
    fields = entries[-1].fields
    assert fields["operation"] == "Pipeline"
    assert fields["operation_type"] == "query"
    assert fields["outcome"] == "ok"
    assert fields["status"] == 200
    assert isinstance(fields["organization"], int)
    assert "duration_ms" in fields


async def test_server_timing_is_told_of_signed_in_queries_only(http, org):
    """A login's (or any mutation's, or an anonymous request's) precise time would tell more of
    the password check than the wall clock does: only a signed-in query carries it."""
    login = 'mutation { login(email: "nobody@example.com", password: "wrong-password") { token } }'
    answer = await http.post("/graphql", json={"query": login})
    assert answer.json()["errors"] and "server-timing" not in answer.headers
    mutation = 'mutation { createAccount(input: {name: "Timed"}) { id } }'
    signed_in = {"authorization": f"Bearer {org.seller.api.token}"}
    answer = await http.post("/graphql", json={"query": mutation}, headers=signed_in)
    assert answer.json()["data"]["createAccount"]["id"] and "server-timing" not in answer.headers
    answer = await http.post("/graphql", json={"query": "{ __typename }"})
    assert answer.json()["data"] and "server-timing" not in answer.headers  # anonymous
    answer = await http.post("/graphql", json={"query": "{ viewer { id } }"}, headers=signed_in)
    assert answer.headers["server-timing"].startswith("app;dur=")


async def test_cors_allows_configured_origins_only(http):
    preflight = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type",
    }
    allowed = await http.options("/graphql", headers={"origin": ORIGIN, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    refused = await http.options(
        "/graphql", headers={"origin": "https://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in refused.headers


async def test_depth_alias_and_token_limits(org):
    deep = (
        "{ viewer { manager { manager { manager { manager { manager { manager { manager "
        "{ manager { manager { manager { manager { manager { id } } } } } } } } } } } } } }"
    )
    error = await org.admin.api.error(deep)
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "depth" in error["message"]

    aliases = "{ " + " ".join(f"a{i}: viewer {{ id }}" for i in range(40)) + " }"
    error = await org.admin.api.error(aliases)
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "aliases" in error["message"]

    huge = "{ viewer { " + "id " * 5000 + "} }"
    error = await org.admin.api.error(huge)
    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"


async def test_unexpected_errors_are_masked_and_logged(org, monkeypatch, caplog):
    import schema.organization

    async def broken(organization_id: int):
        raise RuntimeError("secret internals of the database")

    monkeypatch.setattr(schema.organization, "list_stages", broken)
    caplog.set_level(logging.ERROR, logger="crm.graphql")
    error = await org.admin.api.error("{ pipelineStages { id } }")
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "secret" not in error["message"]
    request_id = error["extensions"]["requestId"]
    logged = [r for r in caplog.records if r.name == "crm.graphql"]
    assert logged and request_id in logged[-1].getMessage()
    assert "secret internals" in str(logged[-1].exc_info[1])


async def test_production_switches_off_graphiql_and_introspection(live_server):
    production = replace(
        live_server.settings, environment="production", graphiql=False, introspection=False
    )
    app = create_app(production)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://prod") as client:
        page = await client.get("/graphql", headers={"accept": "text/html"})
        assert "graphiql" not in page.text.lower()
        response = await client.post("/graphql", json={"query": "{ __schema { types { name } } }"})
        error = response.json()["errors"][0]
        assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        assert "introspection" in error["message"].lower()


async def test_development_serves_graphiql(http):
    page = await http.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()


def test_settings_are_read_by_the_entry_points_only(monkeypatch):
    """No settings object to import: GC_THRESHOLD is read with the others, and the tortoise
    CLI's configuration (config.TORTOISE_ORM) from DATABASE_URL when it asks."""
    import config

    assert not hasattr(config, "settings")
    monkeypatch.setenv("GC_THRESHOLD", "1234")
    monkeypatch.setenv("DATABASE_URL", "sqlite://elsewhere.sqlite3")
    assert Settings.from_env().gc_threshold == 1234
    assert config.TORTOISE_ORM["connections"]["default"] == "sqlite://elsewhere.sqlite3"
    monkeypatch.delenv("GC_THRESHOLD")
    assert Settings.from_env().gc_threshold == 5_000
