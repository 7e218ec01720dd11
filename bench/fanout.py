"""Live fan-out benchmark: how fast one committed change reaches N followers' websockets.

Per follower count N: a throwaway PostgreSQL database; two fresh `server.py` processes on one
event bus (Redis, or PostgreSQL with --bus postgres); an organization, its admin and a lead
created through the public API, and N users following the lead written straight into the
database; N websockets (graphql-transport-ws, half on each process) each subscribed to
`followedEvents`. Reported: each server's RSS growth per idle subscription; over R rounds of one
`addComment` sent to server 1, the p50/p99/max delay to the matching `next` on every socket, from
just after the HTTP response (the commit is done) and from just before the request; and, as a
baseline from the same run, one raw Redis PUBLISH reaching N redis.asyncio subscribers in this
process. The client runs on the same machine as the servers, Redis and PostgreSQL.

    .venv/bin/python bench/fanout.py                    # 100 then 1,000 followers, Redis bus
    .venv/bin/python bench/fanout.py --quick            # smoke run: 50 followers, 3 rounds
    .venv/bin/python bench/fanout.py --bus postgres --followers 100 --rounds 10

The followers are written in SQL (COPY, ids from the tables' own sequences): the users as
`createUser` writes them, one session token each as `login` issues it (only its SHA-256 digest is
stored), and the lead's follower rows, which the change log's trigger logs as it does the API's.
Through the API, each `addFollower` also writes a FOLLOWER_ADDED event and notifies the followers
before it: seeding was quadratic, and 10,000 never finished. Those events and notifications are
not written: the subscriptions start at the event log's head, so none of them would be replayed,
and each round's comment is still notified to every follower by the API.

The raw Redis baseline holds N Redis connections at once, and Redis refuses clients past its
`maxclients` (10,000 by default). When N, the clients already connected and a small margin do not
fit, the baseline is skipped for that N and the report says why: the bench does not change the
configuration of a Redis others may share (`redis-cli CONFIG SET maxclients 10100`, say, lets
it run). The client holds N websockets and each server N/2: the bench raises its soft limit on
open files to the hard limit, which the server processes it starts inherit, and refuses to run
when the hard limit is below N + FD_SPARE.

Exits non-zero when a subscriber misses a delivery or gets one twice, or anything fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import resource
import secrets
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis
import uvloop
from strawberry import relay
from tortoise.models import Model
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.seed import table_rows  # noqa: E402
from config import Settings  # noqa: E402
from manage import migrate  # noqa: E402
from models import AuthToken, LeadFollower, Role, User  # noqa: E402
from resolvers.auth import TOKEN_PREFIX, digest, hash_password  # noqa: E402
from tests.processes import ServerProcess  # noqa: E402

ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
PASSWORD = "bench-password-123"
OPEN_CONCURRENCY = 50  # websocket handshakes (and baseline SUBSCRIBEs) in flight
FD_SPARE = 200  # open files beyond the N sockets: HTTP, PostgreSQL, Redis, logs
REDIS_SPARE = 20  # Redis connections the baseline leaves free for the servers' buses and others
ROUND_TIMEOUT = 15.0  # seconds a round waits for its last delivery
GAUGE = re.compile(r"^crm_live_subscriptions (\S+)$", re.MULTILINE)
SERVER_ENV = {
    "LOG_LEVEL": "WARNING",
    "ARGON2_TIME_COST": "1",
    "ARGON2_MEMORY_KIB": "1024",
    "RATE_LIMIT_PER_SECOND": "0",  # N followers sign in from one address: measure delivery only
}
SIGN_UP = "mutation($input: SignUpInput!) { signUp(input: $input) { token user { id } } }"
CREATE_LEAD = "mutation($input: CreateLeadInput!) { createLead(input: $input) { id } }"
COMMENT = "mutation($r: ID!, $b: String!) { addComment(recordId: $r, body: $b) { id } }"
FOLLOWED = "subscription { followedEvents { kind cursor recordId changes actor { id } } }"


async def gql(
    http: httpx.AsyncClient, base: str, query: str, token: str | None = None, **variables: Any
) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await http.post(
        f"{base}/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    body = response.json() if response.status_code in (200, 400) else {}
    if response.status_code != 200 or body.get("errors"):
        raise RuntimeError(f"{query[:40]!r}: HTTP {response.status_code} {response.text[:300]}")
    return dict(body["data"])


async def bounded(limit: int, jobs: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run the jobs, `limit` at a time; the first failure cancels the rest."""
    gate = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await job()

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(run(job)) for job in jobs]
    return [task.result() for task in tasks]


