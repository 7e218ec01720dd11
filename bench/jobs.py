"""A campaign of 10,000 members launched through the API, delivered to a local SMTP sink.

On a throwaway database (SQLite file by default, or PostgreSQL), one `server.py` process serves
the API; the launch's job runs inside it (the embedded default) or, with `--worker`, in a
`manage.py worker` process beside it. A client sends a small query one at a time, before the
launch (idle) and during it, and we print its p50 and p99 in both, and how long the launch took:
the mutation's answer, every member messaged, every message accepted by the SMTP sink (aiosmtpd,
in a process of its own: in the client's process its thread held the GIL the client needed to
time its queries, adding its own wait to the API's latency during the launch only). Between two
of its queries, every 0.25 s in both phases, the client reads the campaign's progress (untimed;
never beside a timed query). We also print the queries' times as the server timed them (its
`Server-Timing` header), which tell the server's share from the machine's scheduling.

Goals: 10,000 members in under 60 s; the API's p99 during the launch within 1.5x of its idle
p99.

    .venv/bin/python bench/jobs.py                          # SQLite, jobs in the server
    .venv/bin/python bench/jobs.py --worker                 # SQLite, jobs in a worker
    .venv/bin/python bench/jobs.py --database postgres      # PostgreSQL
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiosmtpd.controller import Controller
from tortoise import Tortoise

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import tortoise_config  # noqa: E402
from models import Contact, ContactTag, User  # noqa: E402
from tests.processes import ServerProcess, _terminate, free_port  # noqa: E402

ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PASSWORD = "bench-password-123"
SIGN_UP = """mutation($input: SignUpInput!) { signUp(input: $input) { token user { id } } }"""
SEGMENT = """mutation($input: CreateSegmentInput!) { createSegment(input: $input) { id } }"""
CAMPAIGN = """mutation($input: CreateCampaignInput!) { createCampaign(input: $input) { id } }"""
LAUNCH = "mutation($id: ID!) { launchCampaign(id: $id) { status } }"
PROGRESS = """query($id: ID!) { node(id: $id) { ... on Campaign {
  status progress { members messaged skipped sent failed waiting }
} } }"""
PROBE = "{ campaigns(first: 5) { nodes { id name status } } }"
WATCH_SECONDS = 0.25  # how often the bench reads the campaign's progress, in both phases


class Sink:
    """The SMTP sink's handler, in its own process (`serve_sink`): what it received, in values
    shared with the bench."""

    def __init__(self, received: Any, connections: Any) -> None:
        self.received = received
        self.connections = connections
        self.peers: set[Any] = set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.received.get_lock():
            self.received.value += len(envelope.rcpt_tos)
        if session.peer not in self.peers:
            self.peers.add(session.peer)
            with self.connections.get_lock():
                self.connections.value += 1
        return "250 OK"


def serve_sink(port: int, received: Any, connections: Any, ready: Any, stop: Any) -> None:
    """The SMTP sink's process: aiosmtpd on 127.0.0.1:`port` until `stop` is set."""
    controller = Controller(Sink(received, connections), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


async def post(http: httpx.AsyncClient, token: str, query: str, **variables: Any) -> dict:
    response = await http.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"authorization": f"Bearer {token}"} if token else {},
    )
    body = response.json()
    assert not body.get("errors"), body
    return body["data"]


async def probe(
    http: httpx.AsyncClient, token: str, stop: asyncio.Event, watch: Callable[[], Awaitable[None]]
) -> tuple[list[float], list[float]]:
    """The API's latency, one small query at a time, until `stop`. Every WATCH_SECONDS, in the
    same sequence (never beside a timed query, in both phases), `watch()`: the bench's own
    query of the campaign's progress, untimed. (Sent beside the probe, as it was until
    2026-12-03, about 2% of the launch's probes shared the server with it, and none of the
    idle ones: the launch's p99 measured the bench's own poll.) Each query's time as this
    client saw it, and as the server timed it (its Server-Timing header), in seconds."""
    times, in_server = [], []
    headers = {"authorization": f"Bearer {token}"}
    watch_at = time.perf_counter()
    while not stop.is_set():
        if time.perf_counter() >= watch_at:
            await watch()
            watch_at += WATCH_SECONDS
            if stop.is_set():
                break
        started = time.perf_counter()
        response = await http.post("/graphql", json={"query": PROBE}, headers=headers)
        times.append(time.perf_counter() - started)
        assert not response.json().get("errors"), response.text
        in_server.append(float(response.headers["server-timing"].split(";dur=")[1]) / 1000)
        await asyncio.sleep(0.02)
    return times, in_server


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def seed_contacts(database_url: str, user_pk: int, tag: str, count: int) -> None:
    await Tortoise.init(config=tortoise_config(database_url))
    try:
        user = await User.get(id=user_pk)
        contacts = [
            Contact(
                organization_id=user.organization_id,
                first_name=f"Member{n}",
                last_name="Bench",
                email=f"m{n}.{tag}@client.example",
                owner_id=user.id,
            )
            for n in range(count)
        ]
        await Contact.bulk_create(contacts, batch_size=1000)
        ids = await Contact.filter(email__endswith=f".{tag}@client.example").values_list(
            "id", flat=True
        )
        await ContactTag.bulk_create(
            [ContactTag(contact_id=i, tag=tag) for i in ids], batch_size=1000
        )
    finally:
        await Tortoise.close_connections()


