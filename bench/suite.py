"""The benchmark suite: the graph beside the physical limit of this machine, in one run.

On a throwaway PostgreSQL database seeded with a realistic data set (bench/seed.py), with one
`server.py` process and, as the baseline, one raw asyncpg + orjson process (bench/raw_server.py),
this client process measures:

1. pipeline: the frontend's pipeline page (50 opportunities with account, primary contact,
   participants and their contacts, followers, owner and stage) at concurrency 10, requests per
   second and p50/p99; and one client alone, p50. Beside it, the raw endpoint's.
2. deep paging: the last page of 100,000 contacts (10,000 in quick mode) against the first.
3. export: rows per second of GET /export/contacts.ndjson against an asyncpg cursor reading the
   same rows.
4. embedded default: the pipeline page on SQLite (seeded the same way), one client.

Each figure is the median of several rounds with its spread (min-max). Fan-out and memory per
subscription are bench/fanout.py's; SQL statements per operation are pinned by the tests.

    .venv/bin/python bench/suite.py            # full: 20,000 opportunities, 100,000 paging rows
    .venv/bin/python bench/suite.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.seed import Size, seed_organization, seed_paging, sqlite_value  # noqa: E402
from manage import migrate  # noqa: E402
from tests.processes import ServerProcess, free_port  # noqa: E402

ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PASSWORD = "bench-password-123"
PIPELINE = """query Pipeline($first: Int!, $after: String) {
  opportunities(first: $first, after: $after, orderBy: {field: AMOUNT, direction: DESC}) {
    totalCount
    edges { node {
      id name amount currency probability expectedCloseDate status isFollowedByViewer
      account { id name industry }
      contact { id fullName email }
      participants { role contact { id fullName email } }
      followers { id fullName }
      owner { id fullName }
      stage { id name probability }
    } }
  }
}"""
LOGIN = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token } }"
# No rate limits (the user's nor the organization's: 10 clients of one organization append
# faster than its 100 a second), quiet logs, no polling of the event log meanwhile.
SERVER_ENV = {
    "RATE_LIMIT_PER_SECOND": "0",
    "RATE_LIMIT_ORG_PER_SECOND": "0",
    "LOG_LEVEL": "WARNING",
    "EVENT_POLL_SECONDS": "60",
}
TABLES = [
    "crm_user",
    "account",
    "contact",
    "opportunity",
    "opportunity_participant",
    "opportunity_follower",
    "activity",
    "comment",
]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# Seeding


async def sign_up(base_url: str, name: str) -> tuple[str, int]:
    """A new organization through the API: (its admin's token, the admin's id)."""
    mutation = """mutation($input: SignUpInput!) { signUp(input: $input) { token user { id } } }"""
    email = f"admin-{uuid.uuid4().hex[:8]}@bench.example"
    values = {
        "organizationName": name,
        "fullName": "Bench Admin",
        "email": email,
        "password": PASSWORD,
    }
    async with httpx.AsyncClient(base_url=base_url, timeout=60, trust_env=False) as http:
        body = (
            await http.post("/graphql", json={"query": mutation, "variables": {"input": values}})
        ).json()
    data = body["data"]["signUp"]
    admin_id = int(base64.b64decode(data["user"]["id"]).decode().split(":")[1])
    return data["token"], admin_id


async def pg_seed(
    db_url: str,
    admin_id: int,
    size: Size,
    paging_rows: int,
    paging_admin: int,
    password_hash: str,
) -> int:
    """Seed the admin's organization, and the paging organization; the organization id."""
    db = await asyncpg.connect(db_url)
    try:
        organization_id = await db.fetchval(
            "SELECT organization_id FROM crm_user WHERE id = $1", admin_id
        )
        paging_org = await db.fetchval(
            "SELECT organization_id FROM crm_user WHERE id = $1", paging_admin
        )
        stages = [
            r["id"]
            for r in await db.fetch(
                "SELECT id FROM pipeline_stage"
                " WHERE organization_id = $1 AND NOT is_won AND NOT is_lost",
                organization_id,
            )
        ]
        start = {t: await db.fetchval(f"SELECT coalesce(max(id), 0) + 1 FROM {t}") for t in TABLES}
        await db.execute("SET session_replication_role = replica")  # no change-log triggers

        async def write(table: str, columns: list[str], rows: list[tuple]) -> None:
            await db.copy_records_to_table(table, records=rows, columns=columns)

        await seed_organization(
            write, organization_id, admin_id, stages, start, size, random.Random(7), password_hash
        )
        top = await db.fetchval("SELECT coalesce(max(id), 0) + 1 FROM contact")
        await seed_paging(write, paging_org, paging_admin, top, paging_rows)
        for table in TABLES:
            await db.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" (SELECT max(id) FROM {table}))"
            )
        await db.execute("ANALYZE")
        return organization_id
    finally:
        await db.close()


