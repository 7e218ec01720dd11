"""Webhooks benchmark: how fast a committed change reaches a receiver, and how many deliveries
per second the loop makes, for one endpoint and for 100.

The app is served in this process by uvicorn (as the tests do), on a throwaway SQLite file or
PostgreSQL database (--database postgres); the receiver is a small ASGI app on another uvicorn in
this process too (tests/receiver.py), answering 204 at once. Both share this process's event loop
and the machine's cores with the database: the figures are an upper bound of the loop's cost, not
of a receiver's.

- Latency: R rounds of one `createAccount` per organization, spaced; for each delivery, the time
  from the change's `changedAt` (written by the change log's trigger, in the transaction) to its
  arrival at the receiver: p50, p99 and max.
- Throughput: every endpoint paused, C changes made per organization, every endpoint resumed;
  deliveries received per second until all arrived.

One endpoint: one organization with one endpoint. 100 endpoints: 25 organizations with 4
endpoints each (WEBHOOK_ORG_CONCURRENCY, 4 by default, endpoints of one organization deliver at
once in a process).

    .venv/bin/python bench/webhooks.py                    # SQLite
    .venv/bin/python bench/webhooks.py --database postgres
    .venv/bin/python bench/webhooks.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import datetime
from pathlib import Path

os.environ.setdefault("ARGON2_TIME_COST", "1")
os.environ.setdefault("ARGON2_MEMORY_KIB", "1024")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import uvicorn  # noqa: E402

from config import Settings  # noqa: E402
from manage import migrate  # noqa: E402
from server import create_app  # noqa: E402
from tests.helpers import CREATE_ACCOUNT, Org, new_org  # noqa: E402
from tests.processes import free_port  # noqa: E402
from tests.receiver import Receiver  # noqa: E402
from tests.test_webhooks import CREATE, PAUSE, RESUME  # noqa: E402

POSTGRES_ADMIN = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def scenario(
    http: httpx.AsyncClient, receiver: Receiver, orgs: int, per_org: int, rounds: int, burst: int
) -> None:
    receiver.received.clear()
    members: list[Org] = [await new_org(http) for _ in range(orgs)]
    endpoints: list[tuple[Org, str]] = []
    for org in members:
        for _ in range(per_org):
            data = await org.admin.api.data(CREATE, input={"url": receiver.url})
            endpoints.append((org, data["createWebhookEndpoint"]["webhookEndpoint"]["id"]))
    total = len(endpoints)

    # Latency: one change per organization per round, spaced so that rounds do not queue.
    arrivals: list[float] = []
    expected = 0
    for _ in range(rounds):
        await asyncio.gather(
            *(org.admin.api.data(CREATE_ACCOUNT, input={"name": "Latency"}) for org in members)
        )
        expected += total
        await receiver.wait_for(expected, seconds=60)
        await asyncio.sleep(0.05)
    for received in receiver.received:
        changed = datetime.fromisoformat(received.json["changedAt"]).timestamp()
        arrivals.append((received.at - changed) * 1000)
    print(
        f"  latency over {len(arrivals)} deliveries: p50 {percentile(arrivals, 0.5):.1f} ms, "
        f"p99 {percentile(arrivals, 0.99):.1f} ms, max {max(arrivals):.1f} ms"
    )

    # Throughput: a backlog of `burst` changes per organization, delivered once resumed.
    for org, endpoint_id in endpoints:
        await org.admin.api.data(PAUSE, id=endpoint_id)
    for org in members:
        for start in range(0, burst, 50):
            await asyncio.gather(
                *(
                    org.admin.api.data(CREATE_ACCOUNT, input={"name": f"Burst {i}"})
                    for i in range(start, min(burst, start + 50))
                )
            )
    receiver.received.clear()
    started = time.perf_counter()
    for org, endpoint_id in endpoints:
        await org.admin.api.data(RESUME, id=endpoint_id)
    deliveries = burst * total
    await receiver.wait_for(deliveries, seconds=600)
    elapsed = time.perf_counter() - started
    print(
        f"  backlog of {burst} changes x {total} endpoints: {deliveries} deliveries in "
        f"{elapsed:.1f} s, {deliveries / elapsed:.0f} deliveries/s"
    )
    for org, endpoint_id in endpoints:
        await org.admin.api.data(PAUSE, id=endpoint_id)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, burst = (5, 50) if args.quick else (40, 200)
    tmp = tempfile.TemporaryDirectory(prefix="crm-bench-webhooks-")
    name = f"crm_bench_{uuid.uuid4().hex[:10]}"
    if args.database == "postgres":
        connection = await asyncpg.connect(POSTGRES_ADMIN)
        await connection.execute(f'CREATE DATABASE "{name}"')
        await connection.close()
        url = POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    else:
        url = f"sqlite://{Path(tmp.name) / 'crm.sqlite3'}"
    try:
        await migrate(url)
        config = replace(
            Settings.from_env(),
            database_url=url,
            rate_limit_per_second=0,
            rate_limit_org_per_second=0,
            signups_per_hour=0,
            login_failures_per_account=0,
            login_failures_per_address=0,
            webhook_allow_private_addresses=True,
            log_level="WARNING",
        )
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning")
        )
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        async with (
            Receiver() as receiver,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http,
        ):
            print(f"database: {args.database}; {os.cpu_count()} cores; Python {sys.version[:6]}")
            print("one endpoint:")
            await scenario(http, receiver, orgs=1, per_org=1, rounds=rounds * 5, burst=burst * 5)
            print("100 endpoints (25 organizations x 4):")
            await scenario(http, receiver, orgs=25, per_org=4, rounds=rounds, burst=burst)
        server.should_exit = True
        await task
    finally:
        if args.database == "postgres":
            connection = await asyncpg.connect(POSTGRES_ADMIN)
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await connection.close()
        tmp.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
