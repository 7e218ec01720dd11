"""Query plans that follow the tenant's own data (PostgreSQL): beside a large second organization,
the statements of every top-level list (its page, its count, its relations, its next page) and
of the live feeds read through indexes, and a projection's plan has the same shape for a small
organization as for the large one.

The SQL each request runs is taken from the server (this process), then explained here with its
parameters: once as PostgreSQL would run it, and once with sequential scans disabled, so that a
table without a usable index shows even while it is small. A scan of a tenant table must be an
index scan with an index condition (the organization, or a key that implies it), never a
sequential scan or a whole-index walk.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from strawberry import relay
from tortoise.models import Model

from bench.seed import table_rows
from models import (
    Account,
    Activity,
    ApiKey,
    AuthToken,
    Campaign,
    CampaignMember,
    Change,
    Comment,
    Contact,
    ContactTag,
    Event,
    Lead,
    LeadFollower,
    LeadParticipant,
    LifecycleChange,
    LineItem,
    Message,
    Notification,
    Opportunity,
    OpportunityFollower,
    OpportunityParticipant,
    PipelineStage,
    Product,
    Quota,
    Segment,
    User,
)
from resolvers.auth import digest
from subscriptions.hub import read_logs
from tests.helpers import Api, Org, create_opportunity, pk
from tests.test_pipeline_sql import DETAIL, seed_pipeline

pytestmark = pytest.mark.skipif(
    os.environ.get("TEST_DATABASE", "sqlite") != "postgres",
    reason="query plans are PostgreSQL's",
)

SIZE = 6_000  # the large organization's opportunities (and contacts; leads and accounts fewer)
TENANT_TABLES = {
    model._meta.db_table
    for model in (
        Account,
        Activity,
        ApiKey,
        AuthToken,
        Campaign,
        CampaignMember,
        Change,
        Comment,
        Contact,
        ContactTag,
        Event,
        Lead,
        LeadFollower,
        LeadParticipant,
        LifecycleChange,
        LineItem,
        Message,
        Notification,
        Opportunity,
        OpportunityFollower,
        OpportunityParticipant,
        PipelineStage,
        Product,
        Quota,
        Segment,
        User,
    )
}
SCANS = {"Index Scan", "Index Only Scan", "Bitmap Index Scan"}

DEAL = """id version {relations}
  owner {{ id fullName }} contact {{ id fullName email }} isFollowedByViewer
  participants {{ role contact {{ id fullName }} }} followers {{ id fullName }}"""
LISTS: dict[str, str] = {
    **{
        f"opportunities {order}": f"""query($after: String) {{
          opportunities(first: 20, after: $after, orderBy: {{field: {order}, direction: DESC}}) {{
            totalCount pageInfo {{ endCursor }}
            nodes {{ {DEAL.format(relations="name amount account { id name } stage { id name }")} }}
          }}
        }}"""
        for order in (
            "CREATED_AT",
            "UPDATED_AT",
            "NAME",
            "AMOUNT",
            "EXPECTED_CLOSE_DATE",
            "PROBABILITY",
            "STAGE",
            "OWNER_NAME",
        )
    },
    **{
        f"leads {order}": f"""query($after: String) {{
          leads(first: 20, after: $after, orderBy: {{field: {order}}}) {{
            totalCount pageInfo {{ endCursor }}
            nodes {{ {DEAL.format(relations="title account { id name }")} }}
          }}
        }}"""
        for order in ("CREATED_AT", "UPDATED_AT", "TITLE", "OWNER_NAME")
    },
    **{
        f"accounts {order}": f"""query($after: String) {{
          accounts(first: 20, after: $after, orderBy: {{field: {order}}}) {{
            totalCount pageInfo {{ endCursor }} nodes {{ id name owner {{ id fullName }} }}
          }}
        }}"""
        for order in ("CREATED_AT", "UPDATED_AT", "NAME")
    },
    **{
        f"contacts {order}": f"""query($after: String) {{
          contacts(first: 20, after: $after, orderBy: {{field: {order}}}) {{
            totalCount pageInfo {{ endCursor }}
            nodes {{ id fullName tags account {{ id name }} owner {{ id fullName }} }}
          }}
        }}"""
        for order in ("CREATED_AT", "UPDATED_AT", "LAST_NAME")
    },
    **{
        f"users {order}": f"""query($after: String) {{
          users(first: 20, after: $after, orderBy: {{field: {order}}}) {{
            totalCount pageInfo {{ endCursor }} nodes {{ id fullName manager {{ fullName }} }}
          }}
        }}"""
        for order in ("CREATED_AT", "NAME", "EMAIL")
    },
    "opportunities by stage and owner": """query($after: String, $owner: ID!) {
      opportunities(first: 20, after: $after, filter: {ownerIds: [$owner],
                    updatedSince: "2020-01-01T00:00:00Z"}) {
        totalCount pageInfo { endCursor } nodes { id name }
      }
    }""",
    "contacts by tag": """query($after: String) {
      contacts(first: 20, after: $after, filter: {tags: ["vip"]}) {
        totalCount pageInfo { endCursor } nodes { id }
      }
    }""",
    "pipeline stages": "{ pipelineStages { id name } }",
    "stage summary": """query($owner: ID!) {
      all: opportunityStageSummary { stage { id } count totals { currency amount } }
      search: opportunityStageSummary(filter: {search: "deal 1"}) { count }
      owner: opportunityStageSummary(filter: {ownerIds: [$owner]}) { count }
    }""",
    "opportunities by account or contact name": """query($after: String) {
      opportunities(first: 20, after: $after, filter: {search: "contact 1"}) {
        totalCount pageInfo { endCursor } nodes { id convertedFrom { id } }
      }
    }""",
    "leads converted": """query($after: String) {
      leads(first: 20, after: $after, filter: {converted: false}) {
        totalCount pageInfo { endCursor } nodes { id }
      }
    }""",
    "team agenda": """query($after: String) {
      agenda(first: 20, after: $after, filter: {team: true}) {
        totalCount pageInfo { endCursor } nodes { id subject owner { id } }
      }
    }""",
    "notifications": """query($after: String) {
      notifications(first: 20, after: $after) {
        totalCount pageInfo { endCursor } nodes { id event { kind actor { id } } }
      }
      unreadNotificationCount
    }""",
    "agenda": """query($after: String) {
      agenda(first: 20, after: $after) {
        totalCount pageInfo { endCursor } nodes { id subject attendees { id } }
      }
    }""",
    "messages": """query($after: String) {
      messages(first: 20, after: $after) { totalCount pageInfo { endCursor } nodes { id } }
    }""",
    "quotas": "{ quotas(year: 2026) { amount user { id } } }",
    "products": """query($after: String) {
      products(first: 20, after: $after) { totalCount pageInfo { endCursor } nodes { id } }
    }""",
    "segments": """query($after: String) {
      segments(first: 20, after: $after) { totalCount pageInfo { endCursor } nodes { id } }
    }""",
    "campaigns": """query($after: String) {
      campaigns(first: 20, after: $after) { totalCount pageInfo { endCursor } nodes { id } }
    }""",
    "changes": """query($after: String) {
      changes(since: $after, first: 50) { pageInfo { endCursor } nodes { op recordType } }
    }""",
    "api keys": "{ apiKeys { id } }",
    "live cursor": "{ liveCursor }",
}


# Seeding the large organization, in SQL


async def copy(db: asyncpg.Connection, model: type[Model], rows: list[dict[str, Any]]) -> list[int]:
    """COPY rows into the model's table (ids from its sequence); their ids, in order."""
    columns, values = table_rows(model, rows)
    keep = [i for i, column in enumerate(columns) if column != "id"]
    json_columns = {
        model._meta.fields_map[name].source_field or name
        for name, field in model._meta.fields_map.items()
        if type(field).__name__ == "JSONField"
    }
    records = [
        tuple(
            json.dumps(row[i]) if columns[i] in json_columns and row[i] is not None else row[i]
            for i in keep
        )
        for row in values
    ]
    table = model._meta.db_table
    top = await db.fetchval(f'SELECT coalesce(max(id), 0) FROM "{table}"')
    await db.copy_records_to_table(table, records=records, columns=[columns[i] for i in keep])
    if "id" not in columns:
        return []
    found = await db.fetch(f'SELECT id FROM "{table}" WHERE id > $1 ORDER BY id', top)
    return [row["id"] for row in found]