async def sqlite_seed(path: str, admin_id: int, size: Size, password_hash: str) -> None:
    db = sqlite3.connect(path)
    try:
        organization_id = db.execute(
            "SELECT organization_id FROM crm_user WHERE id = ?", (admin_id,)
        ).fetchone()[0]
        stages = [
            r[0]
            for r in db.execute(
                "SELECT id FROM pipeline_stage"
                " WHERE organization_id = ? AND NOT is_won AND NOT is_lost",
                (organization_id,),
            )
        ]
        start = {
            t: db.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {t}").fetchone()[0] for t in TABLES
        }

        async def write(table: str, columns: list[str], rows: list[tuple]) -> None:
            marks = ", ".join("?" for _ in columns)
            names = ", ".join(f'"{c}"' for c in columns)
            db.executemany(
                f'INSERT INTO "{table}" ({names}) VALUES ({marks})',
                [tuple(sqlite_value(v) for v in row) for row in rows],
            )

        await seed_organization(
            write, organization_id, admin_id, stages, start, size, random.Random(7), password_hash
        )
        db.commit()
        db.execute("ANALYZE")
    finally:
        db.close()


# Measuring


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    median = statistics.median(values)
    return f"{median:,.1f} ({min(values):,.1f}-{max(values):,.1f})"


async def load(
    call: Callable[[], Awaitable[None]], concurrency: int, seconds: float
) -> tuple[float, list[float]]:
    """Requests per second and latencies (ms) of `concurrency` loops calling for `seconds`."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - began) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return len(latencies) / (time.perf_counter() - began), latencies


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def pipeline_figures(
    calls: dict[str, Callable[[], Awaitable[None]]], rounds: int, seconds: float
) -> dict[str, dict[str, list[float]]]:
    """Each round measures every server in turn (10 clients, then one), so that a ratio
    compares measurements minutes apart at most: this machine's speed drifts between runs."""
    figures: dict[str, dict[str, list[float]]] = {
        name: {"rps": [], "p50": [], "p99": [], "single_p50": []} for name in calls
    }
    for call in calls.values():
        for _ in range(5):
            await call()  # warm up
    for round_ in range(rounds):
        for name, call in calls.items():
            log(f"pipeline: {name}, round {round_ + 1} of {rounds}")
            rps, latencies = await load(call, 10, seconds)
            figures[name]["rps"].append(rps)
            figures[name]["p50"].append(percentile(latencies, 0.5))
            figures[name]["p99"].append(percentile(latencies, 0.99))
            _, alone = await load(call, 1, seconds / 2)
            figures[name]["single_p50"].append(percentile(alone, 0.5))
    return figures


def graphql_call(
    http: httpx.AsyncClient, token: str, query: str, variables: dict
) -> Callable[[], Awaitable[None]]:
    headers = {"authorization": f"Bearer {token}"}

    async def call() -> None:
        response = await http.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        body = response.json()
        assert response.status_code == 200 and not body.get("errors"), body

    return call


