"""The baseline the graph is measured against: the pipeline page straight from asyncpg to JSON.

Same rows and fields as the benchmark's GraphQL pipeline query (50 opportunities by amount, with
their account, primary contact, participants with their contacts, followers, owner and stage),
fetched with one statement per relation like the graph's loaders, encoded with orjson. No
GraphQL, no ORM, no permission checks: the physical floor on this machine.

    DATABASE_URL=postgres://... ORGANIZATION_ID=1 PORT=8099 python bench/raw_server.py
"""

from __future__ import annotations

import base64
import contextlib
import os
from collections import defaultdict
from collections.abc import AsyncIterator

import asyncpg
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

POOL: asyncpg.Pool | None = None


def gid(type_name: str, pk: int) -> str:
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


async def pipeline(request: Request) -> Response:
    assert POOL is not None
    organization_id = int(os.environ["ORGANIZATION_ID"])
    viewer_id = int(request.query_params.get("viewer", "0"))
    first = int(request.query_params.get("first", "50"))
    async with POOL.acquire() as db:
        deals = await db.fetch(
            "SELECT id, name, amount_cents, currency, probability, expected_close_date, status,"
            " account_id, contact_id, owner_id, stage_id FROM opportunity"
            " WHERE organization_id = $1 AND deleted_at IS NULL"
            " ORDER BY amount_cents DESC, id DESC LIMIT $2",
            organization_id,
            first,
        )
        ids = [d["id"] for d in deals]
        links = await db.fetch(
            "SELECT record_id, contact_id, role FROM opportunity_participant"
            " WHERE record_id = ANY($1) ORDER BY id",
            ids,
        )
        follows = await db.fetch(
            "SELECT record_id, user_id FROM opportunity_follower WHERE record_id = ANY($1)"
            " ORDER BY id",
            ids,
        )
        accounts = {
            r["id"]: r
            for r in await db.fetch(
                "SELECT id, name, industry FROM account WHERE id = ANY($1)",
                list({d["account_id"] for d in deals}),
            )
        }
        contact_ids = {d["contact_id"] for d in deals} | {link["contact_id"] for link in links}
        contacts = {
            r["id"]: r
            for r in await db.fetch(
                "SELECT id, first_name, last_name, email FROM contact WHERE id = ANY($1)",
                list(contact_ids),
            )
        }
        user_ids = {d["owner_id"] for d in deals} | {f["user_id"] for f in follows}
        users = {
            r["id"]: r
            for r in await db.fetch(
                "SELECT id, full_name FROM crm_user WHERE id = ANY($1)", list(user_ids)
            )
        }
        stages = {
            r["id"]: r
            for r in await db.fetch(
                "SELECT id, name, probability FROM pipeline_stage WHERE id = ANY($1)",
                list({d["stage_id"] for d in deals}),
            )
        }
    participants = defaultdict(list)
    for link in links:
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
                "amount": f"{d['amount_cents'] / 100:.2f}",
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
    body = {"data": {"opportunities": {"edges": [{"node": n} for n in nodes]}}}
    return Response(orjson.dumps(body), media_type="application/json")


@contextlib.asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    global POOL
    POOL = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=2, max_size=10)
    try:
        yield
    finally:
        await POOL.close()


app = Starlette(routes=[Route("/pipeline", pipeline)], lifespan=lifespan)

if __name__ == "__main__":
    uvicorn.run(
        app, host="127.0.0.1", port=int(os.environ.get("PORT", "8099")), log_level="warning"
    )