async def seed(
    http: httpx.AsyncClient, base: str, db_url: str, n: int
) -> tuple[str, str, list[str]]:
    """An organization, its admin and a lead through the API, then n users following the lead,
    each signed in, written in SQL (see the module docstring): admin token, lead id, tokens."""
    tag = uuid.uuid4().hex[:8]
    first = {"organizationName": f"Bench {tag}", "fullName": "Admin", "password": PASSWORD}
    data = await gql(http, base, SIGN_UP, input={**first, "email": f"a-{tag}@b.example"})
    admin = data["signUp"]["token"]
    lead = await gql(http, base, CREATE_LEAD, admin, input={"title": f"Bench lead {tag}"})
    lead_id = lead["createLead"]["id"]
    lead_pk = int(relay.from_base64(lead_id)[1])
    tokens = [TOKEN_PREFIX + secrets.token_urlsafe(32) for _ in range(n)]  # as issue_token
    settings = Settings.from_env()  # the servers' (they are started with this environment)
    password_hash = await hash_password(settings, PASSWORD)  # one real hash: any could log in
    now = datetime.now(UTC)
    db = await asyncpg.connect(db_url)
    try:
        async with db.transaction():
            organization_id = await db.fetchval(
                "SELECT organization_id FROM lead WHERE id = $1", lead_pk
            )
            user_ids = await take_ids(db, User, n)
            users = [
                {
                    "id": pk,
                    "organization_id": organization_id,
                    "email": f"f{i}-{tag}@bench.example",
                    "full_name": f"Follower {i}",
                    "password_hash": password_hash,
                    "role": Role.SELLER,
                }
                for i, pk in enumerate(user_ids)
            ]
            await copy(db, User, users)
            expires_at = now + timedelta(days=settings.token_ttl_days)
            token_ids = await take_ids(db, AuthToken, n)
            sessions = [
                {
                    "id": pk,
                    "user_id": user_id,
                    "token_hash": digest(token),
                    "expires_at": expires_at,
                    "last_used_at": now,
                }
                for pk, user_id, token in zip(token_ids, user_ids, tokens, strict=True)
            ]
            await copy(db, AuthToken, sessions)
            link_ids = await take_ids(db, LeadFollower, n)
            links = [
                {"id": pk, "record_id": lead_pk, "user_id": user_id}
                for pk, user_id in zip(link_ids, user_ids, strict=True)
            ]
            await copy(db, LeadFollower, links)
    finally:
        await db.close()
    return admin, lead_id, tokens


async def take_ids(db: asyncpg.Connection, model: type[Model], count: int) -> list[int]:
    """`count` ids from the table's own sequence, as the API's inserts take them: a row the
    servers insert later into the same table never collides with these."""
    rows = await db.fetch(
        "SELECT nextval(pg_get_serial_sequence($1, 'id')) FROM generate_series(1, $2)",
        model._meta.db_table,
        count,
    )
    return [int(row[0]) for row in rows]


async def copy(db: asyncpg.Connection, model: type[Model], rows: list[dict[str, Any]]) -> None:
    """COPY the rows into the model's table, its defaults filled in (bench/seed.py)."""
    columns, values = table_rows(model, rows)
    await db.copy_records_to_table(model._meta.db_table, records=values, columns=columns)


