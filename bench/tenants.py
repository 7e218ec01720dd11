"""Tenants at scale (issue 14): a tenant's cost beside the deployment's, in one run.

Seeds two throwaway PostgreSQL databases (bench/seed.py's `Tenants`, written with COPY):
- "multi": 1,000 organizations, 1,000,199 opportunities: organization 1 with 200,000, every
  other with 801 (accounts, contacts, participants, followers, users, an activity and a comment
  per opportunity in proportion; rows of all organizations interleaved as a deployment's are);
- "alone": the small organization the bench measures (organization 500), the same rows, alone.
Then, with a `server.py` and a raw asyncpg+orjson baseline (bench/raw_server.py: the same rows,
count and visibility rule) on each database, it asserts once that the graph's and the raw
server's answers are equal for every viewer and page (and the small organization's the same
alone as among the others), and measures, as a SELLER (visibility rules on) and as an admin, at
10 clients (requests/s, p50, p99) and at one client (p50), graph and raw in alternate turns:
- the small organization's pipeline page (50 opportunities with totalCount, account, contact,
  participants with their contacts, followers, owner, stage) among the others, and alone;
- the big organization's first page, and its last (a keyset cursor to the end, by amount);
- the fixed cost of a request: a page of 10, one client, p50;
- event appends per second through the API (`addComment`): 10 clients in one organization
  against 10 clients in 10 organizations, one client for reference.
Each figure is the median over the rounds with its spread (min-max); a ratio is the median of
the per-round ratios (each round measures both sides minutes apart at most).

    .venv/bin/python bench/tenants.py                  # seed, measure, drop the databases
    .venv/bin/python bench/tenants.py --quick          # smoke run: 100 organizations, 50,000
    .venv/bin/python bench/tenants.py --seed-only      # seed and keep; prints the names
    .venv/bin/python bench/tenants.py --reuse A,B      # migrate (new migrations), ANALYZE, measure
    .venv/bin/python bench/tenants.py --reuse A,B --explain   # every statement's plan, no timing

`--explain` loads auto_explain in the two databases for the run (ALTER DATABASE ... SET, reset at
the end and at the start of every run), starts fresh servers, runs each request a few times so
that the servers' prepared statements reach their steady plans, then prints the EXPLAIN ANALYZE
(with buffers) PostgreSQL logged for each statement of one request, graph and raw, read back
from the server log with pg_read_file (superuser). `--pg-log` names the log file when PostgreSQL
does not know it (no logging collector: Debian's /var/log/postgresql/postgresql-15-main.log is
tried); without a readable log, the raw baseline's statements are explained from here instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import raw_server  # noqa: E402
from bench.seed import Tenants, email, seed_tenants  # noqa: E402
from bench.suite import (  # noqa: E402
    ADMIN_URL,
    LOGIN,
    PASSWORD,
    PIPELINE,
    SERVER_ENV,
    difference,
    log,
    percentile,
)
from config import Settings  # noqa: E402
from manage import migrate  # noqa: E402
from tests.processes import ServerProcess, free_port  # noqa: E402

PG = "postgres://postgres@127.0.0.1:5432"
SEEDED_TABLES = [
    "organization",
    "pipeline_stage",
    "crm_user",
    "account",
    "contact",
    "opportunity",
    "opportunity_participant",
    "opportunity_follower",
    "activity",
    "comment",
]
ADD_COMMENT = (
    """mutation($id: ID!, $body: String!) { addComment(recordId: $id, body: $body) { id } }"""
)
EXPLAIN_SETTINGS = {
    "session_preload_libraries": "auto_explain",
    "auto_explain.log_min_duration": "0",
    "auto_explain.log_analyze": "on",
    "auto_explain.log_buffers": "on",
    "auto_explain.log_timing": "on",
    "auto_explain.log_nested_statements": "on",
    "auto_explain.log_format": "text",
}


def url(name: str) -> str:
    return f"{PG}/{name}"


# The databases


@dataclass
class Databases:
    multi: str
    alone: str
    plan: Tenants
    seeded_in: float | None = None  # seconds, when seeded by this run

    @property
    def names(self) -> str:
        return f"{self.multi},{self.alone}"


async def admin_execute(*statements: str) -> None:
    db = await asyncpg.connect(ADMIN_URL)
    try:
        for statement in statements:
            await db.execute(statement)
    finally:
        await db.close()


async def manifest(name: str) -> dict[str, Any] | None:
    """What this bench wrote in the database's comment when it finished seeding it."""
    db = await asyncpg.connect(ADMIN_URL)
    try:
        comment = await db.fetchval(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            name,
        )
    finally:
        await db.close()
    try:
        value = json.loads(comment or "")
    except ValueError:
        return None
    return value if isinstance(value, dict) and value.get("bench") == "tenants" else None


