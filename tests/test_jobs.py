"""Background jobs through the API: launchCampaign answers at once and its job does the work,
live progress, cancelling, SMTP retries, a runner killed with SIGKILL mid-campaign, and the
per-organization slots.

Each test runs real server processes (and `manage.py worker` processes) on a database of its
own, with a real SMTP server (aiosmtpd) on loopback and short lease and backoff settings.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from models import Job, JobState, Organization
from resolvers.jobs import HANDLERS, Runner, Work, enqueue
from tests.conftest import (
    POSTGRES_ADMIN_URL,
    LiveServer,
    _create_postgres_database,
    _drop_postgres_database,
)
from tests.helpers import Member, Org, new_org
from tests.processes import ROOT, ServerProcess, _terminate, free_port
from tests.test_campaigns import CREATE, LAUNCH, PROGRESS, segment
from tests.test_live_bus import REDIS_URL
from tests.ws import Completed, OperationError, live_client

CANCEL = "mutation($id: ID!) { cancelCampaign(id: $id) { status } }"
CONTACT = "mutation($input: CreateContactInput!) { createContact(input: $input) { id } }"
MESSAGES = """query($after: String) { messages(first: 100, after: $after) {
  nodes { toEmail status attempts lastError } pageInfo { hasNextPage endCursor }
} }"""
JOBS = "{ backgroundJobs(first: 10) { nodes { kind state attempts lastError } } }"
LIVE = """subscription($id: ID!) { campaignProgress(campaignId: $id) {
  status progress { members messaged skipped pending sent failed waiting }
} }"""


class Sink:
    """A real SMTP server on loopback that keeps what it is sent, and the connections used."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.peers: set[Any] = set()
        self.contents: list[bytes] = []
        self.delay = 0.0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        await asyncio.sleep(self.delay)
        self.received.extend(envelope.rcpt_tos)
        self.peers.add(session.peer)
        self.contents.append(envelope.content)
        return "250 OK"


class Switch:
    """Starts and stops the SMTP server on its port (a stopped aiosmtpd Controller cannot start
    again: each start is a new one)."""

    def __init__(self, handler: Sink, port: int) -> None:
        self.handler, self.port = handler, port
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int, Switch]]:
    handler = Sink()
    switch = Switch(handler, free_port())
    switch.start()
    try:
        yield handler, switch.port, switch
    finally:
        switch.stop()


@pytest.fixture(scope="module")
async def database(live_server: LiveServer) -> AsyncIterator[str]:
    """A migrated database of the suite's kind, for these tests' processes alone."""
    tmp = None
    pg_name = None
    if live_server.database == "sqlite":
        tmp = tempfile.TemporaryDirectory(prefix="crm-jobs-")
        url = f"sqlite://{Path(tmp.name) / 'crm.sqlite3'}"
    else:
        pg_name, url = await _create_postgres_database()
    env = {**os.environ, "DATABASE_URL": url}
    await asyncio.to_thread(
        subprocess.run, [sys.executable, "manage.py", "migrate"], cwd=ROOT, env=env, check=True
    )
    try:
        yield url
    finally:
        if pg_name:
            await _drop_postgres_database(pg_name)
        if tmp:
            tmp.cleanup()


def settings_env(url: str, smtp_port: int, **extra: Any) -> dict[str, str]:
    values = {
        "DATABASE_URL": url,
        "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "SMTP_FROM": "crm@seller.example",
        "JOB_POLL_SECONDS": "0.2",
        "JOB_LEASE_SECONDS": "2",
        "JOB_RETRY_BASE_SECONDS": "0.2",
        "CAMPAIGN_BATCH_SIZE": "5",
        "MESSAGE_ATTEMPTS": "3",
        "MESSAGE_RETRY_BASE_SECONDS": "0.3",
        # campaignProgress moves by the job's rings alone (its safety poll waits 30 s).
        "CAMPAIGN_PROGRESS_SECONDS": "30",
        "CAMPAIGN_PROGRESS_MIN_SECONDS": "0.05",
        "RATE_LIMIT_PER_SECOND": "0",
        "RATE_LIMIT_ORG_PER_SECOND": "0",
        "SIGNUPS_PER_HOUR": "0",
        "LOGIN_FAILURES_PER_ACCOUNT": "0",
        "LOGIN_FAILURES_PER_ADDRESS": "0",
        **{name: str(value) for name, value in extra.items()},
    }
    return values