async def paging_figures(
    http: httpx.AsyncClient, token: str, db_url: str, paging_admin: int, rows: int, rounds: int
) -> dict[str, list[float]]:
    from resolvers.pagination import id_cursor

    db = await asyncpg.connect(db_url)
    try:
        org = await db.fetchval("SELECT organization_id FROM crm_user WHERE id = $1", paging_admin)
        ids = await db.fetch(
            "SELECT id FROM contact WHERE organization_id = $1 ORDER BY id DESC LIMIT 101", org
        )
    finally:
        await db.close()
    before_last = ids[100]["id"]
    query = """query($after: String) {
      contacts(first: 100, after: $after, orderBy: {field: CREATED_AT}) {
        edges { node { id firstName lastName } }
      }
    }"""
    first_page = graphql_call(http, token, query, {"after": None})
    last_page = graphql_call(http, token, query, {"after": id_cursor(before_last)})
    figures: dict[str, list[float]] = {"first": [], "last": []}
    for call in (first_page, last_page):
        await call()
    for _ in range(rounds):
        for name, call in (("first", first_page), ("last", last_page)):
            samples = []
            for _ in range(10):
                began = time.perf_counter()
                await call()
                samples.append((time.perf_counter() - began) * 1000)
            figures[name].append(statistics.median(samples))
    return figures


async def export_figures(
    http: httpx.AsyncClient, key: str, db_url: str, organization_id: int, rounds: int
) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"export": [], "cursor": []}
    for _ in range(rounds):
        began = time.perf_counter()
        lines = 0
        async with http.stream(
            "GET", "/export/contacts.ndjson", headers={"authorization": f"Bearer {key}"}
        ) as response:
            async for chunk in response.aiter_bytes():
                lines += chunk.count(b"\n")
        figures["export"].append(lines / (time.perf_counter() - began))
        db = await asyncpg.connect(db_url)
        try:
            began = time.perf_counter()
            count = 0
            async with db.transaction(isolation="repeatable_read", readonly=True):
                async for _ in db.cursor(
                    "SELECT * FROM contact"
                    " WHERE organization_id = $1 AND deleted_at IS NULL ORDER BY id",
                    organization_id,
                    prefetch=500,
                ):
                    count += 1
            figures["cursor"].append(count / (time.perf_counter() - began))
        finally:
            await db.close()
    return figures


# The run


async def log_in(http: httpx.AsyncClient, email: str) -> str:
    body = (
        await http.post("/graphql", json={"query": LOGIN, "variables": {"e": email, "p": PASSWORD}})
    ).json()
    assert not body.get("errors"), body
    return body["data"]["login"]["token"]


async def pipeline_viewer(
    http: httpx.AsyncClient, db_url: str, admin_id: int, admin_token: str, as_admin: bool
) -> tuple[int, str]:
    """Who reads the pipeline page, and their token: the admin, or (by default) the first
    seller of the admin's organization, whose visibility rules apply."""
    if as_admin:
        return admin_id, admin_token
    if db_url.startswith("sqlite://"):
        db = sqlite3.connect(db_url.removeprefix("sqlite://"))
        try:
            seller, email = db.execute(
                "SELECT id, email FROM crm_user WHERE role = 'SELLER' AND organization_id ="
                " (SELECT organization_id FROM crm_user WHERE id = ?) ORDER BY id LIMIT 1",
                (admin_id,),
            ).fetchone()
        finally:
            db.close()
    else:
        pg = await asyncpg.connect(db_url)
        try:
            seller, email = await pg.fetchrow(
                "SELECT id, email FROM crm_user WHERE role = 'SELLER' AND organization_id ="
                " (SELECT organization_id FROM crm_user WHERE id = $1) ORDER BY id LIMIT 1",
                admin_id,
            )
        finally:
            await pg.close()
    return seller, await log_in(http, email)