async def run(args: argparse.Namespace, database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}
    migrate = [sys.executable, "manage.py", "migrate"]
    await asyncio.to_thread(subprocess.run, migrate, cwd=ROOT, env=env, check=True)
    smtp_port = free_port()
    spawn = multiprocessing.get_context("spawn")
    received, connections = spawn.Value("q", 0), spawn.Value("q", 0)
    ready, sink_stop = spawn.Event(), spawn.Event()
    sink = spawn.Process(
        target=serve_sink, args=(smtp_port, received, connections, ready, sink_stop)
    )
    sink.start()
    if not await asyncio.to_thread(ready.wait, 30):
        sink.kill()
        raise SystemExit("the SMTP sink did not start within 30 s")
    settings = {
        "DATABASE_URL": database_url,
        "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "RATE_LIMIT_PER_SECOND": "0",
        "RATE_LIMIT_ORG_PER_SECOND": "0",
        "JOBS_EMBEDDED": "0" if args.worker else "1",
        "JOB_POLL_SECONDS": "0.2",
    }
    worker = None
    try:
        async with ServerProcess(settings) as server:
            if args.worker:
                worker = subprocess.Popen(  # noqa: ASYNC220 (started once, before measuring)
                    [sys.executable, "manage.py", "worker"],
                    cwd=ROOT,
                    env={**os.environ, **settings},
                    stdin=subprocess.DEVNULL,
                )

            async with httpx.AsyncClient(
                base_url=server.base_url, timeout=60, trust_env=False
            ) as http:
                assert server.process is not None
                pids = [server.process.pid] + ([worker.pid] if worker is not None else [])
                try:
                    await measure(args, http, database_url, (received, connections), pids,
                                  sink.pid)  # fmt: skip
                finally:
                    if args.keep_log:
                        shutil.copy(server.log_path, args.keep_log)
    finally:
        if worker is not None:
            await _terminate(worker, 10)
        sink_stop.set()
        await asyncio.to_thread(sink.join, 10)
        if sink.is_alive():  # (hung: not left behind)
            sink.kill()
            await asyncio.to_thread(sink.join, 5)