async def email_campaign(member: Member, size: int, *, no_email: int = 0) -> dict[str, Any]:
    """A campaign to `size` new contacts (the last `no_email` of them without an address)."""
    tag = f"t{uuid.uuid4().hex[:10]}"
    for n in range(size):
        email = None if n >= size - no_email else f"c{n}.{tag}@client.example"
        values = {"firstName": f"C{n}", "lastName": tag, "email": email, "tags": [tag]}
        await member.api.data(CONTACT, input=values)
    tagged = await segment(member, tag)
    values = {
        "name": f"Campaign {tag}",
        "channel": "EMAIL",
        "segmentId": tagged["id"],
        "subjectTemplate": "Héllo {{contact.first_name}}",
        "bodyTemplate": "Dear {{contact.first_name}}, ça va ?",
    }
    made = (await member.api.data(CREATE, input=values))["createCampaign"]
    made["tag"] = tag
    return made


async def progress(member: Member, campaign_id: str) -> dict[str, Any]:
    return (await member.api.data(PROGRESS, id=campaign_id))["node"]


async def until(member: Member, campaign_id: str, done: Any, timeout: float = 60) -> dict:  # noqa: ASYNC109 (how long the job may take)
    deadline = time.monotonic() + timeout
    while True:
        found = await progress(member, campaign_id)
        if done(found):
            return found
        assert time.monotonic() < deadline, f"not there after {timeout} s: {found}"
        await asyncio.sleep(0.1)


def finished(found: dict[str, Any]) -> bool:
    p = found["progress"]
    return found["status"] != "LAUNCHING" and p["waiting"] == 0


async def campaign_messages(member: Member) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = None
    while True:
        page = (await member.api.data(MESSAGES, after=after))["messages"]
        found += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            return found
        after = page["pageInfo"]["endCursor"]


async def org_on(server: ServerProcess) -> tuple[Org, httpx.AsyncClient]:
    http = httpx.AsyncClient(base_url=server.base_url, timeout=30, trust_env=False)
    return await new_org(http), http


async def test_launch_answers_at_once_and_progress_moves_live_to_the_end(database, sink):
    inbox, port, _ = sink
    inbox.delay = 0.1  # (the launch lasts over a second: the job rings at most every 0.2 s)
    env = settings_env(
        database, port, SMTP_CONNECTIONS=2, PRUNE_CHANGES_HOURS=0.001, LIFECYCLE_SWEEP_HOURS=0.001
    )
    async with ServerProcess(env) as server:
        org, http = await org_on(server)
        other, other_http = await org_on(server)
        try:
            made = await email_campaign(org.manager, 30, no_email=5)
            async with live_client(server.base_url, org.seller.api.token) as reader:
                live = await reader.subscribe(LIVE, {"id": made["id"]})
                first = await live.next()
                assert first["data"]["campaignProgress"]["status"] == "PLANNED"
                started = time.monotonic()
                answer = (await org.manager.api.data(LAUNCH, id=made["id"]))["launchCampaign"]
                assert time.monotonic() - started < 1.0
                assert answer["status"] == "LAUNCHING"
                seen = []
                with pytest.raises(Completed):
                    while True:
                        seen.append((await live.next(timeout=30))["data"]["campaignProgress"])
            # The stream ended with the launch: it saw the counts move, then ACTIVE.
            messaged = [s["progress"]["messaged"] for s in seen]
            assert messaged == sorted(messaged) and len(set(messaged)) > 2, seen
            assert seen[-1]["status"] == "ACTIVE"
            done = await until(org.manager, made["id"], finished)
            assert done["progress"] == {
                "members": 30, "messaged": 25, "skipped": 5, "pending": 0, "sent": 25,
                "failed": 0, "waiting": 0,
            }  # fmt: skip
            assert sorted(inbox.received) == sorted(
                f"c{n}.{made['tag']}@client.example" for n in range(25)
            )
            sent = email.message_from_bytes(inbox.contents[0], policy=email.policy.default)
            assert str(sent["Subject"]).startswith("Héllo C")
            assert sent.get_content().startswith("Dear C") and "ça va ?" in sent.get_content()
            assert str(sent["From"]).endswith("<crm@seller.example>")
            # The light builder keeps the headers of one message: a Date, and the named To.
            (to,) = sent["To"].addresses
            assert to.display_name == f"C{to.username.split('.')[0][1:]} {made['tag']}", to
            assert abs(sent["Date"].datetime - datetime.now(UTC)) < timedelta(minutes=5)
            # Two SMTP connections per batch of 5 (five batches), not one per message.
            assert len(inbox.peers) <= 10, len(inbox.peers)

            # Admins see the organization's jobs; others do not, nor another organization.
            jobs = (await org.admin.api.data(JOBS))["backgroundJobs"]["nodes"]
            assert [(j["kind"], j["state"]) for j in jobs] == [("campaign.launch", "DONE")]
            assert await org.manager.api.error_code(JOBS) == "FORBIDDEN"
            assert (await other.admin.api.data(JOBS))["backgroundJobs"]["nodes"] == []
            async with live_client(server.base_url, other.admin.api.token) as outsider:
                refused = await outsider.subscribe(LIVE, {"id": made["id"]})
                with pytest.raises(OperationError) as error:
                    await refused.next()
                assert error.value.errors[0]["extensions"]["code"] == "NOT_FOUND"
            metrics = (await http.get("/metrics")).text
            assert 'crm_jobs_runs_total{kind="campaign.launch",outcome="done"}' in metrics
            # The scheduled upkeep ran in this process too.
            assert 'crm_jobs_runs_total{kind="changes.prune",outcome="done"}' in metrics
            assert 'crm_jobs_runs_total{kind="lifecycle.sweep",outcome="done"}' in metrics
        finally:
            await http.aclose()
            await other_http.aclose()