class Rounds:
    """Which round is being delivered and how many subscribers still wait for it."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix  # a comment body is f"{prefix}{round}-end"
        self.current, self.pending, self.closing = -1, 0, False
        self.done = asyncio.Event()

    def start(self, round_no: int, subscribers: int) -> None:
        self.current, self.pending = round_no, subscribers
        self.done.clear()

    def arrived(self, round_no: int) -> None:
        if round_no == self.current:
            self.pending -= 1
            if self.pending <= 0:
                self.done.set()


class Follower:
    """One websocket with one followedEvents subscription and a reader that only timestamps."""

    __slots__ = ("arrivals", "errors", "server", "task", "ws")

    def __init__(self, ws: ClientConnection, server: int) -> None:
        self.ws, self.server = ws, server
        self.arrivals: dict[int, list[float]] = {}  # round -> receipt times (perf_counter)
        self.errors: list[str] = []
        self.task: asyncio.Task[None] | None = None

    async def read(self, rounds: Rounds) -> None:
        prefix = rounds.prefix
        try:
            async for raw in self.ws:
                now = time.perf_counter()
                text = raw if isinstance(raw, str) else raw.decode()
                at = text.find(prefix)
                if at >= 0:  # a bench comment: no JSON parsing on the hot path
                    start = at + len(prefix)
                    round_no = int(text[start : text.index("-", start)])
                    times = self.arrivals.setdefault(round_no, [])
                    times.append(now)
                    if len(times) == 1:
                        rounds.arrived(round_no)
                elif '"ping"' in text and json.loads(text).get("type") == "ping":
                    await self.ws.send('{"type":"pong"}')
                else:
                    self.errors.append(text[:300])
        except ConnectionClosed:
            pass
        if not rounds.closing:
            self.errors.append(f"socket closed by the server: {self.ws.close_code}")


async def open_follower(
    url: str, token: str, server: int, rounds: Rounds, deflate: bool, into: list[Follower]
) -> None:
    ws = await connect(
        url,
        subprotocols=[Subprotocol("graphql-transport-ws")],
        compression="deflate" if deflate else None,
        ping_interval=None,
        proxy=None,
        open_timeout=15,
    )
    follower = Follower(ws, server)
    into.append(follower)  # from here on the caller closes it, whatever happens
    async with asyncio.timeout(15):
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        ack = await ws.recv()
        if json.loads(ack).get("type") != "connection_ack":
            raise RuntimeError(f"no connection_ack: {ack!r}")
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": FOLLOWED}}))
    follower.task = asyncio.create_task(follower.read(rounds))


async def close_all(followers: list[Follower], rounds: Rounds) -> None:
    rounds.closing = True
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            await asyncio.gather(*(f.ws.close() for f in followers), return_exceptions=True)
    for follower in followers:
        follower.ws.transport.abort()  # no-op when closed; cuts a socket that did not close
        if follower.task is not None:
            follower.task.cancel()
    await asyncio.gather(*(f.task for f in followers if f.task), return_exceptions=True)
    followers.clear()


async def wait_held(http: httpx.AsyncClient, bases: list[str], want: list[int], secs: int) -> None:
    """Wait until each server's gauge crm_live_subscriptions (GET /metrics) shows `want`."""
    deadline = time.monotonic() + secs
    while True:
        pages = [(await http.get(f"{base}/metrics")).text for base in bases]
        if (counts := [int(float(GAUGE.findall(page)[0])) for page in pages]) == want:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"servers hold {counts} subscriptions after {secs} s, want {want}")
        await asyncio.sleep(0.1)


def rss_kib(pid: int) -> int:
    return int(re.findall(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())[0])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(values: list[float]) -> tuple[float, float, float]:
    """p50, p99 (nearest rank) and max."""
    ordered = sorted(values)
    return (
        ordered[math.ceil(0.5 * len(ordered)) - 1],
        ordered[math.ceil(0.99 * len(ordered)) - 1],
        ordered[-1],
    )


def cell(figures: list[float]) -> str:
    """Median over rounds, with the min-max spread, in ms."""
    ms = [f * 1000 for f in figures]
    return f"{statistics.median(ms):7.1f} [{min(ms):.1f}-{max(ms):.1f}]"


