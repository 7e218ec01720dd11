"""Fair limits: query cost, rate limits shared across processes through Redis, persisted
queries (automatic, and the allow-list mode)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import httpx
import pytest

from config import Settings
from resolvers.context import RequestContext
from schema import build_schema
from tests.helpers import PASSWORD, SIGN_UP, Member, create_account, pk, unique_email
from tests.processes import ROOT, ServerProcess
from tests.test_live_bus import REDIS_URL, _require_redis
from tests.test_partners import new_key

SMALL = "{ accounts(first: 5) { nodes { id name } } }"


async def post(member: Member, body: dict[str, Any], base_url: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {member.api.token}"} if member.api.token else {}
    if base_url is None:
        return await member.api.http.post("/graphql", json=body, headers=headers)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, trust_env=False) as http:
        return await http.post("/graphql", json=body, headers=headers)


# Query cost


async def test_every_answer_reports_its_cost(org):
    answer = (await post(org.seller, {"query": SMALL})).json()
    # accounts 1 + nodes 1 + 5 x (id + name)
    assert answer["extensions"]["cost"] == {"requested": 12, "limit": 200_000}
    nested = """query($n: Int) { accounts(first: $n) { nodes { id opportunities(first: 3) {
      nodes { name participants { role } } } } } }"""
    answer = (await post(org.seller, {"query": nested, "variables": {"n": 2}})).json()
    # 1 + 1 + 2 x (1 + 1 + 1 + 3 x (1 + 1 + 10 x 1)) = 2 + 2 x 39
    assert answer["extensions"]["cost"]["requested"] == 80


async def test_an_operation_over_the_budget_is_refused_before_it_runs(org):
    await create_account(org.seller)
    huge = """{ accounts(first: 100) { nodes { opportunities(first: 100) { nodes {
      participants { contact { id } } } } } } }"""
    answer = (await post(org.seller, {"query": huge})).json()
    error = answer["errors"][0]
    assert error["extensions"]["code"] == "QUERY_TOO_COSTLY"
    assert error["extensions"]["cost"] > error["extensions"]["limit"] == 200_000
    assert answer.get("data") is None
    create = """mutation { createAccount(input: {name: "Never"}) { id
      opportunities(first: 100) { nodes { participants { contact {
        account { opportunities(first: 100) { nodes { id name } } } } } } } } }"""
    refused = (await post(org.admin, {"query": create})).json()
    assert refused["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"
    names = '{ accounts(first: 100, filter: {search: "Never"}) { nodes { id } } }'
    found = (await post(org.admin, {"query": names})).json()
    assert found["data"]["accounts"]["nodes"] == []  # the refused mutation never ran


async def test_the_cost_cannot_be_talked_down(org):
    huge = """query($n: Int = 100) { accounts(first: $n) { nodes { opportunities(first: 100) {
      nodes { participants { contact { id } } } } } } }"""
    answer = (await post(org.seller, {"query": huge})).json()  # the default, not the page size
    assert answer["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"
    negative = """{ accounts(first: 100) { nodes { opportunities(first: 100) { nodes {
      participants { contact { id } } } } } }
      contacts(first: 1) { nodes { account { opportunities(first: -1000000) { nodes { id
      } } } } } }"""
    answer = (await post(org.seller, {"query": negative})).json()
    assert answer["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"


async def test_fragments_that_explode_are_refused_at_once(org):
    levels = 20
    fragments = [f"fragment F{n} on User {{ ...F{n + 1} ...F{n + 1} }}" for n in range(levels)]
    fragments.append(f"fragment F{levels} on User {{ id }}")
    document = "{ viewer { ...F0 } } " + " ".join(fragments)
    began = asyncio.get_running_loop().time()
    answer = (await post(org.seller, {"query": document})).json()
    assert asyncio.get_running_loop().time() - began < 2  # not 2**20 field visits
    assert answer["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_two_apps_in_one_process_each_enforce_and_report_their_own_limits(live_server, org):
    """Settings are passed, never global: each app refuses, and says so, by its own."""
    aliased = "{ a: viewer { id } b: viewer { id } c: viewer { id } }"
    async with (
        live_server.serve(max_query_cost=10, max_aliases=2) as strict,
        live_server.serve(max_query_cost=100, max_aliases=3) as lenient,
    ):
        refused = (await post(org.seller, {"query": SMALL}, strict.base_url)).json()
        error = refused["errors"][0]
        assert error["extensions"]["code"] == "QUERY_TOO_COSTLY"
        assert (error["extensions"]["cost"], error["extensions"]["limit"]) == (12, 10)
        assert "over the limit of 10" in error["message"]
        answered = (await post(org.seller, {"query": SMALL}, lenient.base_url)).json()
        assert "errors" not in answered
        assert answered["extensions"]["cost"] == {"requested": 12, "limit": 100}
        too_many = (await post(org.seller, {"query": aliased}, strict.base_url)).json()
        assert too_many["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        assert too_many["errors"][0]["message"] == "3 aliases found. Allowed: 2"
        three = (await post(org.seller, {"query": aliased}, lenient.base_url)).json()
        assert three["data"]["a"]["id"] == org.seller.id
    # The suite's own app kept its limit.
    mine = (await post(org.seller, {"query": SMALL})).json()
    assert mine["extensions"]["cost"]["limit"] == live_server.settings.max_query_cost


async def test_a_schema_enforces_and_reports_the_limits_it_was_built_with():
    """`build_schema(settings)` answers by its settings, whatever the request's context says."""
    fields = "{ a: __typename b: __typename c: __typename }"  # costs 3
    context = RequestContext(request_id="limits", settings=Settings())  # 200,000
    tight = await build_schema(Settings(max_query_cost=2)).execute(fields, context_value=context)
    assert tight.errors is not None
    assert tight.errors[0].extensions == {"code": "QUERY_TOO_COSTLY", "cost": 3, "limit": 2}
    roomy = await build_schema(Settings(max_query_cost=5)).execute(fields, context_value=context)
    assert roomy.errors is None and roomy.data == {"a": "Query", "b": "Query", "c": "Query"}
    assert roomy.extensions == {"cost": {"requested": 3, "limit": 5}}
    few = await build_schema(Settings(max_aliases=2)).execute(fields, context_value=context)
    assert few.errors is not None and few.errors[0].message == "3 aliases found. Allowed: 2"