@pytest.mark.parametrize("bus", ["embedded", "redis", "postgres", "lost"])
async def test_progress_is_pushed_through_the_hub_at_a_bounded_rate(database, sink, tmp_path, bus):
    """The job rings the hub as the counts move: from the server's own runner (embedded, memory
    bus), or from a worker over Redis or PostgreSQL to the server's hub. The subscription's
    safety poll is 30 s, so what moves within it came by a ring; messages are at least
    CAMPAIGN_PROGRESS_MIN_SECONDS apart. A worker on a memory bus of its own (its rings reach
    nobody: "lost") is made up for by the safety poll."""
    inbox, port, _ = sink
    inbox.delay = 0.05
    size, least = 40, 0.3
    bus_url = {"redis": REDIS_URL, "postgres": POSTGRES_ADMIN_URL}.get(bus, "memory://")
    env = settings_env(
        database, port, SMTP_CONNECTIONS=1, BROADCAST_URL=bus_url,
        BUS_CHANNEL=f"crm-test-{uuid.uuid4().hex[:8]}", JOBS_EMBEDDED=int(bus == "embedded"),
        CAMPAIGN_PROGRESS_SECONDS=1 if bus == "lost" else 30,
        CAMPAIGN_PROGRESS_MIN_SECONDS=least,
    )  # fmt: skip
    async with ServerProcess(env) as server:
        worker = None if bus == "embedded" else start_worker(env, tmp_path / "worker.log")
        org, http = await org_on(server)
        try:
            made = await email_campaign(org.manager, size)
            await asyncio.sleep(1.0)  # the worker is up and polling
            async with live_client(server.base_url, org.seller.api.token) as reader:
                live = await reader.subscribe(LIVE, {"id": made["id"]})
                assert (await live.next())["data"]["campaignProgress"]["status"] == "PLANNED"
                await org.manager.api.data(LAUNCH, id=made["id"])
                seen: list[tuple[float, dict[str, Any]]] = []
                with pytest.raises(Completed):
                    while True:
                        found = (await live.next(timeout=20))["data"]["campaignProgress"]
                        seen.append((time.monotonic(), found))
        finally:
            if worker is not None:
                await _terminate(worker, 10)
            await http.aclose()
    assert seen[-1][1]["status"] == "ACTIVE"
    assert seen[-1][1]["progress"] == {
        "members": size, "messaged": size, "skipped": 0, "pending": 0, "sent": size,
        "failed": 0, "waiting": 0,
    }  # fmt: skip
    if bus == "lost":
        return
    sent = [found["progress"]["sent"] for _, found in seen]
    assert sent == sorted(sent) and len(set(sent)) > 3, seen  # it moved, live, step by step
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(seen)]
    assert min(gaps) > least - 0.1, gaps  # (less the websocket's jitter)