async def reuse(names: str) -> Databases:
    found: dict[str, tuple[str, Tenants]] = {}
    for name in (n.strip() for n in names.split(",") if n.strip()):
        note = await manifest(name)
        if note is None or not note.get("complete"):
            raise SystemExit(f"{name}: not a database this bench finished seeding")
        found[note["role"]] = (name, Tenants(**note["plan"]))
    if set(found) != {"multi", "alone"}:
        raise SystemExit("--reuse takes the two databases of one run: MULTI,ALONE")
    (multi, plan), (alone, plan_alone) = found["multi"], found["alone"]
    if plan != plan_alone:
        raise SystemExit(f"{multi} and {alone} were seeded from different plans")
    await unexplain(multi, alone)  # in case an --explain run died before resetting them
    log(f"reusing {multi} and {alone}: migrating, then ANALYZE")
    for name in (multi, alone):
        await migrate(url(name))
        await admin_connect_execute(name, "ANALYZE")
    return Databases(multi, alone, plan)


async def admin_connect_execute(name: str, statement: str) -> None:
    db = await asyncpg.connect(url(name))
    try:
        await db.execute(statement)
    finally:
        await db.close()


class CopyWriter:
    """COPY batches on one connection, in a task of its own, so that PostgreSQL ingests a batch
    while the next one is generated."""

    def __init__(self, db: asyncpg.Connection) -> None:
        self.db = db
        self.rows = 0
        self.queue: asyncio.Queue[tuple[str, list[str], list[tuple]] | None] = asyncio.Queue(4)
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while (item := await self.queue.get()) is not None:
            table, columns, rows = item
            await self.db.copy_records_to_table(table, records=rows, columns=columns)
            self.rows += len(rows)

    async def _put(self, item: tuple[str, list[str], list[tuple]] | None) -> None:
        put = asyncio.ensure_future(self.queue.put(item))
        await asyncio.wait({put, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if self.task.done():
            put.cancel()
            self.task.result()  # its error, if it failed
            raise RuntimeError("the COPY task ended early")

    async def write(self, table: str, columns: list[str], rows: list[tuple]) -> None:
        await self._put((table, columns, list(rows)))  # the caller reuses its list

    async def close(self) -> None:
        await self._put(None)
        await self.task


async def seed(name: str, plan: Tenants, role: str, password_hash: str) -> float:
    """Seed one migrated, empty database; the seconds it took (VACUUM ANALYZE included)."""
    began = time.perf_counter()
    db = await asyncpg.connect(url(name))
    try:
        if await db.fetchval("SELECT count(*) FROM organization"):
            raise SystemExit(f"{name} is not empty")
        await db.execute("SET session_replication_role = replica")  # no change-log triggers
        writer = CopyWriter(db)
        only = plan.small_id if role == "alone" else None
        try:
            await seed_tenants(writer.write, plan, password_hash, only=only)
        finally:
            await writer.close()
        await db.execute("RESET session_replication_role")
        for table in SEEDED_TABLES:
            await db.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id))"
                f" FROM {table} HAVING max(id) IS NOT NULL"
            )
        log(f"{name}: {writer.rows:,} rows in {time.perf_counter() - began:.0f} s; VACUUM ANALYZE")
        await db.execute("VACUUM (ANALYZE)")  # as a live database is: visibility map, statistics
    finally:
        await db.close()
    seconds = time.perf_counter() - began
    note = {
        "bench": "tenants",
        "role": role,
        "plan": dataclasses.asdict(plan),
        "seeded_seconds": round(seconds, 1),
        "complete": True,
    }
    await admin_execute(f"COMMENT ON DATABASE \"{name}\" IS '{json.dumps(note)}'")
    return seconds


async def create(plan: Tenants) -> Databases:
    from resolvers.auth import hash_password

    stem = f"crm_tenants_{uuid.uuid4().hex[:8]}"
    found = Databases(stem, f"{stem}_alone", plan)
    for name in (found.multi, found.alone):
        await admin_execute(f'CREATE DATABASE "{name}"')
    began = time.perf_counter()
    for name in (found.multi, found.alone):
        await migrate(url(name))
    # The argon2 settings of the environment (the servers'), once.
    password_hash = await hash_password(Settings.from_env(), PASSWORD)
    log(
        f"seeding {found.multi}: {plan.organizations:,} organizations,"
        f" {plan.total_opportunities():,} opportunities ({plan.big:,} in organization"
        f" {plan.BIG}, {plan.small:,} in each other)"
    )
    await seed(found.multi, plan, "multi", password_hash)
    log(f"seeding {found.alone}: organization {plan.small_id} alone")
    await seed(found.alone, plan, "alone", password_hash)
    found.seeded_in = time.perf_counter() - began
    log(f"seeded both in {found.seeded_in:.0f} s (migrations included)")
    return found


async def drop(found: Databases) -> None:
    for name in (found.multi, found.alone):
        await admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def unexplain(*names: str) -> None:
    await admin_execute(
        *(f'ALTER DATABASE "{name}" RESET "{key}"' for name in names for key in EXPLAIN_SETTINGS)
    )


# The processes