async def baseline_refused(n: int) -> str | None:
    """Why Redis cannot take the baseline's n + 1 connections now, or None when it can."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        info = await client.info("clients")
    finally:
        await client.aclose()
    if "maxclients" not in info:  # a server that does not say: let the baseline try
        return None
    connected, most = int(info["connected_clients"]), int(info["maxclients"])
    need = connected + n + REDIS_SPARE
    if need <= most:
        return None
    return (
        f"its {n + 1} connections, the {connected} open and a margin of {REDIS_SPARE} exceed "
        f"Redis's maxclients {most} (redis-cli CONFIG SET maxclients {need} lets it run)"
    )


async def redis_baseline(n: int, rounds: int) -> list[tuple[float, float, float]]:
    """PUBLISH to N raw redis.asyncio subscribers in this process: p50/p99/max per round."""
    channel = f"crm-bench-baseline-{uuid.uuid4().hex[:8]}"
    pool = aioredis.ConnectionPool.from_url(REDIS_URL, max_connections=n + 10)
    client = aioredis.Redis(connection_pool=pool)
    arrivals: list[dict[int, float]] = [{} for _ in range(n)]
    subs = [client.pubsub(ignore_subscribe_messages=True) for _ in range(n)]

    tally = Rounds("")

    async def listen(i: int, pubsub: aioredis.client.PubSub) -> None:
        async for message in pubsub.listen():
            now, round_no = time.perf_counter(), int(message["data"])
            if arrivals[i].setdefault(round_no, now) == now:
                tally.arrived(round_no)

    tasks: list[asyncio.Task[None]] = []
    results: list[tuple[float, float, float]] = []
    try:
        await bounded(OPEN_CONCURRENCY, [partial(s.subscribe, channel) for s in subs])
        tasks = [asyncio.create_task(listen(i, s)) for i, s in enumerate(subs)]
        await asyncio.sleep(0.5)
        for r in range(rounds):
            tally.start(r, n)
            t0 = time.perf_counter()
            receivers = await client.publish(channel, str(r))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tally.done.wait(), ROUND_TIMEOUT)
            got = [a[r] - t0 for a in arrivals if r in a]
            if receivers != n or len(got) != n:
                raise RuntimeError(f"baseline: {receivers} receivers, {len(got)} of {n} arrived")
            results.append(summary(got))
            await asyncio.sleep(0.2)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(s.aclose() for s in subs), return_exceptions=True)
        await client.aclose()
        await pool.disconnect()
    return results


def server_problems(server: ServerProcess) -> list[str]:
    """Log lines above INFO (LOG_LEVEL=WARNING: all but the start banner)."""
    text = server.log_path.read_text(errors="replace") if server.log_path.exists() else ""
    return [line for line in text.splitlines() if line and not line.startswith("Serving")]


def score(followers: list[Follower], marks: list[tuple[float, float]], out: dict[str, Any]) -> None:
    """Per round: latencies of each socket's first delivery; missing and duplicate ones."""
    for r, (t_request, t_response) in enumerate(marks):
        got = [(f.arrivals[r], f.server) for f in followers if f.arrivals.get(r)]
        missing, duplicates = len(followers) - len(got), sum(len(t) - 1 for t, _ in got)
        if missing or duplicates:
            out["errors"].append(f"round {r}: {missing} missing, {duplicates} duplicates")
        firsts = [(times[0], server) for times, server in got]
        if firsts:
            last = [max((t for t, s in firsts if s == i), default=math.nan) for i in (0, 1)]
            row = {"mutation": t_response - t_request, "by_server": [t - t_response for t in last]}
            row["response"] = summary([t - t_response for t, _ in firsts])
            row["request"] = summary([t - t_request for t, _ in firsts])
            out["rounds"].append(row)
    strays = [e for f in followers for e in f.errors]
    if strays:
        out["errors"].append(f"{len(strays)} unexpected messages or closes, e.g. {strays[:3]}")