async def test_cancelling_stops_a_launch_under_way(database, sink):
    inbox, port, _ = sink
    inbox.delay = 0.05
    async with ServerProcess(settings_env(database, port)) as server:
        org, http = await org_on(server)
        try:
            made = await email_campaign(org.manager, 60)
            await org.manager.api.data(LAUNCH, id=made["id"])
            await until(org.manager, made["id"], lambda f: f["progress"]["messaged"] >= 10)
            assert (await org.manager.api.data(CANCEL, id=made["id"]))["cancelCampaign"][
                "status"
            ] == "CANCELLED"
            await asyncio.sleep(1.5)  # the batch under way ends, then nothing more
            stopped = (await progress(org.manager, made["id"]))["progress"]
            await asyncio.sleep(1.0)
            assert (await progress(org.manager, made["id"]))["progress"] == stopped
            assert 10 <= stopped["messaged"] < 60 and stopped["pending"] == 60 - stopped["messaged"]
            # What was recorded before the cancel is delivered, none left in the outbox.
            assert len(inbox.received) == stopped["messaged"] == stopped["sent"]
            assert {m["status"] for m in await campaign_messages(org.manager)} == {"SENT"}
        finally:
            await http.aclose()


async def test_smtp_down_then_up_is_retried_and_delivered(database, sink):
    inbox, port, controller = sink
    controller.stop()  # the SMTP server is down at the launch
    env = settings_env(database, port, MESSAGE_ATTEMPTS=8, MESSAGE_RETRY_BASE_SECONDS=0.3)
    async with ServerProcess(env) as server:
        org, http = await org_on(server)
        try:
            made = await email_campaign(org.manager, 8)
            await org.manager.api.data(LAUNCH, id=made["id"])
            await until(org.manager, made["id"], lambda f: f["status"] == "ACTIVE")
            waiting = await campaign_messages(org.manager)
            assert {m["status"] for m in waiting} == {"OUTBOX"}
            assert all(m["lastError"] for m in waiting)
            await asyncio.sleep(0.5)
            controller.start()  # back up
            done = await until(org.manager, made["id"], finished)
            assert (done["progress"]["sent"], done["progress"]["failed"]) == (8, 0)
            delivered = await campaign_messages(org.manager)
            assert {m["status"] for m in delivered} == {"SENT"}
            assert min(m["attempts"] for m in delivered) >= 2  # failed first, then went
            assert len(inbox.received) == 8
        finally:
            await http.aclose()


async def test_a_message_fails_with_its_reason_after_the_retry_budget(database):
    dead = free_port()  # nothing listens there
    env = settings_env(database, dead, MESSAGE_ATTEMPTS=3, MESSAGE_RETRY_BASE_SECONDS=0.2)
    async with ServerProcess(env) as server:
        org, http = await org_on(server)
        try:
            made = await email_campaign(org.manager, 6)
            await org.manager.api.data(LAUNCH, id=made["id"])
            done = await until(org.manager, made["id"], finished)
            assert (done["status"], done["progress"]["failed"], done["progress"]["sent"]) == (
                "ACTIVE",
                6,
                0,
            )
            failed = await campaign_messages(org.manager)
            assert {(m["status"], m["attempts"]) for m in failed} == {("FAILED", 3)}
            assert all("Connect" in m["lastError"] or "refused" in m["lastError"] for m in failed)
        finally:
            await http.aclose()


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", "worker"],
            cwd=ROOT,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_a_worker_killed_mid_campaign_leaves_it_to_another_exactly_once(
    database, sink, tmp_path
):
    inbox, port, _ = sink
    inbox.delay = 0.03
    size = 60
    # The server only answers: two workers run the jobs; the first is killed with SIGKILL.
    env = settings_env(database, port, JOBS_EMBEDDED=0)
    async with ServerProcess(env) as server:
        org, http = await org_on(server)
        first = second = None
        try:
            made = await email_campaign(org.manager, size)
            first = start_worker(env, tmp_path / "first.log")
            await asyncio.sleep(1.0)  # the first worker is up and polling
            await org.manager.api.data(LAUNCH, id=made["id"])
            await until(org.manager, made["id"], lambda f: f["progress"]["messaged"] >= 15)
            first.kill()  # no goodbye: its lease expires in 2 s
            await asyncio.to_thread(first.wait)
            halfway = (await progress(org.manager, made["id"]))["progress"]
            assert halfway["pending"] > 0, halfway
            second = start_worker(env, tmp_path / "second.log")
            done = await until(org.manager, made["id"], finished)
            assert done["progress"] == {
                "members": size, "messaged": size, "skipped": 0, "pending": 0, "sent": size,
                "failed": 0, "waiting": 0,
            }  # fmt: skip
            messages = await campaign_messages(org.manager)
            addresses = [m["toEmail"] for m in messages]
            assert len(addresses) == size and len(set(addresses)) == size  # one message each
            assert set(inbox.received) == set(addresses)  # every one delivered
            # At least once: a batch in flight at the kill may be delivered again, no more.
            assert len(inbox.received) - size <= 5
        finally:
            for worker in (first, second):
                if worker is not None:
                    await _terminate(worker, 10)
            await http.aclose()