class RawProcess:
    """bench/raw_server.py in a process of its own, on a free port."""

    def __init__(self, database_url: str, count_cap: int) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "PORT": str(self.port),
            "RAW_COUNT_CAP": str(count_cap),
        }
        self.process: subprocess.Popen[bytes] | None = None
        fd, name = tempfile.mkstemp(prefix="crm-raw-", suffix=".log")
        os.close(fd)
        self.log_path = name

    async def __aenter__(self) -> RawProcess:
        with open(self.log_path, "ab") as output:  # noqa: ASYNC230  (a local file, once)
            self.process = subprocess.Popen(  # noqa: ASYNC220  (started once, not waited on)
                [sys.executable, str(ROOT / "bench" / "raw_server.py")],
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        async with httpx.AsyncClient(base_url=self.base_url, trust_env=False) as http:
            for _ in range(300):
                if self.process.poll() is not None:
                    break
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/healthz")).status_code == 200:
                        return self
                await asyncio.sleep(0.1)
        with open(self.log_path, encoding="utf-8", errors="replace") as output:  # noqa: ASYNC230
            tail = output.read()[-4000:]
        await self.__aexit__()
        raise RuntimeError(f"raw_server.py did not start:\n{tail}")

    async def __aexit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            await asyncio.to_thread(self.process.wait, 10)
        os.unlink(self.log_path)


@dataclass
class Viewer:
    label: str  # "seller", "admin"...
    user_id: int
    organization_id: int
    tokens: dict[str, str] = field(default_factory=dict)  # by Side.name: each database's own


@dataclass
class Side:
    """One database's pair of servers, with a client for each."""

    name: str  # "multi", "alone"
    graph: httpx.AsyncClient
    raw: httpx.AsyncClient


def client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url, timeout=120, trust_env=False, limits=httpx.Limits(max_connections=20)
    )


@contextlib.asynccontextmanager
async def servers(found: Databases, count_cap: int) -> AsyncIterator[tuple[Side, Side]]:
    """A server.py and a raw server on each database: (multi, alone)."""
    async with contextlib.AsyncExitStack() as stack:
        sides = []
        for role, name in (("multi", found.multi), ("alone", found.alone)):
            graph = await stack.enter_async_context(
                ServerProcess({"DATABASE_URL": url(name), **SERVER_ENV}, startup_timeout=120)
            )
            raw = await stack.enter_async_context(RawProcess(url(name), count_cap))
            sides.append(
                Side(
                    role,
                    await stack.enter_async_context(client(graph.base_url)),
                    await stack.enter_async_context(client(raw.base_url)),
                )
            )
        yield sides[0], sides[1]


async def login(side: Side, viewer: Viewer) -> Viewer:
    body = (
        await side.graph.post(
            "/graphql",
            json={"query": LOGIN, "variables": {"e": email(viewer.user_id), "p": PASSWORD}},
        )
    ).json()
    assert not body.get("errors"), body
    viewer.tokens[side.name] = body["data"]["login"]["token"]
    return viewer


# Requests


@dataclass(frozen=True)
class Page:
    first: int
    after: str | None = None


async def graph_data(side: Side, viewer: Viewer, page: Page) -> dict[str, Any]:
    response = await side.graph.post(
        "/graphql",
        json={"query": PIPELINE, "variables": {"first": page.first, "after": page.after}},
        headers={"authorization": f"Bearer {viewer.tokens[side.name]}"},
    )
    body = response.json()
    assert response.status_code == 200 and not body.get("errors"), body
    return body["data"]


async def raw_data(side: Side, viewer: Viewer, page: Page) -> dict[str, Any]:
    params: dict[str, Any] = {"viewer": viewer.user_id, "first": page.first}
    if page.after:
        params["after"] = page.after
    response = await side.raw.get("/pipeline", params=params)
    assert response.status_code == 200, response.text
    return response.json()["data"]


Call = Callable[[], Awaitable[None]]


def graph_call(side: Side, viewer: Viewer, page: Page) -> Call:
    http = side.graph
    headers = {"authorization": f"Bearer {viewer.tokens[side.name]}"}
    payload = {"query": PIPELINE, "variables": {"first": page.first, "after": page.after}}

    async def call() -> None:
        response = await http.post("/graphql", json=payload, headers=headers)
        assert response.status_code == 200 and b'"errors"' not in response.content, response.text

    return call


def raw_call(side: Side, viewer: Viewer, page: Page) -> Call:
    http = side.raw
    params: dict[str, Any] = {"viewer": viewer.user_id, "first": page.first}
    if page.after:
        params["after"] = page.after

    async def call() -> None:
        response = await http.get("/pipeline", params=params)
        assert response.status_code == 200, response.text

    return call


async def last_page(found: Databases, viewer: Viewer, size: int, alone: bool = False) -> Page:
    db = await asyncpg.connect(url(found.alone if alone else found.multi))
    try:
        return Page(size, await raw_server.last_page_cursor(db.fetch, viewer.user_id, size))
    finally:
        await db.close()


# Measuring


def per_round(a: list[float], b: list[float]) -> list[float]:
    return [x / y for x, y in zip(a, b, strict=True) if y]


def spread(values: list[float], digits: int = 1, unit: str = "") -> str:
    if not values:
        return "-"
    middle = statistics.median(values)
    return f"{middle:,.{digits}f}{unit} ({min(values):,.{digits}f}-{max(values):,.{digits}f}{unit})"


@dataclass
class Figures:
    rps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    single: list[float] = field(default_factory=list)  # one client: p50


