"""The baseline the graph is measured against: the pipeline page straight from asyncpg to JSON.

Same rows and fields as the benchmarks' GraphQL pipeline query (a page of opportunities by amount,
with their total count, account, primary contact, participants with their contacts, followers,
owner and stage), for the same viewer: the organization is the viewer's, and a viewer who is not
an admin sees the same rows as through the API (bench/suite.py and bench/tenants.py assert that
the answers are equal). One statement per step, like the graph's loaders: the viewer, the
viewer's team (not for admins), the page, its count, then each relation; encoded with orjson.
No GraphQL, no ORM, no authentication, no pool reset: the physical floor on this machine.

    DATABASE_URL=postgres://... PORT=8099 python bench/raw_server.py
    GET /pipeline?viewer=<user id>&first=50[&after=<cursor of the AMOUNT order>]

The count is the API's: exact up to RAW_COUNT_CAP (default 10,000, the API's COUNT_LIMIT), read
as `SELECT count(*) FROM (SELECT 1 ... LIMIT n + 1)`, and that bound beyond; RAW_COUNT_CAP=0
counts every row (`count(*)` with the page's WHERE).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

POOL: asyncpg.Pool | None = None
COUNT_CAP = int(os.environ.get("RAW_COUNT_CAP", "10000"))  # 0: exact counts

# Runs one statement and returns its rows: a connection's `fetch`, or one that also explains.
Fetch = Callable[..., Awaitable[list[Any]]]


def gid(type_name: str, pk: int) -> str:
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


def amount_cursor(amount_cents: int, pk: int) -> str:
    """The API's cursor of a row in the AMOUNT order (resolvers/pagination.py's format)."""
    payload = json.dumps(["AMOUNT", amount_cents, pk], separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def parse_amount_cursor(cursor: str) -> tuple[int, int]:
    name, amount_cents, pk = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    if name != "AMOUNT":
        raise ValueError("not a cursor of the AMOUNT order")
    return int(amount_cents), int(pk)


def money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


@dataclass(frozen=True)
class Scope:
    """Which opportunities a viewer reads: the SQL condition (on `opportunity`) and its values,
    from $1 on."""

    organization_id: int
    where: str
    values: tuple[Any, ...]


async def scope(fetch: Fetch, viewer_id: int) -> Scope:
    """The viewer's organization and read rule: everything for an admin; otherwise what is not
    PRIVATE, and what the viewer, one of the viewer's reports (direct or not) owns or the viewer
    follows (resolvers/permissions.py's rule)."""
    (viewer,) = await fetch(
        "SELECT organization_id, role FROM crm_user WHERE id = $1 AND is_active", viewer_id
    )
    organization_id = viewer["organization_id"]
    where = "organization_id = $1 AND deleted_at IS NULL"
    if viewer["role"] == "ADMIN":
        return Scope(organization_id, where, (organization_id,))
    reports: dict[int, list[int]] = defaultdict(list)
    for row in await fetch(
        "SELECT id, manager_id FROM crm_user WHERE organization_id = $1", organization_id
    ):
        if row["manager_id"] is not None:
            reports[row["manager_id"]].append(row["id"])
    team: set[int] = set()
    pending = list(reports[viewer_id])
    while pending:
        member = pending.pop()
        if member not in team and member != viewer_id:
            team.add(member)
            pending.extend(reports[member])
    where += (
        " AND (visibility = 'ORGANIZATION' OR owner_id = ANY($2)"
        " OR id IN (SELECT record_id FROM opportunity_follower WHERE user_id = $3))"
    )
    return Scope(organization_id, where, (organization_id, [viewer_id, *sorted(team)], viewer_id))


def count_statement(scope: Scope, cap: int = COUNT_CAP) -> str:
    if cap:
        return (
            f"SELECT count(*) FROM (SELECT 1 FROM opportunity WHERE {scope.where}"
            f" LIMIT {cap + 1}) AS s"
        )
    return f"SELECT count(*) FROM opportunity WHERE {scope.where}"


async def last_page_cursor(fetch: Fetch, viewer_id: int, size: int) -> str | None:
    """The cursor after which the viewer's last `size` opportunities by amount (descending) come:
    that of the (size + 1)-th from the end. None when there are no more than `size`."""
    seen = await scope(fetch, viewer_id)
    rows = await fetch(
        f"SELECT amount_cents, id FROM opportunity WHERE {seen.where}"
        f" ORDER BY amount_cents, id LIMIT 1 OFFSET {int(size)}",
        *seen.values,
    )
    return amount_cursor(rows[0]["amount_cents"], rows[0]["id"]) if rows else None


async def pipeline_data(
    fetch: Fetch, viewer_id: int, first: int, after: str | None, cap: int = COUNT_CAP
) -> dict[str, Any]:
    """The `data` of the pipeline query for this viewer."""
    seen = await scope(fetch, viewer_id)
    organization_id = seen.organization_id
    values = list(seen.values)
    page_where = seen.where
    if after:
        amount_cents, pk = parse_amount_cursor(after)
        a, b = len(values) + 1, len(values) + 2
        page_where += f" AND amount_cents <= ${a} AND (amount_cents < ${a} OR id < ${b})"
        values += [amount_cents, pk]
    deals = await fetch(
        "SELECT id, name, amount_cents, currency, probability, expected_close_date, status,"
        " account_id, contact_id, owner_id, stage_id FROM opportunity"
        f" WHERE {page_where} ORDER BY amount_cents DESC, id DESC LIMIT ${len(values) + 1}",
        *values,
        first + 1,  # one more, as the API reads, to know whether a next page exists
    )
    deals = deals[:first]
    (total,) = await fetch(count_statement(seen, cap), *seen.values)
    ids = [d["id"] for d in deals]
    links = await fetch(
        "SELECT record_id, contact_id, role FROM opportunity_participant"
        " WHERE record_id = ANY($1) ORDER BY id",
        ids,
    )
    follows = await fetch(
        "SELECT record_id, user_id FROM opportunity_follower WHERE record_id = ANY($1) ORDER BY id",
        ids,
    )
    accounts = {
        r["id"]: r
        for r in await fetch(
            "SELECT id, name, industry FROM account"
            " WHERE id = ANY($1) AND organization_id = $2 AND deleted_at IS NULL",
            list({d["account_id"] for d in deals}),
            organization_id,
        )
    }
    contact_ids = {d["contact_id"] for d in deals} | {link["contact_id"] for link in links}
    contacts = {
        r["id"]: r
        for r in await fetch(
            "SELECT id, first_name, last_name, email FROM contact"
            " WHERE id = ANY($1) AND organization_id = $2 AND deleted_at IS NULL",
            list(contact_ids),
            organization_id,
        )
    }
    user_ids = {d["owner_id"] for d in deals} | {f["user_id"] for f in follows}
    users = {
        r["id"]: r
        for r in await fetch(
            "SELECT id, full_name FROM crm_user WHERE id = ANY($1) AND organization_id = $2",
            list(user_ids),
            organization_id,
        )
    }
    stages = {
        r["id"]: r
        for r in await fetch(
            "SELECT id, name, probability FROM pipeline_stage"
            " WHERE id = ANY($1) AND organization_id = $2",
            list({d["stage_id"] for d in deals}),
            organization_id,
        )
    }
    participants = defaultdict(list)
    for link in links:
        if link["contact_id"] in contacts:  # participants of deleted contacts are left out
            participants[link["record_id"]].append(link)
    followers = defaultdict(list)
    for follow in follows:
        followers[follow["record_id"]].append(follow["user_id"])

    def contact(pk: int | None) -> dict | None:
        row = contacts.get(pk) if pk else None
        if row is None:
            return None
        full = f"{row['first_name']} {row['last_name']}"
        return {"id": gid("Contact", row["id"]), "fullName": full, "email": row["email"]}

    def user(pk: int) -> dict:
        return {"id": gid("User", pk), "fullName": users[pk]["full_name"]}

    nodes = []
    for d in deals:
        account = accounts[d["account_id"]]
        stage = stages[d["stage_id"]]
        nodes.append(
            {
                "id": gid("Opportunity", d["id"]),
                "name": d["name"],
                "amount": money(d["amount_cents"]),
                "currency": d["currency"],
                "probability": d["probability"],
                "expectedCloseDate": d["expected_close_date"].isoformat(),
                "status": d["status"],
                "isFollowedByViewer": viewer_id in followers[d["id"]],
                "account": {
                    "id": gid("Account", account["id"]),
                    "name": account["name"],
                    "industry": account["industry"],
                },
                "contact": contact(d["contact_id"]),
                "participants": [
                    {"role": p["role"], "contact": contact(p["contact_id"])}
                    for p in participants[d["id"]]
                ],
                "followers": [user(pk) for pk in followers[d["id"]]],
                "owner": user(d["owner_id"]),
                "stage": {
                    "id": gid("PipelineStage", stage["id"]),
                    "name": stage["name"],
                    "probability": stage["probability"],
                },
            }
        )
    counted = min(total[0], cap) if cap else total[0]
    return {"opportunities": {"totalCount": counted, "edges": [{"node": n} for n in nodes]}}


async def pipeline(request: Request) -> Response:
    assert POOL is not None
    params = request.query_params
    async with POOL.acquire() as db:
        data = await pipeline_data(
            db.fetch, int(params["viewer"]), int(params.get("first", "50")), params.get("after")
        )
    return Response(orjson.dumps({"data": data}), media_type="application/json")


async def healthz(_: Request) -> Response:
    return Response(b"ok")


async def _no_reset(connection: object) -> None:
    """No reset query when a connection goes back to the pool (as config.py does for the API)."""


@contextlib.asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    global POOL
    POOL = await asyncpg.create_pool(
        os.environ["DATABASE_URL"], min_size=2, max_size=10, reset=_no_reset
    )
    try:
        yield
    finally:
        await POOL.close()


app = Starlette(
    routes=[Route("/pipeline", pipeline), Route("/healthz", healthz)], lifespan=lifespan
)

if __name__ == "__main__":
    uvicorn.run(
        app, host="127.0.0.1", port=int(os.environ.get("PORT", "8099")), log_level="warning"
    )