async def measure(
    args: argparse.Namespace,
    http: httpx.AsyncClient,
    database_url: str,
    sink: tuple[Any, Any],
    pids: list[int],
    sink_pid: int | None,
) -> None:
    received, connections = sink
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    signed = await post(
        http,
        "",
        SIGN_UP,
        input={
            "organizationName": "Bench",
            "fullName": "Bench Admin",
            "email": email,
            "password": PASSWORD,
        },
    )
    token = signed["signUp"]["token"]
    user_pk = int(base64.b64decode(signed["signUp"]["user"]["id"]).decode().split(":")[1])
    tag = f"bench{uuid.uuid4().hex[:6]}"
    await seed_contacts(database_url, user_pk, tag, args.members)
    segment = await post(
        http, token, SEGMENT, input={"name": "Everyone", "filter": {"tags": [tag]}}
    )
    campaign = await post(
        http,
        token,
        CAMPAIGN,
        input={
            "name": "Bench",
            "channel": "EMAIL",
            "segmentId": segment["createSegment"]["id"],
            "subjectTemplate": "Hello {{contact.first_name}}",
            "bodyTemplate": "Dear {{contact.full_name}},\nnews from {{sender.full_name}}.",
        },
    )
    campaign_id = campaign["createCampaign"]["id"]

    async def progress_of_campaign() -> dict[str, Any]:
        return dict((await post(http, token, PROGRESS, id=campaign_id))["node"])

    async def watch_idle() -> None:
        await progress_of_campaign()

    stop = asyncio.Event()
    idle_probe = asyncio.create_task(probe(http, token, stop, watch_idle))
    await asyncio.sleep(args.idle_seconds)
    stop.set()
    idle, idle_in_server = await idle_probe

    stop = asyncio.Event()
    watched: dict[str, Any] = {"messaged_at": None}

    async def watch_launch() -> None:
        found = await progress_of_campaign()
        elapsed = time.perf_counter() - started
        watched["progress"] = found["progress"]
        if watched["messaged_at"] is None and found["status"] != "LAUNCHING":
            watched["messaged_at"] = elapsed
        if watched["messaged_at"] is not None and found["progress"]["waiting"] == 0:
            watched["done_at"] = elapsed
            stop.set()
        elif elapsed > args.timeout:
            print(f"gave up after {args.timeout} s: {found}")
            stop.set()

    cpu_before = [cpu_seconds(pid) for pid in pids]
    sink_before = cpu_seconds(sink_pid) if sink_pid else 0.0
    client_before = time.process_time()
    started = time.perf_counter()
    await post(http, token, LAUNCH, id=campaign_id)
    answered = time.perf_counter() - started
    busy, busy_in_server = await probe(http, token, stop, watch_launch)
    progress, messaged_at = watched["progress"], watched["messaged_at"]
    done_at = watched.get("done_at", time.perf_counter() - started)
    cpu = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before, strict=True)]
    sink_cpu = (cpu_seconds(sink_pid) if sink_pid else 0.0) - sink_before
    client_cpu = time.process_time() - client_before

    idle_p99, busy_p99 = percentile(idle, 0.99), percentile(busy, 0.99)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    print(f"machine: {machine}, python {platform.python_version()}")
    print(
        f"database: {args.database}; jobs run in "
        f"{'a worker process' if args.worker else 'the server process'}"
    )
    print(f"members: {progress['messaged'] + progress['skipped']} of {args.members}")
    print(f"launchCampaign answered in {answered * 1000:.0f} ms")
    print(f"every member messaged (ACTIVE) after {messaged_at:.1f} s")
    print(
        f"every message delivered after {done_at:.1f} s: sent {progress['sent']}, failed "
        f"{progress['failed']}; the sink received {received.value} over {connections.value} SMTP "
        f"connections"
    )
    print(
        f"CPU during the launch: server {cpu[0]:.1f} s"
        + (f", worker {cpu[1]:.1f} s" if len(cpu) > 1 else "")
        + f", SMTP sink {sink_cpu:.1f} s, client {client_cpu:.1f} s"
    )
    print(
        f"API idle:   p50 {statistics.median(idle) * 1000:.1f} ms, p99 {idle_p99 * 1000:.1f} ms "
        f"({len(idle)} queries)"
    )
    print(
        f"API launch: p50 {statistics.median(busy) * 1000:.1f} ms, p99 {busy_p99 * 1000:.1f} ms "
        f"({len(busy)} queries)"
    )
    print(
        f"in the server (Server-Timing): idle p50 {statistics.median(idle_in_server) * 1000:.1f} "
        f"ms, p99 {percentile(idle_in_server, 0.99) * 1000:.1f} ms; launch p50 "
        f"{statistics.median(busy_in_server) * 1000:.1f} ms, p99 "
        f"{percentile(busy_in_server, 0.99) * 1000:.1f} ms"
    )
    print(
        f"goals: {args.members:,} in < 60 s: {'met' if done_at < 60 else 'NOT met'} "
        f"({done_at:.1f} s); "
        f"p99 within 1.5x idle: {'met' if busy_p99 <= 1.5 * idle_p99 else 'NOT met'} "
        f"({busy_p99 / idle_p99:.2f}x)"
    )


async def main(args: argparse.Namespace) -> None:
    if args.database == "sqlite":
        with tempfile.TemporaryDirectory(prefix="crm-bench-jobs-") as tmp:
            await run(args, f"sqlite://{Path(tmp) / 'crm.sqlite3'}")
        return
    name = f"crm_bench_jobs_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(ADMIN_URL)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    try:
        await run(args, f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}")
    finally:
        conn = await asyncpg.connect(ADMIN_URL)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--worker", action="store_true", help="Run the jobs in a worker process.")
    # As long as a paced launch, about: both p99s rest on about as many queries (~1,000).
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--keep-log", help="Copy the server's log there.")
    asyncio.run(main(parser.parse_args()))