@dataclass
class Case:
    label: str
    graph: Call
    raw: Call
    loaded: bool = True  # measured at 10 clients too (else one client only)
    figures: dict[str, Figures] = field(
        default_factory=lambda: {"graph": Figures(), "raw": Figures()}
    )


async def measure(cases: list[Case], rounds: int, seconds: float) -> None:
    for case in cases:
        for call in (case.graph, case.raw):
            for _ in range(10):
                await call()  # warm up: connections, caches, the steady plans
    for round_ in range(rounds):
        for case in cases:
            log(f"round {round_ + 1} of {rounds}: {case.label}")
            for side, call in (("graph", case.graph), ("raw", case.raw)):
                figures = case.figures[side]
                if case.loaded:
                    rps, latencies = await load_all([call] * 10, seconds, at_least=20)
                    figures.rps.append(rps)
                    figures.p50.append(percentile(latencies, 0.5))
                    figures.p99.append(percentile(latencies, 0.99))
                _, alone = await load_all(
                    [call], seconds / 2 if case.loaded else seconds, at_least=8
                )
                figures.single.append(percentile(alone, 0.5))


@dataclass
class Appends:
    label: str
    calls: list[Call]
    rps: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)


async def append_figures(
    side: Side, found: Databases, rounds: int, seconds: float
) -> tuple[list[Appends], int, int]:
    """addComment (an event appended, with its followers' notifications) from 10 clients of one
    organization, and from 10 clients of 10 organizations, each with its own token and its own
    opportunity; neither is the measured small organization nor the big one."""
    plan = found.plan
    one = plan.small_id + 1
    ten = [plan.small_id + 2 + index for index in range(10)]
    db = await asyncpg.connect(url(found.multi))

    async def opportunities(organization: int, count: int) -> list[int]:
        rows = await db.fetch(
            "SELECT id FROM opportunity WHERE organization_id = $1 AND deleted_at IS NULL"
            " AND visibility = 'ORGANIZATION' ORDER BY id LIMIT $2",
            organization,
            count,
        )
        return [r["id"] for r in rows]

    try:
        writers: list[tuple[Viewer, int]] = list(
            zip(
                [Viewer("member", pk, one) for pk in plan.roster(one).everyone[:10]],
                await opportunities(one, 10),
                strict=True,
            )
        )
        for organization in ten:
            seller = plan.roster(organization).sellers[0]
            writers.append(
                (Viewer("seller", seller, organization), (await opportunities(organization, 1))[0])
            )
        events_before = await db.fetchval("SELECT count(*) FROM event")
    finally:
        await db.close()
    for viewer, _ in writers:
        await login(side, viewer)

    def comment(viewer: Viewer, opportunity: int) -> Call:
        headers = {"authorization": f"Bearer {viewer.tokens[side.name]}"}
        record = raw_server.gid("Opportunity", opportunity)
        payload = {"query": ADD_COMMENT, "variables": {"id": record, "body": "Bench comment"}}

        async def call() -> None:
            response = await side.graph.post("/graphql", json=payload, headers=headers)
            assert response.status_code == 200 and b'"errors"' not in response.content, (
                response.text
            )

        return call

    calls = [comment(viewer, opportunity) for viewer, opportunity in writers]
    groups = [
        Appends("1 client", calls[:1]),
        Appends(f"10 clients, one organization ({one})", calls[:10]),
        Appends(f"10 clients, 10 organizations ({ten[0]}-{ten[-1]})", calls[10:]),
    ]
    made = 0
    for call in calls:
        await call()
        made += 1
    for round_ in range(rounds):
        for group in groups:
            log(f"round {round_ + 1} of {rounds}: appends, {group.label}")
            rps, latencies = await load_all(group.calls, seconds)
            group.rps.append(rps)
            group.p50.append(percentile(latencies, 0.5))
            group.p99.append(percentile(latencies, 0.99))
            made += len(latencies)
    db = await asyncpg.connect(url(found.multi))
    try:
        appended = await db.fetchval("SELECT count(*) FROM event") - events_before
    finally:
        await db.close()
    return groups, made, appended


async def load_all(
    calls: list[Call], seconds: float, at_least: int = 0
) -> tuple[float, list[float]]:
    """Requests per second and latencies (ms) of one loop per call, for `seconds` and at least
    `at_least` requests in all (so that a slow request's p50 has samples)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def loop(call: Call) -> None:
        while time.perf_counter() < deadline or len(latencies) < at_least:
            began = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - began) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(loop(call) for call in calls))
    return len(latencies) / (time.perf_counter() - began), latencies


# --explain


LOG_ENTRY = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
PLAN_ENTRY = re.compile(r"LOG:\s+duration: ([\d.]+) ms\s+plan:")
PLAN_NODE = re.compile(
    r"^\s*(?:->\s+)?(?P<name>[^(]+?)\s+\(cost=[^)]*\)\s+\(actual time=[\d.]+\.\.(?P<end>[\d.]+)"
    r" rows=(?P<rows>\d+) loops=(?P<loops>\d+)\)"
)


async def log_file(db: asyncpg.Connection, given: str | None) -> str | None:
    """The server log's path, if it can be read through pg_read_file."""
    candidates = [given] if given else []
    if not given:
        current = await db.fetchval("SELECT pg_current_logfile()")
        if current:
            directory = await db.fetchval("SHOW data_directory")
            candidates.append(current if current.startswith("/") else f"{directory}/{current}")
        cluster = await db.fetchval("SHOW cluster_name")  # Debian: "15/main"
        if cluster:
            candidates.append(f"/var/log/postgresql/postgresql-{cluster.replace('/', '-')}.log")
    for path in candidates:
        try:
            await db.fetchval("SELECT (pg_stat_file($1)).size", path)
            return path
        except asyncpg.PostgresError:
            continue
    return None