# Rate limits


async def test_a_rate_limit_is_shared_by_processes_through_redis(live_server, org):
    await _require_redis()
    env = {
        "DATABASE_URL": live_server.database_url,
        "RATE_LIMIT_PER_SECOND": "0.2",
        "RATE_LIMIT_BURST": "4",
        "RATE_LIMIT_REDIS_URL": REDIS_URL,
        "BUS_CHANNEL": f"crm-test-{uuid.uuid4().hex[:8]}",  # a bucket namespace of its own
    }
    async with ServerProcess(env) as first, ServerProcess(env) as second:
        answers = []
        for server in (first, second, first, second, first):
            answers.append(await post(org.seller, {"query": SMALL}, server.base_url))
        codes = [
            (a.json().get("errors") or [{}])[0].get("extensions", {}).get("code") for a in answers
        ]
        assert codes == [None, None, None, None, "RATE_LIMITED"]  # 4 of one bucket, then none
        refused = answers[-1]
        error = refused.json()["errors"][0]
        assert error["extensions"]["retryAfter"] >= 1
        assert int(refused.headers["retry-after"]) == error["extensions"]["retryAfter"]
        # Another user's bucket is full.
        other = await post(org.teammate, {"query": SMALL}, second.base_url)
        assert not other.json().get("errors")


async def test_websockets_and_exports_share_the_limit(live_server, org):
    from tests.ws import OperationError, live_client

    _, made = await new_key(org)
    async with live_server.serve(rate_limit_per_second=0.1, rate_limit_burst=2) as server:
        async with live_client(server.base_url, org.seller.api.token) as client:
            codes = []
            for _ in range(3):
                operation = await client.subscribe(SMALL)
                try:
                    payload = await operation.next()
                except OperationError as refused:  # refused before it ran: the error message
                    payload = {"errors": refused.errors}
                codes.append((payload.get("errors") or [{}])[0].get("extensions", {}).get("code"))
        assert codes == [None, None, "RATE_LIMITED"]
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30, trust_env=False) as http:
            headers = {"authorization": f"Bearer {made['secret']}"}
            statuses = [
                (await http.get("/export/accounts.ndjson", headers=headers)).status_code
                for _ in range(3)
            ]
        assert statuses == [200, 200, 429]