async def test_one_organizations_campaigns_leave_slots_to_another(database, sink):
    inbox, port, _ = sink
    inbox.delay = 0.05
    env = settings_env(database, port, JOB_SLOTS=2, JOB_ORG_SLOTS=1)
    async with ServerProcess(env) as server:
        big, big_http = await org_on(server)
        small, small_http = await org_on(server)
        try:
            bigs = [await email_campaign(big.manager, 40) for _ in range(3)]
            mine = await email_campaign(small.manager, 3)
            for made in bigs:
                await big.manager.api.data(LAUNCH, id=made["id"])
            await asyncio.sleep(0.5)
            await small.manager.api.data(LAUNCH, id=mine["id"])
            await until(small.manager, mine["id"], finished, timeout=20)
            still = [await progress(big.manager, made["id"]) for made in bigs]
            assert sum(s["status"] == "LAUNCHING" for s in still) >= 2, still
            for made in bigs:
                await until(big.manager, made["id"], finished)
        finally:
            await big_http.aclose()
            await small_http.aclose()


async def test_an_organizations_cap_holds_with_many_claimers_at_once(live_server):
    """Seven runners (six here, the test server's own) claim one organization's jobs at the
    same instants (each on its own pooled connection on PostgreSQL, interleaving on the one
    connection on SQLite): never more than `job_org_slots` run."""
    organization = await Organization.create(name=f"Claims {uuid.uuid4().hex[:6]}")
    slots = live_server.settings.job_org_slots  # the test server's runner claims them too
    running, most, done = 0, 0, 0

    async def hold(work: Work) -> None:
        nonlocal running, most, done
        running += 1
        most = max(most, running)
        try:
            await asyncio.sleep(0.2)
        finally:
            running -= 1
            done += 1

    HANDLERS["test.hold"] = hold
    size = 16
    for n in range(size):
        key = f"test.hold:{organization.id}:{n}"
        await enqueue("test.hold", key, {}, organization_id=organization.id)
    config = replace(live_server.settings, job_slots=4, job_poll_seconds=0.05)
    runners = [Runner(config) for _ in range(6)]
    try:
        await asyncio.gather(*(runner.start() for runner in runners))
        deadline = time.monotonic() + 30
        while done < size:
            assert time.monotonic() < deadline, f"{done} of {size} jobs ran"
            await asyncio.sleep(0.05)
    finally:
        await asyncio.gather(*(runner.stop() for runner in runners))
        HANDLERS.pop("test.hold", None)
    assert most == slots, f"{most} jobs of one organization ran at once (cap {slots})"
    finished = await Job.filter(organization_id=organization.id, state=JobState.DONE).count()
    assert finished == size


def most_at_once(lines: list[str]) -> int:
    """The most jobs running at one instant, from "start|end <time> <job>" lines."""
    moves = sorted(
        (float(when), 1 if what == "start" else -1)
        for what, when, _ in (line.split() for line in lines)
    )  # at equal times an end (-1) sorts before a start: touching intervals do not overlap
    running = most = 0
    for _, step in moves:
        running += step
        most = max(most, running)
    return most


def start_claimer(env: dict[str, str], organization_id: str, log: Path) -> subprocess.Popen:
    """Three runners in a process of their own (tests/claimers.py)."""
    command = [sys.executable, "-m", "tests.claimers", "run", organization_id, "3", str(log)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)