async def seed_large_organization(database_url: str) -> dict[str, Any]:
    """An organization of SIZE opportunities, with everything else in proportion; returns its
    admin's and a seller's session tokens."""
    rng = random.Random(14)
    now = datetime.now(UTC)
    db = await asyncpg.connect(database_url)
    try:
        org = await db.fetchval(
            "INSERT INTO organization (name, created_at, updated_at, inactive_client_after_days,"
            " currency) VALUES ('Large', now(), now(), 180, 'USD') RETURNING id"
        )
        stages = await copy(
            db,
            PipelineStage,
            [
                {"organization_id": org, "name": name, "position": i, "probability": p}
                for i, (name, p) in enumerate([("Open", 20), ("Won", 100), ("Lost", 0)])
            ],
        )
        await db.execute("UPDATE pipeline_stage SET is_won = true WHERE id = $1", stages[1])
        await db.execute("UPDATE pipeline_stage SET is_lost = true WHERE id = $1", stages[2])
        admin = (
            await copy(
                db,
                User,
                [
                    {
                        "organization_id": org,
                        "email": f"large-admin-{secrets.token_hex(4)}@plans.example",
                        "full_name": "Large Admin",
                        "password_hash": "!",
                        "role": "ADMIN",
                    }
                ],
            )
        )[0]
        people = await copy(
            db,
            User,
            [
                {
                    "organization_id": org,
                    "email": f"large-{i}-{secrets.token_hex(4)}@plans.example",
                    "full_name": f"Seller {i}",
                    "password_hash": "!",
                    "role": "SELLER",
                    "manager_id": admin,
                }
                for i in range(30)
            ],
        )
        users = [admin, *people]
        tokens = {}
        for name, user in (("admin", admin), ("seller", people[0])):
            token = f"crm_plans_{secrets.token_urlsafe(16)}"
            await copy(
                db,
                AuthToken,
                [
                    {
                        "user_id": user,
                        "token_hash": digest(token),
                        "expires_at": now + timedelta(days=1),
                    }
                ],
            )
            tokens[name] = token
        accounts = await copy(
            db,
            Account,
            [
                {"organization_id": org, "name": f"Account {i}", "owner_id": rng.choice(users)}
                for i in range(SIZE // 4)
            ],
        )
        contacts = await copy(
            db,
            Contact,
            [
                {
                    "organization_id": org,
                    "first_name": "Large",
                    "last_name": f"Contact {i}",
                    "email": f"c{i}@large.example",
                    "account_id": rng.choice(accounts),
                    "owner_id": rng.choice(users),
                }
                for i in range(SIZE)
            ],
        )
        await copy(db, ContactTag, [{"contact_id": c, "tag": "vip"} for c in contacts[::5]])
        await copy(
            db,
            LifecycleChange,
            [
                {
                    "contact_id": c,
                    "from_stage": "PROSPECT",
                    "to_stage": "POTENTIAL_CLIENT",
                    "cause": "ACTIVITY_COMPLETED",
                    "reason": "seeded",
                }
                for c in contacts[::10]
            ],
        )
        deals = await copy(
            db,
            Opportunity,
            [
                {
                    "organization_id": org,
                    "name": f"Deal {i}",
                    "account_id": rng.choice(accounts),
                    "amount_cents": rng.randrange(1, 10_000) * 100,
                    "stage_id": stages[0],
                    "probability": 20,
                    "expected_close_date": date(2027, 1, 1) + timedelta(days=i % 365),
                    "contact_id": rng.choice(contacts),
                    "owner_id": rng.choice(users),
                    "visibility": "PRIVATE" if i % 6 == 0 else "ORGANIZATION",
                }
                for i in range(SIZE)
            ],
        )
        leads = await copy(
            db,
            Lead,
            [
                {
                    "organization_id": org,
                    "title": f"Lead {i}",
                    "account_id": rng.choice(accounts),
                    "contact_id": rng.choice(contacts),
                    "owner_id": rng.choice(users),
                }
                for i in range(SIZE // 2)
            ],
        )
        for records, participant, follower in (
            (deals, OpportunityParticipant, OpportunityFollower),
            (leads, LeadParticipant, LeadFollower),
        ):
            await copy(
                db,
                participant,
                [
                    {"record_id": r, "contact_id": c, "role": "CFO"}
                    for r in records
                    for c in rng.sample(contacts, 2)
                ],
            )
            await copy(
                db,
                follower,
                [{"record_id": r, "user_id": u} for r in records for u in rng.sample(users, 3)],
            )
        await copy(
            db,
            Activity,
            [
                {
                    "organization_id": org,
                    "kind": "CALL",
                    "subject": f"Call {i}",
                    "scheduled_at": now + timedelta(hours=i),
                    "owner_id": rng.choice([admin, people[0]]),
                    "opportunity_id": deals[i],
                    "account_id": rng.choice(accounts),
                    "contact_id": rng.choice(contacts),
                }
                for i in range(SIZE // 2)
            ],
        )
        await copy(
            db,
            Comment,
            [
                {"organization_id": org, "opportunity_id": d, "author_id": admin, "body": "Hi"}
                for d in deals[: SIZE // 2]
            ],
        )
        events = await copy(
            db,
            Event,
            [
                {
                    "organization_id": org,
                    "record_type": "Opportunity",
                    "record_id": d,
                    "kind": "UPDATED",
                    "actor_id": admin,
                }
                for d in deals
            ],
        )
        await copy(
            db,
            Notification,
            [{"user_id": u, "event_id": e} for e in events for u in (admin, people[0])],
        )
        await copy(
            db,
            Message,
            [
                {
                    "organization_id": org,
                    "sender_id": rng.choice([admin, people[0]]),
                    "opportunity_id": deals[i],
                    "to_contact_id": contacts[i],
                    "to_email": "c@large.example",
                    "subject": "Hello",
                    "body": "Hello",
                }
                for i in range(SIZE // 4)
            ],
        )
        products = await copy(
            db,
            Product,
            [
                {
                    "organization_id": org,
                    "name": f"Product {i}",
                    "code": f"P{i}",
                    "unit_price_cents": 100,
                    "currency": "USD",
                }
                for i in range(200)
            ],
        )
        await copy(
            db,
            LineItem,
            [
                {
                    "opportunity_id": d,
                    "product_id": rng.choice(products),
                    "quantity": 1,
                    "unit_price_cents": 100,
                    "total_cents": 100,
                }
                for d in deals[::3]
            ],
        )
        segments = await copy(
            db,
            Segment,
            [
                {"organization_id": org, "name": f"Segment {i}", "owner_id": admin}
                for i in range(100)
            ],
        )
        campaigns = await copy(
            db,
            Campaign,
            [
                {
                    "organization_id": org,
                    "name": f"Campaign {i}",
                    "channel": "EMAIL",
                    "segment_id": segments[i],
                    "owner_id": admin,
                }
                for i in range(100)
            ],
        )
        await copy(
            db,
            CampaignMember,
            [{"campaign_id": campaigns[0], "contact_id": c} for c in contacts[:2000]],
        )
        await copy(
            db,
            Quota,
            [
                {
                    "organization_id": org,
                    "user_id": u,
                    "period_kind": "MONTH",
                    "period_start": date(2026, month, 1),
                    "amount_cents": 100,
                }
                for u in users
                for month in range(1, 13)
            ],
        )
        await copy(
            db,
            ApiKey,
            [
                {
                    "organization_id": org,
                    "name": f"Key {i}",
                    "prefix": secrets.token_hex(6),
                    "secret_hash": secrets.token_hex(32),
                    "created_by_id": admin,
                }
                for i in range(50)
            ],
        )
        await db.execute("VACUUM ANALYZE")
        return {"organization": org, "deal": deals[0], "seller_id": people[0], **tokens}
    finally:
        await db.close()


# Capturing and explaining the server's statements


@contextmanager
def statements_run() -> Iterator[list[tuple[str, list[Any]]]]:
    """The statements (with their parameters) the server runs meanwhile, the live hub's aside."""
    seen: list[tuple[str, list[Any]]] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            task = asyncio.current_task()
            if task is not None and task.get_name().startswith("hub "):
                return  # the live hub's timer, not the request
            if len(record.args or ()) != 2:  # type: ignore[arg-type]
                return
            sql, values = record.args  # type: ignore[misc]
            if isinstance(sql, str) and sql.lstrip().upper().startswith(("SELECT", "WITH")):
                seen.append((sql, list(values or [])))  # type: ignore[arg-type]

    logger = logging.getLogger("tortoise.db_client")
    handler, level = Capture(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def scans(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from scans(child)


def shape(plan: dict[str, Any]) -> list[Any]:
    """A plan's joins and the tables they read, nested: what must not change with the data.
    How a table is scanned is the other tests' business (a tiny table is best read whole),
    and a Memoize only caches a lookup's repeated keys."""
    children = [shape(child) for child in plan.get("Plans", [])]
    kind = plan["Node Type"]
    if kind == "Memoize":
        return children[0]
    if "Relation Name" in plan:
        return ["Scan", plan["Relation Name"], children]
    return [kind, children]


async def explain(db: asyncpg.Connection, sql: str, values: list[Any], *, seqscan: bool) -> dict:
    async with db.transaction():
        if not seqscan:
            await db.execute("SET LOCAL enable_seqscan = off")
        found = await db.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *values)
    return json.loads(found)[0]["Plan"]


def problems(plan: dict[str, Any], sizes: dict[str, float], *, forced: bool) -> list[str]:
    """What reads a tenant table other than through an index condition.

    Forced (sequential scans off, so that any index path wins): a sequential scan, which means
    no index serves the statement. Natural (as PostgreSQL runs it): a sequential scan, or an
    index walked without a condition (a global order, other tenants' rows filtered out), of a
    table holding more than a few thousand rows: the large organization's."""
    found = []
    for node in scans(plan):
        table = node.get("Relation Name")
        if table not in TENANT_TABLES:
            continue
        kind = node["Node Type"]
        if forced:
            wrong = kind == "Seq Scan"
        else:
            big = sizes.get(table, 0) > 3_000
            wrong = big and (kind == "Seq Scan" or (kind in SCANS and "Index Cond" not in node))
        if wrong:
            found.append(f"{kind} on {table} ({node.get('Index Name', 'no index')})")
    return found


async def run_and_explain(
    api: Api,
    db: asyncpg.Connection,
    query: str,
    variables: dict[str, Any],
    *,
    next_page: bool = True,
) -> tuple[list[tuple[str, list[Any], dict, dict]], dict[str, Any]]:
    """Run the query (and its next page), and explain every statement it ran."""
    with statements_run() as seen:
        data = await api.data(query, **variables)
        cursor = _end_cursor(data)
        if next_page and cursor is not None:
            await api.data(query, **{**variables, "after": cursor})
    explained = []
    for sql, values in seen:
        natural = await explain(db, sql, values, seqscan=True)
        forced = await explain(db, sql, values, seqscan=False)
        explained.append((sql, values, natural, forced))
    return explained, data


def _end_cursor(data: dict[str, Any]) -> str | None:
    for value in data.values():
        if isinstance(value, dict):
            info = value.get("pageInfo") or {}
            if info.get("endCursor"):
                return info["endCursor"]
    return None


@pytest.fixture(scope="module")
async def large(live_server) -> AsyncIterator[dict[str, Any]]:
    """The large organization, for this module's tests; gone after them."""
    seeded = await seed_large_organization(live_server.database_url)
    yield seeded
    db = await asyncpg.connect(live_server.database_url)
    try:
        await db.execute("DELETE FROM organization WHERE id = $1", seeded["organization"])
        await db.execute(
            "DELETE FROM sync_change WHERE organization_id = $1", seeded["organization"]
        )
        await db.execute("ANALYZE")
    finally:
        await db.close()


ADMINS_ONLY = {"changes", "api keys"}


def viewers(org: Org, large: dict[str, Any]) -> dict[str, tuple[Api, dict[str, Any]]]:
    """The four viewers and each one's variables: admins and sellers, small and large."""
    large_seller = relay.to_base64("User", large["seller_id"])
    return {
        "small admin": (org.admin.api, {"owner": org.seller.id}),
        "small seller": (org.seller.api, {"owner": org.seller.id}),
        "large admin": (org.admin.api.as_(large["admin"]), {"owner": large_seller}),
        "large seller": (org.admin.api.as_(large["seller"]), {"owner": large_seller}),
    }


async def test_every_list_reads_its_tenant_through_indexes(live_server, org, large):
    """A small organization's statements read it through indexes, next to the large one; and
    every statement, of either organization, has an index to read through."""
    await seed_pipeline(org.seller.id, 20)
    db = await asyncpg.connect(live_server.database_url)
    try:
        sizes = {
            row["relname"]: row["reltuples"]
            for row in await db.fetch("SELECT relname, reltuples FROM pg_class WHERE relkind='r'")
        }
        found: list[str] = []
        for viewer, (api, variables) in viewers(org, large).items():
            for name, query in LISTS.items():
                if name in ADMINS_ONLY and "seller" in viewer:
                    continue
                wanted = {k: v for k, v in variables.items() if f"${k}" in query}
                explained, _ = await run_and_explain(api, db, query, wanted)
                assert explained, f"{name}: no statement seen"
                for sql, _, natural, forced in explained:
                    # The large organization may read its own rows as it likes best.
                    own = (
                        [] if viewer.startswith("large") else problems(natural, sizes, forced=False)
                    )
                    for problem in own + problems(forced, sizes, forced=True):
                        found.append(f"{viewer}, {name}: {problem}\n    {sql[:300]}")
        assert not found, "\n".join(sorted(set(found)))
    finally:
        await db.close()


async def test_a_projection_plans_alike_for_a_small_and_a_large_tenant(live_server, org, large):
    """The pipeline page's projection statement: the same plan shape for 20 opportunities and
    for thousands, as an admin and as a seller."""
    await seed_pipeline(org.seller.id, 20)
    query = LISTS["opportunities AMOUNT"]
    db = await asyncpg.connect(live_server.database_url)
    try:
        shapes: dict[str, list[Any]] = {}
        for viewer, (api, _) in viewers(org, large).items():
            explained, data = await run_and_explain(api, db, query, {}, next_page=False)
            assert len(data["opportunities"]["nodes"]) == 20
            projected = [e for e in explained if "json_build_array" in e[0]]
            assert projected, f"{viewer}: no projection statement"
            shapes[viewer] = [shape(natural) for _, _, natural, _ in projected]
        assert shapes["small admin"] == shapes["large admin"]
        assert shapes["small seller"] == shapes["large seller"]
    finally:
        await db.close()


async def test_the_detail_view_and_the_live_feeds_read_through_indexes(live_server, org, large):
    db = await asyncpg.connect(live_server.database_url)
    try:
        sizes = {
            row["relname"]: row["reltuples"]
            for row in await db.fetch("SELECT relname, reltuples FROM pg_class WHERE relkind='r'")
        }
        small_deal = (await create_opportunity(org.seller))["id"]
        found: list[str] = []
        cases = [
            (org.seller.api, small_deal),
            (org.admin.api.as_(large["admin"]), relay.to_base64("Opportunity", large["deal"])),
        ]
        for small, (api, record) in zip((True, False), cases, strict=True):
            explained, _ = await run_and_explain(api, db, DETAIL, {"id": record})
            for sql, _, natural, forced in explained:
                own = problems(natural, sizes, forced=False) if small else []
                for problem in own + problems(forced, sizes, forced=True):
                    found.append(f"detail: {problem}\n    {sql[:300]}")
        # The live hub's read of the organizations' logs, each from its own position.
        own_organization = (await User.get(id=pk(org.admin.id))).organization_id
        with statements_run() as seen:
            await read_logs({large["organization"]: 0, own_organization: 0}, 500)
        for sql, values in seen:
            forced = await explain(db, sql, values, seqscan=False)
            found += [f"hub: {problem}" for problem in problems(forced, sizes, forced=True)]
        assert not found, "\n".join(sorted(set(found)))
    finally:
        await db.close()
