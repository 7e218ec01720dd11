"""Jobs per second through our runner (resolvers/jobs.py) and through pgqueuer, on PostgreSQL.

On a throwaway database (migrated by `manage.py migrate`, then pgqueuer's tables installed
beside ours), each round queues N no-op jobs in batches of 1,000 rows (our `job` table through
one bulk INSERT per batch; pgqueuer's `enqueue` with lists), then starts C consumers in this
process, each on its own connection(s), and times from their start until the N-th handler ran:

- ours, the jobs of no organization (no per-organization cap to check);
- ours, the jobs spread over 10 organizations (each claim takes its organization's advisory lock
  and counts its running jobs: JOB_ORG_SLOTS, 2);
- pgqueuer, one entrypoint, its defaults (batch_size 10, no concurrency limit).

Each of our consumers is a `Runner` (JOB_SLOTS 4: at most 4 handlers at once), each pgqueuer
consumer a `QueueManager` on one asyncpg connection. Rounds alternate A/B/C.

pgqueuer is not a dependency of the app: `pip install -e '.[bench-queues]'` brings it.

    .venv/bin/python bench/queues.py --jobs 5000 --consumers 4 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from tortoise import Tortoise

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import Settings, tortoise_config  # noqa: E402
from models import Job, Organization  # noqa: E402
from resolvers.jobs import HANDLERS, Runner, Work  # noqa: E402

ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
BATCH = 1000
NOOP = "bench.noop"


async def ours(url: str, jobs: int, consumers: int, organizations: list[int | None]) -> float:
    """Seconds for `consumers` runners to run `jobs` no-op jobs (queued before they start)."""
    tag = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    for start in range(0, jobs, BATCH):
        await Job.bulk_create(
            [
                Job(
                    organization_id=organizations[n % len(organizations)],
                    kind=NOOP,
                    key=f"{NOOP}:{tag}:{n}",
                    payload={},
                    run_after=now,
                )
                for n in range(start, min(start + BATCH, jobs))
            ]
        )
    ran = 0
    done = asyncio.Event()

    async def noop(work: Work) -> None:
        nonlocal ran
        ran += 1
        if ran == jobs:
            done.set()

    HANDLERS[NOOP] = noop
    config = replace(
        Settings.from_env(),
        database_url=url,
        lifecycle_sweep_hours=0,  # no scheduled upkeep jobs among ours
        prune_changes_hours=0,
        resend_outbox_minutes=0,
    )
    runners = [Runner(config) for _ in range(consumers)]
    started = time.perf_counter()
    for runner in runners:
        await runner.start()
    await done.wait()
    elapsed = time.perf_counter() - started
    for runner in runners:
        await runner.stop()
    await Job.filter(kind=NOOP).delete()
    return elapsed


async def pgqueuer(url: str, jobs: int, consumers: int) -> float:
    """Seconds for `consumers` pgqueuer QueueManagers to run `jobs` no-op jobs."""
    from pgqueuer import AsyncpgDriver, QueueManager
    from pgqueuer.queries import Queries

    producer = await asyncpg.connect(url)
    queries = Queries(AsyncpgDriver(producer))
    for start in range(0, jobs, BATCH):
        size = min(BATCH, jobs - start)
        await queries.enqueue([NOOP] * size, [None] * size, [0] * size)
    ran = 0
    done = asyncio.Event()
    managers: list[QueueManager] = []

    async def noop(job: object) -> None:
        nonlocal ran
        ran += 1
        if ran == jobs:
            done.set()

    connections = [await asyncpg.connect(url) for _ in range(consumers)]
    for connection in connections:
        manager = QueueManager(Queries(AsyncpgDriver(connection)))
        manager.entrypoint(NOOP)(noop)
        managers.append(manager)
    started = time.perf_counter()
    tasks = [asyncio.create_task(manager.run()) for manager in managers]
    await done.wait()
    elapsed = time.perf_counter() - started
    for manager in managers:
        manager.shutdown.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for connection in [producer, *connections]:
        if not connection.is_closed():
            await connection.close()
    return elapsed


async def run(args: argparse.Namespace, url: str) -> None:
    await Tortoise.init(config=tortoise_config(url))
    try:
        from pgqueuer import AsyncpgDriver
        from pgqueuer.queries import Queries

        installer = await asyncpg.connect(url)
        await Queries(AsyncpgDriver(installer)).install()
        await installer.close()
        tenants: list[int | None] = [
            (await Organization.create(name=f"Queue bench {n}")).id for n in range(10)
        ]
        results: dict[str, list[float]] = {"ours": [], "ours, 10 orgs": [], "pgqueuer": []}
        for round_ in range(args.rounds):
            rates = {
                "ours": args.jobs / await ours(url, args.jobs, args.consumers, [None]),
                "ours, 10 orgs": args.jobs / await ours(url, args.jobs, args.consumers, tenants),
                "pgqueuer": args.jobs / await pgqueuer(url, args.jobs, args.consumers),
            }
            for name, rate in rates.items():
                results[name].append(rate)
            print(
                f"round {round_ + 1}: "
                + ", ".join(f"{name} {rate:,.0f} jobs/s" for name, rate in rates.items()),
                flush=True,
            )
        print(f"\n{args.jobs} no-op jobs, {args.consumers} consumers, {args.rounds} rounds:")
        for name, rates_ in results.items():
            print(f"  {name:14} median {statistics.median(rates_):8,.0f} jobs/s  "
                  f"(min {min(rates_):,.0f}, max {max(rates_):,.0f})")  # fmt: skip
    finally:
        await Tortoise.close_connections()


async def main(args: argparse.Namespace) -> None:
    name = f"crm_queues_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = f"postgres://postgres@127.0.0.1:5432/{name}"
    try:
        env = {**os.environ, "DATABASE_URL": url}
        command = [sys.executable, "manage.py", "migrate"]
        await asyncio.to_thread(subprocess.run, command, cwd=ROOT, env=env, check=True)
        print(f"Python {platform.python_version()}, PostgreSQL database {name}", flush=True)
        await run(args, url)
    finally:
        admin = await asyncpg.connect(ADMIN_URL)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