async def run_size(n: int, args: argparse.Namespace, db_url: str, bus_url: str) -> dict[str, Any]:
    """Two fresh servers, n followers seeded and subscribed, memory, then the rounds."""
    env = {**SERVER_ENV, "DATABASE_URL": db_url, "BROADCAST_URL": bus_url}
    env["BUS_CHANNEL"] = f"crm-bench-{uuid.uuid4().hex[:8]}"
    servers = [ServerProcess(env), ServerProcess(env)]
    rounds = Rounds(f"bench{uuid.uuid4().hex[:6]}-r")
    followers: list[Follower] = []
    out: dict[str, Any] = {"followers": n, "errors": [], "rounds": []}
    try:
        async with contextlib.AsyncExitStack() as stack:
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=30, trust_env=False))
            for server in servers:
                stack.push_async_callback(server.stop)
                await server.start()
            bases = [s.base_url for s in servers]
            urls = [b.replace("http://", "ws://") + "/graphql" for b in bases]
            started = time.perf_counter()
            admin, lead_id, tokens = await seed(http, bases[0], db_url, n)
            log(f"  seeded {n} followers in {time.perf_counter() - started:.1f} s")
            stack.push_async_callback(close_all, followers, rounds)
            opener = partial(open_follower, rounds=rounds, deflate=args.deflate, into=followers)
            # One subscription on each server first, then none: one-off imports and caches.
            await bounded(2, [partial(opener, url, tokens[i], i) for i, url in enumerate(urls)])
            await wait_held(http, bases, [1, 1], 15)
            await close_all(followers, rounds)
            await wait_held(http, bases, [0, 0], 15)
            rounds.closing = False
            await asyncio.sleep(1)
            pids = [s.process.pid for s in servers if s.process is not None]
            before = [rss_kib(pid) for pid in pids]
            started = time.perf_counter()
            jobs = [partial(opener, urls[i % 2], tokens[i], i % 2) for i in range(n)]
            await asyncio.wait_for(bounded(OPEN_CONCURRENCY, jobs), timeout=60 + n * 0.1)
            want = [len(range(0, n, 2)), len(range(1, n, 2))]
            await wait_held(http, bases, want, 60)
            log(f"  {n} subscriptions held {want} in {time.perf_counter() - started:.1f} s")
            await asyncio.sleep(2)  # idle
            after = [rss_kib(pid) for pid in pids]
            out["kib_per_sub"] = [(a - b) / w for a, b, w in zip(after, before, want, strict=True)]
            out["rss_mib"] = [(b / 1024, a / 1024) for b, a in zip(before, after, strict=True)]
            response = followers[0].ws.response
            out["extensions"] = response and response.headers.get("Sec-WebSocket-Extensions")
            out["load"] = os.getloadavg()[0]
            marks: list[tuple[float, float]] = []
            cpu = [cpu_seconds(pid) for pid in pids] + [time.process_time()]
            for r in range(args.rounds):
                rounds.start(r, n)
                t_request = time.perf_counter()
                await gql(http, bases[0], COMMENT, admin, r=lead_id, b=f"{rounds.prefix}{r}-end")
                marks.append((t_request, time.perf_counter()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(rounds.done.wait(), ROUND_TIMEOUT)
                await asyncio.sleep(0.5)  # stragglers and duplicates; rounds never overlap
            cpu_now = [cpu_seconds(pid) for pid in pids] + [time.process_time()]
            out["cpu_ms"] = [
                (b - a) * 1000 / args.rounds for a, b in zip(cpu, cpu_now, strict=True)
            ]
            await asyncio.sleep(1)
            score(followers, marks, out)
    finally:
        out["server_logs"] = [server_problems(s) for s in servers]
        for server in servers:
            server.log_path.unlink(missing_ok=True)
        if "load" not in out:  # failed before the rounds: show what the servers said
            log("\n".join(line for lines in out["server_logs"] for line in lines[-5:]))
    return out


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def report(results: list[dict[str, Any]], args: argparse.Namespace, base: dict[int, Any]) -> None:
    packages = ("strawberry-graphql", "redis", "asyncpg", "broadcaster", "uvicorn", "websockets")
    load = ", ".join(f"{x:.2f}" for x in args.load)
    print(f"\nLive fan-out over the {args.bus} bus; {os.cpu_count()} cores, {platform.platform()}")
    print(f"Load average at the start (1, 5, 15 min): {load}")
    print(
        f"Python {platform.python_version()}; "
        + ", ".join(f"{p} {metadata.version(p)}" for p in packages)
    )
    print(
        "2 fresh server processes per follower count (fresh organization, lead and users), the\n"
        "followers split evenly between them, the comment sent to server 1 over HTTP. The client\n"
        "(this one process, uvloop) shares the cores with both servers, Redis and PostgreSQL.\n"
        f"Figures in ms: median over {args.rounds} rounds [min-max over rounds] of the p50, p99 "
        "and max over\nall deliveries of a round, timed from just after the mutation's response "
        "or just before\nits request. KiB: RSS growth per idle subscription, server 1, server 2.\n"
    )
    print(f"{'followers':>9} {'procs':>5}  {'from':<19}" + "".join(f"{h:<23}" for h in HEADS))

    def row(n: int, procs: str, label: str, figures: list[Any], extra: str = "") -> None:
        cells = "".join(f"{cell([f[i] for f in figures]):<23}" for i in range(3))
        print(f"{n:>9} {procs:>5}  {label:<19}{cells}{extra}")

    for res in results:
        n, rows = res["followers"], res["rounds"]
        kib = ", ".join(f"{k:.1f}" for k in res.get("kib_per_sub", []))
        if rows:
            row(n, "2", "mutation response", [r["response"] for r in rows], kib)
            row(n, "2", "mutation request", [r["request"] for r in rows])
        if isinstance(base[n], str):
            print(f"{n:>9} {'-':>5}  {'baseline PUBLISH':<19}skipped: {base[n]}")
        else:
            row(n, "-", "baseline PUBLISH", base[n])
    print(
        "\nbaseline PUBLISH: one Redis PUBLISH to N raw redis.asyncio subscribers held by this\n"
        "process, from the publish call: the floor for N sockets read by one Python client here."
    )
    for res in results:
        rss = ", ".join(f"s{i + 1} {b:.1f} -> {a:.1f}" for i, (b, a) in enumerate(res["rss_mib"]))
        print(f"\n{res['followers']} followers: RSS MiB {rss}; 1-min load {res['load']:.2f}")
        print(f"  websocket extensions: {res['extensions']}")
        s1, s2, client = res["cpu_ms"]
        print(
            f"  CPU per round: server 1 {s1:.0f} ms (mutation and fan-out), server 2 {s2:.0f} ms "
            f"({s2 * 1000 / (res['followers'] // 2):.0f} us per delivery), client {client:.0f} ms"
        )
        for r, f in enumerate(res["rounds"]):
            ms = "/".join(f"{v * 1000:.1f}" for v in f["response"])
            by = ", ".join(f"s{i + 1} {v * 1000:.1f}" for i, v in enumerate(f["by_server"]))
            print(
                f"  round {r}: mutation {f['mutation'] * 1000:.1f} ms; from response "
                f"p50/p99/max {ms} ms; max by server {by} ms"
            )
        for i, lines in enumerate(res["server_logs"]):
            shown = "".join(f"\n    {line[:400]}" for line in lines[:5])
            print(f"  server {i + 1} log: {len(lines)} warning/error lines{shown}")
        for error in res["errors"]:
            print(f"  ERROR: {error}")


HEADS = ("p50 ms", "p99 ms", "max ms", "KiB/idle sub")


async def main(args: argparse.Namespace) -> int:
    args.load = os.getloadavg()
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)  # like Ctrl-C
    # The server processes started below inherit this soft limit: raised to the hard limit
    # (parse() checked it fits N sockets), it covers the client's N and each server's N/2.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    name = f"crm_bench_{uuid.uuid4().hex[:10]}"
    db_url = f"postgres://postgres@127.0.0.1:5432/{name}"
    bus_url = REDIS_URL if args.bus == "redis" else db_url
    results: list[dict[str, Any]] = []
    baseline: dict[int, Any] = {}  # per N: the rounds' figures, or why it was skipped
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        await migrate(db_url)
        for n in args.followers:
            refused = await baseline_refused(n)
            if refused is None:
                log(f"{n} followers: baseline, {args.rounds} rounds")
                baseline[n] = await redis_baseline(n, args.rounds)
            else:
                log(f"{n} followers: baseline skipped: {refused}")
                baseline[n] = refused
            log(f"{n} followers: servers, seeding, sockets, {args.rounds} rounds")
            results.append(await run_size(n, args, db_url, bus_url))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    report(results, args, baseline)
    return 1 if any(res["errors"] for res in results) else 0


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Live fan-out benchmark (see the docstring).")
    parser.add_argument("--followers", default="100,1000", help="comma-separated counts")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bus", choices=["redis", "postgres"], default="redis")
    parser.add_argument("--quick", action="store_true", help="smoke run: 50 followers, 3 rounds")
    parser.add_argument(
        "--no-deflate", dest="deflate", action="store_false", help="offer no permessage-deflate"
    )
    args = parser.parse_args()
    args.followers = [50] if args.quick else [int(x) for x in args.followers.split(",") if x]
    args.rounds = 3 if args.quick else args.rounds
    if not args.followers or min(args.followers) < 2 or not 1 <= args.rounds <= 100:
        parser.error("followers must be >= 2 and rounds between 1 and 100")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < max(args.followers) + FD_SPARE:
        parser.error(
            f"{max(args.followers)} followers need {max(args.followers) + FD_SPARE} open files, "
            f"and the hard limit is {hard}: raise it (ulimit -Hn, or LimitNOFILE in systemd)"
        )
    return args


if __name__ == "__main__":
    options = parse()
    wall = time.perf_counter()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in background
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            code = runner.run(main(options))
    except (KeyboardInterrupt, asyncio.CancelledError):
        code = 130
    log(f"wall time {time.perf_counter() - wall:.1f} s")
    sys.exit(code)