@dataclass
class Statement:
    ms: float
    text: list[str]  # the plan as logged: Query Text, then the nodes

    @property
    def query(self) -> str:
        first = self.text[0].strip() if self.text else ""
        return first.removeprefix("Query Text:").strip()

    def notes(self) -> list[str]:
        """What to look at: every sequential scan, any node that threw 1,000 rows or more away,
        nodes run more than once that took 1 ms or a tenth of the statement in all, JIT."""
        found = []
        nodes: list[tuple[re.Match[str], list[str]]] = []
        for line in self.text:
            node = PLAN_NODE.match(line)
            if node:
                nodes.append((node, []))
            elif nodes:
                nodes[-1][1].append(line)
            if line.strip().startswith("JIT:"):
                found.append("JIT compiled (see the plan's JIT lines)")
        for node, details in nodes:
            name, per_loop, rows, loops = (
                node.group("name").strip(),
                float(node.group("end")),
                int(node.group("rows")),
                int(node.group("loops")),
            )
            removed = sum(
                int(hit.group(1)) * loops
                for detail in details
                if (hit := re.search(r"Rows Removed by (?:Join )?Filter: (\d+)", detail))
            )
            total = per_loop * loops
            # Under a Gather, loops are the processes sharing the scan, at the same time.
            parallel = name.startswith(("Parallel", "Partial"))
            what = f"{name[:80]}: {rows * loops:,} rows"
            what += f" in {loops:,} {'processes' if parallel else 'loops'}" if loops > 1 else ""
            what += f", {removed:,} removed by filter" if removed else ""
            what += f", {per_loop:.2f} ms each" if parallel else f", {total:.2f} ms"
            repeated = loops > 1 and total >= min(1.0, self.ms / 10)
            if "Seq Scan" in name or removed >= 1000 or repeated:
                found.append(what)
        return found

    def buffers(self) -> str:
        for line in self.text:
            if "Buffers:" in line:
                return line.split("Buffers:", 1)[1].strip()
        return ""


def parse_plans(text: str) -> list[Statement]:
    entries: list[list[str]] = []
    for line in text.splitlines():
        if LOG_ENTRY.match(line):
            entries.append([line])
        elif entries and line.startswith("\t"):
            entries[-1].append(line[1:])
    found = []
    for entry in entries:
        head = PLAN_ENTRY.search(entry[0])
        if head:
            found.append(Statement(float(head.group(1)), entry[1:]))
    return found


def print_plans(title: str, statements: list[Statement], took: float) -> None:
    total = sum(s.ms for s in statements)
    print(
        f"\n=== {title}: {len(statements)} statements, {total:.2f} ms in PostgreSQL's executor,"
        f" {took:.1f} ms at the client"
    )
    for number, statement in sorted(enumerate(statements, 1), key=lambda item: -item[1].ms):
        query = " ".join(statement.query.split())
        print(f"  #{number:<2} {statement.ms:8.3f} ms  {query[:110]}")
        if statement.buffers():
            print(f"       buffers: {statement.buffers()}")
        for note in statement.notes():
            print(f"       {note}")
    for number, statement in enumerate(statements, 1):
        print(f"\n--- {title}, statement #{number}: {statement.ms:.3f} ms")
        for line in statement.text:
            print(f"    {line}")


async def explain(
    found: Databases,
    viewers: dict[str, Viewer],
    pages: dict[str, Page],
    count_cap: int,
    pg_log: str | None,
) -> None:
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        path = await log_file(admin, pg_log)
        if path is None:
            print(
                "The PostgreSQL log cannot be read (pg_read_file): the graph's statements are"
                " not captured; the raw baseline's are explained from here (--pg-log PATH)."
            )
            await explain_raw(found, viewers, pages)
            return
        for name in (found.multi, found.alone):
            for key, value in EXPLAIN_SETTINGS.items():
                await admin.execute(f'ALTER DATABASE "{name}" SET "{key}" = \'{value}\'')
        try:
            async with servers(found, count_cap) as (multi, alone):
                for viewer in viewers.values():
                    await login(multi, viewer)
                    if viewer.organization_id == found.plan.small_id:
                        await login(alone, viewer)
                for key, (side_name, viewer_key, page_key) in EXPLAINED.items():
                    side = multi if side_name == "multi" else alone
                    viewer, page = viewers[viewer_key], pages[page_key]
                    for kind, call in (
                        ("graph", graph_call(side, viewer, page)),
                        ("raw", raw_call(side, viewer, page)),
                    ):
                        for _ in range(12):  # past the 5 custom plans of a prepared statement
                            await call()
                        await asyncio.sleep(0.3)
                        start = await admin.fetchval("SELECT (pg_stat_file($1)).size", path)
                        began = time.perf_counter()
                        await call()
                        took = (time.perf_counter() - began) * 1000
                        await asyncio.sleep(0.5)
                        end = await admin.fetchval("SELECT (pg_stat_file($1)).size", path)
                        text = await admin.fetchval(
                            "SELECT pg_read_file($1, $2, $3)", path, start, end - start
                        )
                        print_plans(f"{key}, {kind}", parse_plans(text), took)
        finally:
            await unexplain(found.multi, found.alone)
    finally:
        await admin.close()