def difference(a: Any, b: Any, path: str = "data") -> str | None:
    """Where two JSON values first differ (None: equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if key not in a or key not in b:
                return f"{path}.{key}: only in {'the first' if key in a else 'the second'}"
            found = difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items against {len(b)}"
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            found = difference(x, y, f"{path}[{index}]")
            if found:
                return found
        return None
    return None if a == b else f"{path}: {a!r} against {b!r}"


async def main(args: argparse.Namespace) -> int:
    from config import Settings
    from resolvers.auth import hash_password

    size = Size.of(args.quick)
    paging_rows = 10_000 if args.quick else 100_000
    rounds, seconds = (2, 2.0) if args.quick else (5, 5.0)
    name = f"crm_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    db_url = f"postgres://postgres@127.0.0.1:5432/{name}"
    results: dict[str, Any] = {}
    raw: subprocess.Popen[bytes] | None = None
    # The seeded users' (the argon2 settings of the environment, the servers' too).
    password_hash = await hash_password(Settings.from_env(), PASSWORD)
    try:
        await migrate(db_url)
        async with ServerProcess(
            {"DATABASE_URL": db_url, **SERVER_ENV}, startup_timeout=60
        ) as server:
            token, admin_id = await sign_up(server.base_url, "Bench")
            _, paging_admin = await sign_up(server.base_url, "Paging")
            log(f"seeding PostgreSQL: {size}, {paging_rows:,} paging rows")
            organization_id = await pg_seed(
                db_url, admin_id, size, paging_rows, paging_admin, password_hash
            )
            raw_port = free_port()
            raw = subprocess.Popen(  # noqa: ASYNC220  (started once, not waited on)
                [sys.executable, str(ROOT / "bench" / "raw_server.py")],
                env={**os.environ, "DATABASE_URL": db_url, "PORT": str(raw_port)},
            )
            async with httpx.AsyncClient(
                base_url=server.base_url,
                timeout=120,
                trust_env=False,
                limits=httpx.Limits(max_connections=20),
            ) as http:
                key = (
                    await http.post(
                        "/graphql",
                        json={
                            "query": 'mutation { createApiKey(input: {name: "bench"}) { secret } }'
                        },
                        headers={"authorization": f"Bearer {token}"},
                    )
                ).json()["data"]["createApiKey"]["secret"]
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{raw_port}",
                    timeout=60,
                    trust_env=False,
                    limits=httpx.Limits(max_connections=20),
                ) as raw_http:
                    for _ in range(50):
                        try:
                            await raw_http.get("/healthz")
                            break
                        except httpx.TransportError:
                            await asyncio.sleep(0.2)
                    viewer_id, viewer_token = await pipeline_viewer(
                        http, db_url, admin_id, token, args.admin
                    )
                    params = {"viewer": viewer_id, "first": 50}

                    async def raw_call() -> None:
                        response = await raw_http.get("/pipeline", params=params)
                        assert response.status_code == 200

                    # The baseline does the same work: the same answer, count and rows included.
                    graph_body = (
                        await http.post(
                            "/graphql",
                            json={"query": PIPELINE, "variables": {"first": 50}},
                            headers={"authorization": f"Bearer {viewer_token}"},
                        )
                    ).json()
                    raw_body = (await raw_http.get("/pipeline", params=params)).json()
                    diff = difference(graph_body.get("data"), raw_body["data"])
                    assert diff is None, f"the graph and the raw baseline differ: {diff}"
                    results["total_count"] = raw_body["data"]["opportunities"]["totalCount"]
                    graph_call = graphql_call(http, viewer_token, PIPELINE, {"first": 50})
                    results.update(
                        await pipeline_figures(
                            {"graph": graph_call, "raw": raw_call}, rounds, seconds
                        )
                    )
                log("deep paging")
                async with httpx.AsyncClient(
                    base_url=server.base_url, timeout=60, trust_env=False
                ) as paging_http:
                    login = (
                        await paging_http.post(
                            "/graphql",
                            json={
                                "query": LOGIN,
                                "variables": {
                                    "e": await _email(db_url, paging_admin),
                                    "p": PASSWORD,
                                },
                            },
                        )
                    ).json()
                    paging_token = login["data"]["login"]["token"]
                    results["paging"] = await paging_figures(
                        paging_http, paging_token, db_url, paging_admin, paging_rows, rounds
                    )
                log("export")
                results["export"] = await export_figures(http, key, db_url, organization_id, rounds)
        results["sqlite"] = await sqlite_pipeline(size, rounds, seconds, password_hash, args.admin)
    finally:
        if raw is not None:
            raw.terminate()
            raw.wait(10)
        admin = await asyncpg.connect(ADMIN_URL)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    report(results, size, paging_rows, args)
    return 0


async def _email(db_url: str, user_id: int) -> str:
    db = await asyncpg.connect(db_url)
    try:
        return await db.fetchval("SELECT email FROM crm_user WHERE id = $1", user_id)
    finally:
        await db.close()


async def sqlite_pipeline(
    size: Size, rounds: int, seconds: float, password_hash: str, as_admin: bool
) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "crm.sqlite3")
        url = f"sqlite://{path}"
        await migrate(url)
        async with ServerProcess({"DATABASE_URL": url, **SERVER_ENV}, startup_timeout=60) as server:
            token, admin_id = await sign_up(server.base_url, "Embedded")
            log(f"seeding SQLite: {size}")
            await sqlite_seed(path, admin_id, size, password_hash)
            async with httpx.AsyncClient(
                base_url=server.base_url, timeout=120, trust_env=False
            ) as http:
                _, viewer_token = await pipeline_viewer(http, url, admin_id, token, as_admin)
                call = graphql_call(http, viewer_token, PIPELINE, {"first": 50})
                for _ in range(3):
                    await call()
                figures: dict[str, list[float]] = {"single_p50": [], "rps": []}
                for _ in range(rounds):
                    rps, alone = await load(call, 1, seconds)
                    figures["single_p50"].append(percentile(alone, 0.5))
                    figures["rps"].append(rps)
                return figures


def report(results: dict[str, Any], size: Size, paging_rows: int, args: argparse.Namespace) -> None:
    graph, raw = results["graph"], results["raw"]
    versions = ", ".join(
        f"{package} {metadata.version(package)}"
        for package in ("strawberry-graphql", "tortoise-orm", "asyncpg", "uvicorn")
    )
    print(
        f"\nmachine: {platform.platform()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}"
    )
    print(f"versions: {versions}")
    print(
        f"data: {size.opportunities:,} opportunities, {size.accounts:,} accounts,"
        f" {size.contacts:,} contacts, {size.users} users, 17% of the opportunities PRIVATE;"
        " medians (min-max) over the rounds"
    )
    viewer = "the admin" if args.admin else "a seller (visibility rules on)"
    print(
        f"pipeline: 50 opportunities and totalCount ({results['total_count']:,}), read by"
        f" {viewer}; the raw baseline gives the same answer (checked)\n"
    )
    ratio = statistics.median(graph["rps"]) / statistics.median(raw["rps"])
    single = statistics.median(graph["single_p50"]) / statistics.median(raw["single_p50"])
    rows = [
        (
            "pipeline, 10 clients: requests/s",
            spread(graph["rps"]),
            spread(raw["rps"]),
            f"{ratio:.2f} (goal >= 0.5)",
        ),
        ("pipeline, 10 clients: p50 ms", spread(graph["p50"]), spread(raw["p50"]), ""),
        ("pipeline, 10 clients: p99 ms", spread(graph["p99"]), spread(raw["p99"]), ""),
        (
            "pipeline, 1 client: p50 ms",
            spread(graph["single_p50"]),
            spread(raw["single_p50"]),
            f"{single:.2f}x (goal <= 2)",
        ),
    ]
    paging = results["paging"]
    depth = statistics.median(paging["last"]) / statistics.median(paging["first"])
    rows.append(
        (
            f"paging {paging_rows:,} rows: last page ms",
            spread(paging["last"]),
            spread(paging["first"]) + " (first)",
            f"{depth:.2f}x (goal <= 1.5)",
        )
    )
    export = results["export"]
    share = statistics.median(export["export"]) / statistics.median(export["cursor"])
    rows.append(
        (
            "export: rows/s",
            spread(export["export"]),
            spread(export["cursor"]) + " (cursor)",
            f"{share:.2f} (goal >= 0.3)",
        )
    )
    sqlite = results["sqlite"]
    rows.append(
        (
            "SQLite pipeline, 1 client: p50 ms",
            spread(sqlite["single_p50"]),
            "-",
            f"{spread(sqlite['rps'])} req/s",
        )
    )
    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'graph':<26}  {'baseline':<34}  ratio")
    for label, ours, theirs, note in rows:
        print(f"{label:<{width}}  {ours:<26}  {theirs:<34}  {note}")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The benchmark suite (see the docstring).")
    parser.add_argument("--quick", action="store_true", help="smoke run: a tenth of the data")
    parser.add_argument(
        "--admin", action="store_true", help="read the pipeline as the admin (default: a seller)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