async def test_without_redis_each_process_limits_by_itself(live_server, org):
    async with live_server.serve(rate_limit_per_second=0.2, rate_limit_burst=2) as server:
        codes = []
        for _ in range(3):
            answer = (await post(org.seller, {"query": SMALL}, server.base_url)).json()
            codes.append((answer.get("errors") or [{}])[0].get("extensions", {}).get("code"))
        assert codes == [None, None, "RATE_LIMITED"]


# Persisted queries


def persisted(query: str | None, digest: str) -> dict[str, Any]:
    body: dict[str, Any] = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": digest}}}
    if query is not None:
        body["query"] = query
    return body


async def test_a_query_sent_once_runs_by_its_hash(org):
    query = "query Persisted" + uuid.uuid4().hex[:6] + " { viewer { id } }"
    digest = hashlib.sha256(query.encode()).hexdigest()
    unknown = (await post(org.seller, persisted(None, digest))).json()
    assert unknown["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert unknown["errors"][0]["message"] == "PersistedQueryNotFound"  # what Apollo clients expect
    first = (await post(org.seller, persisted(query, digest))).json()
    assert first["data"]["viewer"]["id"] == org.seller.id
    again = (await post(org.teammate, persisted(None, digest))).json()
    assert again["data"]["viewer"]["id"] == org.teammate.id
    wrong = (await post(org.seller, persisted(query, "0" * 64))).json()
    assert wrong["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    malformed = (await post(org.seller, persisted(None, "xyz"))).json()
    assert malformed["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # Nobody's query is remembered before they sign in.
    anonymous = "query Anonymous" + uuid.uuid4().hex[:6] + " { __typename }"
    digest = hashlib.sha256(anonymous.encode()).hexdigest()
    stranger = Member("", "", org.seller.api.as_(None))
    assert "errors" not in (await post(stranger, persisted(anonymous, digest))).json()
    again = (await post(stranger, persisted(None, digest))).json()
    assert again["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


async def test_the_allow_list_runs_registered_queries_only(live_server, org):
    registered = "query Allowed { viewer { id fullName } }"
    with tempfile.TemporaryDirectory() as folder:
        document = Path(folder) / "allowed.graphql"
        document.write_text(registered, encoding="utf-8")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "manage.py",
            "persist-queries",
            str(document),
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": live_server.database_url},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    digest = hashlib.sha256(registered.encode()).hexdigest()
    assert output.decode().startswith(digest)
    _, made = await new_key(org)
    async with live_server.serve(persisted_queries="allowlist") as server:
        raw = (await post(org.seller, {"query": SMALL}, server.base_url)).json()
        assert raw["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_REQUIRED"
        by_hash = (await post(org.seller, persisted(None, digest), server.base_url)).json()
        assert by_hash["data"]["viewer"]["id"] == org.seller.id
        registered_raw = (await post(org.seller, {"query": registered}, server.base_url)).json()
        assert registered_raw["data"]["viewer"]["id"] == org.seller.id
        other = "query NotAllowed { viewer { id } }"
        sent = persisted(other, hashlib.sha256(other.encode()).hexdigest())
        refused = (await post(org.seller, sent, server.base_url)).json()
        assert refused["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_REQUIRED"
        # Remembered automatically elsewhere is not registered: still refused here.
        await post(org.seller, sent)
        refused = (
            await post(
                org.seller,
                persisted(None, sent["extensions"]["persistedQuery"]["sha256Hash"]),
                server.base_url,
            )
        ).json()
        assert refused["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_REQUIRED"
        # A partner's key sends its own queries.
        key = Member(org.admin.id, org.admin.email, org.admin.api.as_(made["secret"]))
        partner = (await post(key, {"query": SMALL}, server.base_url)).json()
        assert "errors" not in partner


# Login throttling and sign-ups


async def _login(http: httpx.AsyncClient, email: str, password: str) -> dict[str, Any]:
    query = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }"
    response = await http.post(
        "/graphql", json={"query": query, "variables": {"e": email, "p": password}}
    )
    return response.json()


def _code(answer: dict[str, Any]) -> str | None:
    return (answer.get("errors") or [{}])[0].get("extensions", {}).get("code")


async def test_logins_are_throttled_per_account_and_address_alike_for_unknown_emails(
    live_server, org
):
    async with (
        live_server.serve(
            login_failures_per_account=2, login_failures_per_address=6, signups_per_hour=1
        ) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=30, trust_env=False) as http,
    ):
        unknown = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
        answers = {}
        for email in (org.seller.email, unknown):
            answers[email] = [await _login(http, email, "wrong password!") for _ in range(3)]
        for email, seen in answers.items():
            assert [_code(a) for a in seen] == [
                "UNAUTHENTICATED",
                "UNAUTHENTICATED",
                "RATE_LIMITED",
            ], email
            assert seen[2]["errors"][0]["extensions"]["retryAfter"] >= 1
        # The same answers for an account that exists and one that does not.
        assert [a["errors"][0]["message"] for a in answers[org.seller.email]] == [
            a["errors"][0]["message"] for a in answers[unknown]
        ]
        # Even the right password waits now; other accounts from this address have 2 failures
        # left before the address is throttled too.
        assert _code(await _login(http, org.seller.email, PASSWORD)) == "RATE_LIMITED"
        assert _code(await _login(http, org.teammate.email, PASSWORD)) is None
        for n in range(2):
            await _login(http, f"other-{n}-{uuid.uuid4().hex[:6]}@example.com", "wrong!")
        assert _code(await _login(http, org.manager.email, PASSWORD)) == "RATE_LIMITED"
        # One sign-up an hour from this address.
        codes = []
        for _ in range(2):
            values = {"organizationName": "Throttled", "fullName": "T", "password": PASSWORD}
            answer = (
                await http.post(
                    "/graphql",
                    json={
                        "query": SIGN_UP,
                        "variables": {"input": {**values, "email": unique_email()}},
                    },
                )
            ).json()
            codes.append(_code(answer))
        assert codes == [None, "RATE_LIMITED"]


# Fairness between organizations


async def test_each_organization_has_a_bucket_of_its_own(live_server, org, other_org):
    async with live_server.serve(rate_limit_org_per_second=0.05, rate_limit_org_burst=3) as server:
        codes = []
        for member in (org.seller, org.teammate, org.manager, org.admin):
            answer = (await post(member, {"query": SMALL}, server.base_url)).json()
            codes.append(_code(answer))
        assert codes == [None, None, None, "RATE_LIMITED"]  # four users, one organization
        other = (await post(other_org.seller, {"query": SMALL}, server.base_url)).json()
        assert _code(other) is None


async def _many_accounts(database_url: str, org, count: int) -> None:
    """`count` accounts for `org`, written in SQL on PostgreSQL (an export big enough to fill
    the sockets between the server and a client that does not read)."""
    admin = pk(org.admin.id)
    connection = await asyncpg.connect(database_url)
    try:
        org_id = await connection.fetchval(
            "SELECT organization_id FROM crm_user WHERE id = $1", admin
        )
        await connection.executemany(
            "INSERT INTO account (organization_id, owner_id, name, created_at, updated_at) "
            "VALUES ($1, $2, $3, now(), now())",
            [(org_id, admin, f"Bulk account {n} " + "x" * 180) for n in range(count)],
        )
    finally:
        await connection.close()


async def test_exports_have_slots_per_organization_and_stop_for_idle_readers(
    live_server, org, other_org
):
    if live_server.database == "sqlite":
        pytest.skip("SQLite has one connection: every request waits while an export streams")
    await _many_accounts(live_server.database_url, org, 150_000)
    mine = {"authorization": f"Bearer {org.admin.api.token}"}
    theirs = {"authorization": f"Bearer {other_org.admin.api.token}"}
    async with (
        live_server.serve(exports_per_organization=1, export_send_timeout_seconds=1) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=30, trust_env=False) as http,
        http.stream("GET", "/export/accounts.ndjson", headers=mine) as held,
    ):
        assert held.status_code == 200  # opened, and never read
        await asyncio.sleep(0.3)
        second = await http.get("/export/accounts.ndjson", headers=mine)
        assert second.status_code == 429
        assert second.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        other = await http.get("/export/accounts.ndjson", headers=theirs)
        assert other.status_code == 200  # another organization still exports
        # The idle reader's stream is ended after the send timeout: its slot comes back.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            again = await http.get("/export/contacts.ndjson", headers=mine)
            if again.status_code == 200:
                break
            assert loop.time() < deadline, "the idle export kept its slot"
            await asyncio.sleep(0.5)


async def test_persisted_queries_are_kept_per_organization_within_caps(live_server, org, other_org):
    def document(n: int) -> tuple[str, str]:
        query = f"query Kept{n}{uuid.uuid4().hex[:6]} {{ viewer {{ id }} }}"
        return query, hashlib.sha256(query.encode()).hexdigest()

    async with live_server.serve(
        persisted_queries_per_organization=2, persisted_query_max_length=200
    ) as server:
        sent = [document(n) for n in range(3)]
        for query, digest in sent:
            assert (
                "errors"
                not in (await post(org.seller, persisted(query, digest), server.base_url)).json()
            )
        # Another organization cannot run this one's queries by their hash.
        foreign = (
            await post(other_org.seller, persisted(None, sent[2][1]), server.base_url)
        ).json()
        assert _code(foreign) == "PERSISTED_QUERY_NOT_FOUND"
        # Two kept per organization: the oldest went.
        codes = [
            _code((await post(org.teammate, persisted(None, digest), server.base_url)).json())
            for _, digest in sent
        ]
        assert codes == ["PERSISTED_QUERY_NOT_FOUND", None, None]
        # Longer than the limit: it runs, and is not kept.
        long = "query Long { viewer { id " + " " * 200 + "} }"
        digest = hashlib.sha256(long.encode()).hexdigest()
        assert (
            "errors"
            not in (await post(org.seller, persisted(long, digest), server.base_url)).json()
        )
        again = (await post(org.seller, persisted(None, digest), server.base_url)).json()
        assert _code(again) == "PERSISTED_QUERY_NOT_FOUND"


async def test_a_refusal_is_held_before_it_is_answered_within_a_bound(live_server, org):
    async with live_server.serve(
        rate_limit_per_second=0.01,
        rate_limit_burst=1,
        rate_limit_refusal_delay_seconds=2.0,
        rate_limit_parked_per_organization=2,
    ) as server:
        assert _code((await post(org.seller, {"query": SMALL}, server.base_url)).json()) is None

        async def refused() -> tuple[str | None, float]:
            began = time.monotonic()
            answer = (await post(org.seller, {"query": SMALL}, server.base_url)).json()
            return _code(answer), time.monotonic() - began

        results = await asyncio.gather(*(refused() for _ in range(4)))
        assert [code for code, _ in results] == ["RATE_LIMITED"] * 4
        took = sorted(seconds for _, seconds in results)
        assert took[0] < 1.5 and took[1] < 1.5  # past the organization's two: at once
        assert took[2] >= 2.0 and took[3] >= 2.0  # held (a flood slows itself down)


WAITING_ON_LOCKS = (
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
    "AND datname = current_database() AND pid <> pg_backend_pid()"
)


@dataclass
class Held:
    """A table locked in an open transaction of a connection of its own: the requests that
    read it stay in flight until `release()`."""

    connection: asyncpg.Connection
    transaction: Any

    async def until_waiting(self, count: int) -> None:
        """Until `count` sessions of the database wait on locks."""
        deadline = time.monotonic() + 10
        while await self.connection.fetchval(WAITING_ON_LOCKS) < count:
            assert time.monotonic() < deadline, "the requests never reached the locked table"
            await asyncio.sleep(0.05)

    async def release(self) -> None:
        await self.transaction.rollback()


@contextlib.asynccontextmanager
async def _held(database_url: str, table: str) -> AsyncIterator[Held]:
    connection = await asyncpg.connect(database_url)
    try:
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
        yield Held(connection, transaction)
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def _an_organization_at_its_limits(
    live_server: Any, org: Any, share: float, longest: float
) -> AsyncIterator[tuple[Any, list[httpx.Response]]]:
    """A server whose organizations' buckets hold 3 at 5 a second, refusals answered at once,
    at-limits courtesy (`share`, `longest`) as given, and `org` past its bucket: the server and
    the answers of `org`'s burst. (PostgreSQL: the other organizations' requests are held in
    flight by its locks.)"""
    if live_server.database == "sqlite":
        pytest.skip("the other organization's request is held in flight by a PostgreSQL lock")
    async with live_server.serve(
        rate_limit_org_per_second=5,
        rate_limit_org_burst=3,
        rate_limit_refusal_delay_seconds=0,
        at_limits_courtesy_share=share,
        at_limits_courtesy_longest_seconds=longest,
    ) as server:
        yield server, await _past_its_bucket(server, org.seller)


async def _past_its_bucket(server: Any, member: Member) -> list[httpx.Response]:
    """A burst of five of `member`'s requests (past a bucket of 3), then 0.8 s for the bucket
    to fill again (3 at 5 a second): the answers of the burst."""
    burst = await asyncio.gather(
        *(post(member, {"query": SMALL}, server.base_url) for _ in range(5))
    )
    await asyncio.sleep(0.8)
    return list(burst)


@pytest.mark.parametrize("refused_by", ["organization", "user"])
async def test_an_organization_at_its_limits_executes_one_operation_at_a_time(
    live_server, org, other_org, refused_by
):
    """Refused by its own bucket, an organization takes turns; one of its users refused by
    theirs leaves the others their ORG_CONCURRENCY."""
    if live_server.database == "sqlite":
        pytest.skip("the operations in flight are counted on PostgreSQL's lock waits")
    by_organization = refused_by == "organization"
    async with live_server.serve(
        rate_limit_per_second=1000 if by_organization else 0.01,
        rate_limit_burst=1000 if by_organization else 3,
        rate_limit_org_per_second=5 if by_organization else 1000,
        rate_limit_org_burst=3 if by_organization else 1000,
        rate_limit_refusal_delay_seconds=0,
        org_concurrency=4,
    ) as server:
        # A burst past the organization's own bucket, or past the seller's.
        burst = await _past_its_bucket(server, org.seller)
        assert sorted(_code(answer.json()) or "" for answer in burst) == [
            "", "", "", "RATE_LIMITED", "RATE_LIMITED"
        ]  # fmt: skip
        async with _held(live_server.database_url, "account") as accounts:
            members = (org.teammate, org.manager, org.admin, other_org.seller)
            sent = [
                asyncio.create_task(post(member, {"query": SMALL}, server.base_url))
                for member in members
            ]
            await accounts.until_waiting(2)
            await asyncio.sleep(1)
            # At its limits, one of `org`'s three (the two others wait their turn) and the
            # other organization's one: never three of `org`'s, although ORG_CONCURRENCY is 4.
            assert await accounts.connection.fetchval(WAITING_ON_LOCKS) == (
                2 if by_organization else 4
            )
            await accounts.release()
            answers = [(await task).json() for task in sent]
            assert [_code(answer) for answer in answers] == [None] * 4


async def test_an_organization_at_its_limits_gives_way_to_the_others(live_server, org, other_org):
    """At its limits, an organization's next operation waits while another organization's
    request is in flight (AT_LIMITS_COURTESY_*), and goes once it has ended; an organization
    that is not at its limits does not wait."""
    async with _an_organization_at_its_limits(live_server, org, 1.0, 5.0) as (server, burst):
        assert "RATE_LIMITED" in [_code(answer.json()) for answer in burst]
        viewer = {"query": "{ viewer { id } }"}
        # Its own requests in flight (waiting their turn) are not the others': no waiting.
        began = time.monotonic()
        own = await asyncio.gather(
            *(post(member, viewer, server.base_url) for member in (org.seller, org.teammate))
        )
        assert [_code(answer.json()) for answer in own] == [None, None]
        assert time.monotonic() - began < 1.5
        await asyncio.sleep(0.5)  # (the bucket again)
        async with _held(live_server.database_url, "account") as accounts:
            # The other organization's request, in flight until the lock goes.
            theirs = asyncio.create_task(post(other_org.seller, {"query": SMALL}, server.base_url))
            await accounts.until_waiting(1)
            ours = asyncio.create_task(post(org.seller, viewer, server.base_url))
            # The other organization itself, not at its limits, goes ahead meanwhile.
            began = time.monotonic()
            assert _code((await post(other_org.manager, viewer, server.base_url)).json()) is None
            assert time.monotonic() - began < 1.0
            await asyncio.sleep(1.0)
            assert not ours.done()  # (without the courtesy: answered at once)
            await accounts.release()
            assert _code((await theirs).json()) is None
            answer = (await ours).json()
            assert _code(answer) is None and answer["data"]["viewer"]["id"]


async def test_the_courtesy_of_an_organization_at_its_limits_is_bounded(
    live_server, org, other_org
):
    """However long the others' requests stay in flight, an organization at its limits waits
    at most AT_LIMITS_COURTESY_LONGEST_SECONDS at once: it is never starved."""
    async with (
        _an_organization_at_its_limits(live_server, org, 0.5, 0.3) as (server, _),
        _held(live_server.database_url, "account") as accounts,
    ):
        theirs = asyncio.create_task(post(other_org.seller, {"query": SMALL}, server.base_url))
        await accounts.until_waiting(1)  # in flight, behind the lock
        began = time.monotonic()
        answer = (await post(org.seller, {"query": "{ viewer { id } }"}, server.base_url)).json()
        took = time.monotonic() - began
        assert _code(answer) is None
        # It gave way (0.3 s at once, within its credit of two such waits and half of its
        # time), but not for as long as the other organization's request stays in flight.
        assert 0.1 <= took < 2.0, took
        assert not theirs.done()
        await accounts.release()
        assert _code((await theirs).json()) is None


async def test_at_its_limits_an_operation_gives_way_between_its_statements(
    live_server, org, other_org
):
    """An operation of an organization at its limits that is under way when another
    organization's request comes in gives way before its next level's statements."""
    await create_account(org.seller)  # the account its query reads, made before its burst
    async with (
        _an_organization_at_its_limits(live_server, org, 1.0, 5.0) as (server, _),
        _held(live_server.database_url, "account") as accounts,
        _held(live_server.database_url, "contact") as contacts,
    ):
        # Ours starts alone: its first statement waits on the accounts...
        query = "{ accounts(first: 5) { nodes { id owner { fullName } } } }"
        ours = asyncio.create_task(post(org.seller, {"query": query}, server.base_url))
        await accounts.until_waiting(1)
        # ... when the other organization's comes in (and waits on the contacts).
        theirs = asyncio.create_task(
            post(
                other_org.seller,
                {"query": "{ contacts(first: 1) { nodes { id } } }"},
                server.base_url,
            )
        )
        await accounts.until_waiting(2)
        await accounts.release()
        await asyncio.sleep(1.0)
        assert not ours.done()  # it gave way before its owners (without: answered)
        await contacts.release()
        assert _code((await theirs).json()) is None
        answer = (await ours).json()
        assert _code(answer) is None and answer["data"]["accounts"]["nodes"][0]["owner"]


class CountingGate:
    """Counts where an operation gives way (the real Gate's `share` and `give_way`, at its
    limits: waiting here would need other organizations' requests in flight)."""

    def __init__(self) -> None:
        self.ways = 0

    @contextlib.asynccontextmanager
    async def share(self, ctx):
        yield

    async def give_way(self, ctx) -> None:
        self.ways += 1


async def test_at_its_limits_an_operation_gives_way_before_its_validation() -> None:
    """`OrganizationShare` gives way before the parsing, between the parsing and the validation
    (for a document parsed, not one kept from before), and before the execution."""
    schema = build_schema(Settings())
    gate = CountingGate()
    viewer: Any = SimpleNamespace(id=1, organization_id=1)  # all the share reads of it

    async def ways(document: str) -> tuple[int, bool]:
        gate.ways = 0
        context = RequestContext(request_id="ways", settings=Settings(), viewer=viewer, gate=gate)
        result = await schema.execute(document, context_value=context)
        return gate.ways, result.errors is None

    assert await ways("{ __typename nope }") == (2, False)  # operation, validation: refused
    assert await ways("{ a: __typename }") == (3, True)  # operation, validation, execution
    assert await ways("{ a: __typename }") == (2, True)  # kept: nothing parsed or validated