def explaining(db: asyncpg.Connection, statements: list[Statement]) -> raw_server.Fetch:
    """A fetch that runs EXPLAIN (ANALYZE, BUFFERS) of each statement first."""

    async def fetch(sql: str, *args: Any) -> list[Any]:
        plan = await db.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)
        lines = [f"Query Text: {sql}"] + [row[0] for row in plan]
        ms = re.search(r"Execution Time: ([\d.]+)", lines[-1])
        statements.append(Statement(float(ms.group(1)) if ms else 0.0, lines))
        return await db.fetch(sql, *args)

    return fetch


async def explain_raw(found: Databases, viewers: dict[str, Viewer], pages: dict[str, Page]) -> None:
    for key, (side_name, viewer_key, page_key) in EXPLAINED.items():
        db = await asyncpg.connect(url(found.multi if side_name == "multi" else found.alone))
        try:
            statements: list[Statement] = []
            fetch = explaining(db, statements)
            page = pages[page_key]
            began = time.perf_counter()
            await raw_server.pipeline_data(
                fetch, viewers[viewer_key].user_id, page.first, page.after
            )
            print_plans(
                f"{key}, raw (explained from the bench)",
                statements,
                (time.perf_counter() - began) * 1000,
            )
        finally:
            await db.close()


# What --explain covers: title -> (database, viewer, page).
EXPLAINED = {
    "small organization among others, seller, first 50": ("multi", "small seller", "small first"),
    "small organization among others, admin, first 50": ("multi", "small admin", "small first"),
    "small organization alone, seller, first 50": ("alone", "small seller", "small first"),
    "big organization, seller, first 50": ("multi", "big seller", "big first"),
    "big organization, admin, first 50": ("multi", "big admin", "big first"),
    "big organization, seller, last 50": ("multi", "big seller", "big last seller"),
    "big organization, admin, last 50": ("multi", "big admin", "big last admin"),
}


# The run


async def prepare(found: Databases) -> tuple[dict[str, Viewer], dict[str, Page]]:
    plan = found.plan
    small, big = plan.roster(plan.small_id), plan.roster(plan.BIG)
    viewers = {
        "small seller": Viewer("seller", small.sellers[0], plan.small_id),
        "small admin": Viewer("admin", small.admin, plan.small_id),
        "small manager": Viewer("sales manager", small.managers[0], plan.small_id),
        "big seller": Viewer("seller", big.sellers[0], plan.BIG),
        "big admin": Viewer("admin", big.admin, plan.BIG),
        "big director": Viewer("sales manager over managers", big.directors[0], plan.BIG),
    }
    pages = {"small first": Page(50), "small ten": Page(10), "big first": Page(50)}
    for key in ("small seller", "small admin", "small manager"):
        pages[f"small last {key.split()[1]}"] = await last_page(found, viewers[key], 50)
    for key in ("big seller", "big admin", "big director"):
        pages[f"big last {key.split()[1]}"] = await last_page(found, viewers[key], 50)
    return viewers, pages


async def check(
    multi: Side, alone: Side, viewers: dict[str, Viewer], pages: dict[str, Page]
) -> dict[str, int]:
    """The graph's answer equals the raw server's for every viewer and page, and the small
    organization's is the same alone as among the others. The seller's and admin's counts."""
    counts = {}
    for key, viewer in viewers.items():
        organization = key.split()[0]
        role = key.split()[1]
        for page_key in (f"{organization} first", f"{organization} last {role}", "small ten"):
            if page_key == "small ten" and organization != "small":
                continue
            page = pages[page_key]
            graph = await graph_data(multi, viewer, page)
            raw = await raw_data(multi, viewer, page)
            diff = difference(graph, raw)
            if diff:
                raise SystemExit(f"graph and raw differ ({key}, {page_key}): {diff}")
            if organization == "small":
                elsewhere = await graph_data(alone, viewer, page)
                diff = difference(graph, elsewhere) or difference(
                    elsewhere, await raw_data(alone, viewer, page)
                )
                if diff:
                    raise SystemExit(f"the small organization alone differs ({key}): {diff}")
            edges = graph["opportunities"]["edges"]
            if len(edges) != page.first:
                raise SystemExit(f"{key}, {page_key}: {len(edges)} rows instead of {page.first}")
            counts[key] = graph["opportunities"]["totalCount"]
    log("graph and raw answers are equal for every viewer and page")
    return counts