async def test_an_organizations_cap_holds_with_processes_claiming_at_once(database, tmp_path):
    """Four processes of three runners each (each process on its own connection, so on SQLite
    too) claim one organization's 24 jobs at the same instants, due together: never more than
    `job_org_slots` of them run at once, and every one runs once."""
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "JOB_SLOTS": "4",
        "JOB_ORG_SLOTS": "2",
        "JOB_POLL_SECONDS": "0.02",
        "JOB_LEASE_SECONDS": "30",
    }
    size, processes = 24, 4
    queued = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tests.claimers", "queue", str(size), "4"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    organization_id = queued.stdout.split()[-1]
    logs = [tmp_path / f"claims{n}.log" for n in range(processes)]
    claimers = [start_claimer(env, organization_id, log) for log in logs]
    try:
        for claimer in claimers:
            assert await asyncio.to_thread(claimer.wait, 90) == 0
    finally:
        for claimer in claimers:
            await _terminate(claimer, 5)
    lines = [line for log in logs if log.exists() for line in log.read_text().splitlines()]
    assert len(lines) == 2 * size, lines  # each job ran once, to its end
    assert len({line.split()[2] for line in lines}) == size
    assert sum(log.exists() and log.read_text() != "" for log in logs) > 1  # they shared them
    assert most_at_once(lines) == 2, sorted(lines, key=lambda line: float(line.split()[1]))


def niceness(pid: int) -> int:
    """A process's nice value: field 19 of /proc/<pid>/stat (Linux)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


async def test_a_worker_lowers_its_cpu_priority(database, sink, tmp_path):
    _, port, _ = sink
    env = settings_env(database, port, JOB_WORKER_NICENESS=7)
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        deadline = time.monotonic() + 30
        log = tmp_path / "worker.log"
        while "running jobs" not in log.read_text():
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.1)
        assert niceness(worker.pid) == os.nice(0) + 7  # above ours by 7
    finally:
        await _terminate(worker, 10)


async def test_a_batchs_delivery_outcomes_are_built_before_their_transaction(
    org, live_server, sink, monkeypatch
):
    """The transaction that records a batch's delivery outcomes (its messages SENT, the
    campaign's counts) builds none of its statements inside it (resolvers/prepared.py)."""
    from tortoise import connections
    from tortoise.backends.base.client import TransactionalDBClient
    from tortoise.queryset import UpdateQuery

    from models import Message, MessageStatus, User
    from resolvers.message import deliver_batch
    from tests.helpers import pk
    from tests.test_campaigns import _tagged_contacts, launched

    inbox, port, _ = sink
    tag = f"outcomes{pk(org.admin.id)}"
    await _tagged_contacts(org, tag, 3)
    values = {"name": "Outcomes", "channel": "EMAIL", "subjectTemplate": "S", "bodyTemplate": "B"}
    made = (
        await org.manager.api.data(
            CREATE, input={**values, "segmentId": (await segment(org.manager, tag))["id"]}
        )
    )["createCampaign"]
    await org.manager.api.data(LAUNCH, id=made["id"])
    assert (await launched(org.manager, made["id"]))["status"] == "ACTIVE"  # (no SMTP: outbox)
    messages = await Message.filter(campaign_id=pk(made["id"]))
    sender = await User.get(id=pk(org.manager.id))
    config = replace(
        live_server.settings, smtp_url=f"smtp://127.0.0.1:{port}", smtp_from="crm@seller.example"
    )
    built: list[tuple[str, bool]] = []
    make_update = UpdateQuery._make_query

    def spy_update(self: UpdateQuery) -> None:
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_name != "deliver_batch":
            frame = frame.f_back  # type: ignore[assignment]
        if frame is not None:
            inside = isinstance(connections.get("default"), TransactionalDBClient)
            built.append((self.model.__name__, inside))
        make_update(self)

    monkeypatch.setattr(UpdateQuery, "_make_query", spy_update)
    await deliver_batch(config, messages, sender)
    assert len(inbox.received) == 3
    statuses = await Message.filter(campaign_id=pk(made["id"])).values_list("status", flat=True)
    assert set(statuses) == {MessageStatus.SENT}
    # SENDING (before the sending), then SENT and the campaign's counts (the outcomes).
    assert [name for name, _ in built] == ["Message", "Message", "Campaign"], built
    assert [name for name, inside in built if inside] == [], built