async def data_sizes(found: Databases) -> list[str]:
    lines = []
    for role, name in (("multi", found.multi), ("alone", found.alone)):
        db = await asyncpg.connect(url(name))
        try:
            counts = []
            for table in SEEDED_TABLES:
                # pg_class's estimate after ANALYZE: a count(*) of each table would take long
                rows = await db.fetchval(
                    "SELECT reltuples::bigint FROM pg_class WHERE relname = $1", table
                )
                counts.append(f"{max(rows, 0):,} {table}")
            size = await db.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
        finally:
            await db.close()
        lines.append(f"{role} ({name}, {size}): " + ", ".join(counts))
    return lines


async def run(args: argparse.Namespace) -> int:
    plan = Tenants.quick() if args.quick else Tenants.full()
    if args.history:
        plan = dataclasses.replace(plan, history=args.history)
    rounds = args.rounds or (2 if args.quick else 5)
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    created = not args.reuse
    found = await reuse(args.reuse) if args.reuse else await create(plan)
    keep = args.keep or args.seed_only or not created
    try:
        if args.seed_only:
            return 0
        viewers, pages = await prepare(found)
        if args.explain:
            await explain(found, viewers, pages, args.count_cap, args.pg_log)
            return 0
        sizes = await data_sizes(found)
        async with servers(found, args.count_cap) as (multi, alone):
            for viewer in viewers.values():
                await login(multi, viewer)
                if viewer.organization_id == found.plan.small_id:
                    await login(alone, viewer)
            counts = await check(multi, alone, viewers, pages)
            cases = []
            for role in ("seller", "admin"):
                small, big = viewers[f"small {role}"], viewers[f"big {role}"]
                first, ten = pages["small first"], pages["small ten"]
                big_first, big_last = pages["big first"], pages[f"big last {role}"]
                cases += [
                    Case(
                        f"small among others, {role}",
                        graph_call(multi, small, first),
                        raw_call(multi, small, first),
                    ),
                    Case(
                        f"small alone, {role}",
                        graph_call(alone, small, first),
                        raw_call(alone, small, first),
                    ),
                    Case(
                        f"big first page, {role}",
                        graph_call(multi, big, big_first),
                        raw_call(multi, big, big_first),
                    ),
                    Case(
                        f"big last page, {role}",
                        graph_call(multi, big, big_last),
                        raw_call(multi, big, big_last),
                    ),
                    Case(
                        f"page of 10, small among others, {role}",
                        graph_call(multi, small, ten),
                        raw_call(multi, small, ten),
                        loaded=False,
                    ),
                ]
            await measure(cases, rounds, seconds)
            appends = await append_figures(multi, found, rounds, seconds)
        report(found, plan_note(found, args), sizes, counts, cases, appends, rounds, seconds)
        return 0
    finally:
        if keep:
            print(f"\ndatabases kept: --reuse {found.names}")
        else:
            await drop(found)


def plan_note(found: Databases, args: argparse.Namespace) -> str:
    seeded = (
        f"seeded by this run in {found.seeded_in:.0f} s (migrations and VACUUM ANALYZE included)"
        if found.seeded_in is not None
        else "reused (migrated and analyzed by this run)"
    )
    count = f"capped at {args.count_cap} (+1)" if args.count_cap else "exact"
    return f"{seeded}; raw baseline's count: {count}"


async def versions() -> str:
    packages = ", ".join(
        f"{package} {metadata.version(package)}"
        for package in ("strawberry-graphql", "tortoise-orm", "asyncpg", "uvicorn", "httpx")
    )
    db = await asyncpg.connect(ADMIN_URL)
    try:
        server = await db.fetchval("SHOW server_version")
        settings = [
            f"{name}={await db.fetchval(f'SHOW {name}')}"
            for name in (
                "shared_buffers",
                "work_mem",
                "effective_cache_size",
                "random_page_cost",
                "jit",
                "max_parallel_workers_per_gather",
            )
        ]
    finally:
        await db.close()
    return f"{packages}; PostgreSQL {server} ({', '.join(settings)})"


def verdict(value: float, goal: str) -> str:
    sign, bound = goal.split()
    met = value <= float(bound) if sign == "<=" else value >= float(bound)
    return f"{goal}: {'met' if met else 'NOT met'}"


def report(
    found: Databases,
    note: str,
    sizes: list[str],
    counts: dict[str, int],
    cases: list[Case],
    appends: tuple[list[Appends], int, int],
    rounds: int,
    seconds: float,
) -> None:
    plan = found.plan
    history = "every organization" if plan.history == "all" else "the big organization only"
    print(
        f"\nmachine: {platform.platform()}, {os.cpu_count()} cores (client, 4 servers and"
        f" PostgreSQL share them), Python {platform.python_version()}"
    )
    print(f"versions: {VERSIONS}")
    print(
        f"data: {plan.organizations:,} organizations, {plan.total_opportunities():,}"
        f" opportunities; the big organization ({plan.BIG}) {plan.big:,}, the small one"
        f" ({plan.small_id}) and every other {plan.small:,}; {plan.private:.0%} PRIVATE;"
        f" activities and comments: {history}"
    )
    for line in sizes:
        print(f"  {line}")
    print(f"  {note}")
    print("  totalCount seen: " + ", ".join(f"{key} {value:,}" for key, value in counts.items()))
    print(
        f"medians (min-max) over {rounds} rounds of {seconds:g} s (10 clients; one client:"
        f" half as long); ratios: the median of the per-round ratios (min-max)\n"
    )
    by = {case.label: case for case in cases}
    rows: list[tuple[str, str, str, str, str]] = []
    for case in cases:
        g, r = case.figures["graph"], case.figures["raw"]
        if case.loaded:
            ratio = per_round(g.rps, r.rps)
            rows.append(
                (
                    f"{case.label}: 10 clients, req/s",
                    spread(g.rps),
                    spread(r.rps),
                    spread(ratio, 2),
                    verdict(statistics.median(ratio), ">= 0.7"),
                )
            )
            rows.append(
                (
                    f"{case.label}: 10 clients, p50 / p99 ms",
                    f"{statistics.median(g.p50):.1f} / {statistics.median(g.p99):.1f}",
                    f"{statistics.median(r.p50):.1f} / {statistics.median(r.p99):.1f}",
                    "",
                    "",
                )
            )
        ratio = per_round(g.single, r.single)
        goal = "" if case.loaded else verdict(statistics.median(ratio), "<= 2")
        rows.append(
            (
                f"{case.label}: 1 client, p50 ms",
                spread(g.single, 2),
                spread(r.single, 2),
                spread(ratio, 2, "x"),
                goal,
            )
        )
    table("figure", "graph", "raw", "graph/raw", "goal", rows)

    rows = []
    for role in ("seller", "admin"):
        comparisons = [
            ("small among others / alone", "small among others", "small alone", "<= 1.2"),
            ("big first page / small's", "big first page", "small among others", "<= 2"),
            ("big last page / its first", "big last page", "big first page", "<= 1.5"),
        ]
        for title, this, that, goal in comparisons:
            a, b = by[f"{this}, {role}"].figures, by[f"{that}, {role}"].figures
            single = [per_round(a[s].single, b[s].single) for s in ("graph", "raw")]
            loaded = [per_round(b[s].rps, a[s].rps) for s in ("graph", "raw")]
            rows.append(
                (
                    f"{title}, {role}: 1 client p50",
                    spread(single[0], 2, "x"),
                    spread(single[1], 2, "x"),
                    verdict(statistics.median(single[0]), goal),
                    "",
                )
            )
            rows.append(
                (
                    f"{title}, {role}: 10 clients, inverse of req/s",
                    spread(loaded[0], 2, "x"),
                    spread(loaded[1], 2, "x"),
                    verdict(statistics.median(loaded[0]), goal),
                    "",
                )
            )
    print()
    table("tenant ratio", "graph", "raw", "goal (graph)", "", rows)

    groups, made, appended = appends
    rows = []
    for group in groups:
        rows.append(
            (
                f"event appends (addComment), {group.label}",
                spread(group.rps),
                f"{statistics.median(group.p50):.1f} / {statistics.median(group.p99):.1f}",
                "",
                "",
            )
        )
    ratio = per_round(groups[2].rps, groups[1].rps)
    rows.append(
        (
            "10 organizations / one organization, total appends/s",
            spread(ratio, 2, "x"),
            "",
            verdict(statistics.median(ratio), ">= 1"),
            "",
        )
    )
    print()
    table("appends", "appends/s", "p50 / p99 ms", "goal", "", rows)
    print(f"\n{made:,} addComment requests answered, {appended:,} events appended")


def table(*header_and_rows: Any) -> None:
    *header, rows = header_and_rows
    all_rows = [tuple(header), *rows]
    widths = [max(len(str(row[i])) for row in all_rows) for i in range(len(header))]
    for row in all_rows:
        print(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )


VERSIONS = ""


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Tenants at scale (see the docstring).")
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 organizations")
    parser.add_argument("--keep", action="store_true", help="keep the databases; print names")
    parser.add_argument("--reuse", metavar="MULTI,ALONE", help="measure seeded databases")
    parser.add_argument("--seed-only", action="store_true", help="seed, keep, and stop")
    parser.add_argument("--explain", action="store_true", help="print each statement's plan")
    parser.add_argument("--pg-log", metavar="PATH", help="PostgreSQL's log file, for --explain")
    parser.add_argument("--rounds", type=int, help="rounds (5; quick: 2)")
    parser.add_argument("--seconds", type=float, help="seconds per 10-client turn (5; quick: 2)")
    parser.add_argument(
        "--count-cap",
        type=int,
        default=Settings.count_limit,
        help="the raw baseline counts up to N + 1 rows, as the API (COUNT_LIMIT); 0: every row",
    )
    parser.add_argument(
        "--history",
        choices=["all", "big"],
        help="activities and comments: every organization (default) or the big one only",
    )
    return parser.parse_args()


async def main() -> int:
    global VERSIONS
    args = parse()
    VERSIONS = await versions()
    return await run(args)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
