"""Fairness between organizations: another organization's latency while one is at its limits.

On a throwaway PostgreSQL database, one `server.py` process (the limits as configured below)
serves two organizations. Organization B's client sends the same small list query, one at a
time, and we measure its p50 and p99:

1. alone (organization A idle);
2. with organization A at its limits: A's clients send as fast as the server answers them, so A
   lives on its organization's bucket (most of its requests answered RATE_LIMITED), A holds its
   export slot with a client that reads nothing, and A keeps sending new persisted queries.

Rounds alternate (alone, loaded, alone, loaded...) so that both are measured minutes apart at
most; each figure is the median over rounds (min-max). The goal: B's p99 under load within 1.5x
of its p99 alone.

    .venv/bin/python bench/fairness.py            # 5 rounds of 10 s
    .venv/bin/python bench/fairness.py --quick    # 2 rounds of 3 s
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from manage import migrate  # noqa: E402
from tests.processes import ServerProcess  # noqa: E402

ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
PASSWORD = "bench-password-123"
SIGN_UP = """mutation($input: SignUpInput!) { signUp(input: $input) { token } }"""
CREATE_ACCOUNT = "mutation($name: String!) { createAccount(input: {name: $name}) { id } }"
PAGE = "{ accounts(first: 20) { totalCount nodes { id name owner { fullName } } } }"
ENV = {
    "LOG_LEVEL": "WARNING",
    "EVENT_POLL_SECONDS": "60",
    "RATE_LIMIT_PER_SECOND": "20",
    "RATE_LIMIT_BURST": "40",
    "RATE_LIMIT_ORG_PER_SECOND": "50",
    "RATE_LIMIT_ORG_BURST": "100",
    "EXPORT_SEND_TIMEOUT_SECONDS": "600",
}
NOISY_CLIENTS = 8


async def sign_up(http: httpx.AsyncClient, name: str) -> str:
    values = {"organizationName": name, "fullName": name, "password": PASSWORD}
    email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@bench.example"
    answer = await http.post(
        "/graphql", json={"query": SIGN_UP, "variables": {"input": {**values, "email": email}}}
    )
    return answer.json()["data"]["signUp"]["token"]


async def call(http: httpx.AsyncClient, token: str, body: dict[str, Any]) -> str | None:
    answer = await http.post("/graphql", json=body, headers={"authorization": f"Bearer {token}"})
    errors = answer.json().get("errors")
    return errors[0]["extensions"]["code"] if errors else None


async def measure(http: httpx.AsyncClient, token: str, seconds: float) -> list[float]:
    timings: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        began = time.perf_counter()
        assert await call(http, token, {"query": PAGE}) is None
        timings.append((time.perf_counter() - began) * 1000)
    return timings


async def noisy(base_url: str, token: str, stop: asyncio.Event, codes: dict[str, int]) -> None:
    """One of organization A's clients: the page, and new persisted queries, without pause."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30, trust_env=False) as http:
        while not stop.is_set():
            query = (
                f"query Noise{uuid.uuid4().hex[:12]} {{ accounts(first: 20) {{ nodes {{ id }} }} }}"
            )
            digest = hashlib.sha256(query.encode()).hexdigest()
            persisted = {"version": 1, "sha256Hash": digest}
            for body in (
                {"query": PAGE},
                {"query": query, "extensions": {"persistedQuery": persisted}},
            ):
                code = await call(http, token, body) or "ok"
                codes[code] = codes.get(code, 0) + 1


async def held_export(base_url: str, token: str, stop: asyncio.Event) -> int:
    """Organization A's export, opened and never read; its status."""
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=30, trust_env=False) as http,
        http.stream(
            "GET", "/export/accounts.ndjson", headers={"authorization": f"Bearer {token}"}
        ) as response,
    ):
        await stop.wait()
        return response.status_code


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


async def rounds(base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Seed both organizations, then alternate the quiet organization's rounds alone and under
    load; the figures."""
    results: dict[str, Any] = {
        key: [] for key in ("alone p50", "alone p99", "loaded p50", "loaded p99")
    }
    codes: dict[str, int] = {}
    exports: list[int] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30, trust_env=False) as http:
        noisy_token = await sign_up(http, "Noisy")
        quiet_token = await sign_up(http, "Quiet")
        for n in range(40):
            for token in (noisy_token, quiet_token):
                account = {"query": CREATE_ACCOUNT, "variables": {"name": f"A{n}"}}
                await call(http, token, account)
        await asyncio.sleep(3)  # the buckets refill after seeding
        await measure(http, quiet_token, 1)  # warm-up
        for _ in range(args.rounds):
            alone = await measure(http, quiet_token, args.seconds)
            results["alone p50"].append(percentile(alone, 0.5))
            results["alone p99"].append(percentile(alone, 0.99))
            stop = asyncio.Event()
            export = asyncio.create_task(held_export(base_url, noisy_token, stop))
            tasks = [
                asyncio.create_task(noisy(base_url, noisy_token, stop, codes))
                for _ in range(NOISY_CLIENTS)
            ]
            await asyncio.sleep(1)  # A reaches its limits
            loaded = await measure(http, quiet_token, args.seconds)
            stop.set()
            await asyncio.gather(*tasks)
            exports.append(await export)
            results["loaded p50"].append(percentile(loaded, 0.5))
            results["loaded p99"].append(percentile(loaded, 0.99))
            await asyncio.sleep(2)  # A's buckets refill: the next "alone" is alone
    results["codes"] = codes
    results["exports"] = exports
    return results


async def main(args: argparse.Namespace) -> None:
    name = f"crm_fairness_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    database_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        await migrate(database_url)
        async with ServerProcess({"DATABASE_URL": database_url, **ENV}) as server:
            results = await rounds(server.base_url, args)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    codes, exports = results.pop("codes"), results.pop("exports")
    ratio = statistics.median(results["loaded p99"]) / statistics.median(results["alone p99"])
    print(f"bench/fairness.py, {time.strftime('%Y-%m-%d')}, Python {platform.python_version()}")
    print(f"{args.rounds} rounds of {args.seconds} s; limits: {ENV}")
    print(f"organization A at its limits ({NOISY_CLIENTS} clients): answers {codes}")
    print(f"organization A's export, held open and unread: statuses {exports}")
    print("| organization B, one client, small list query | ms, median of rounds (min-max) |")
    print("| --- | --- |")
    for key, values in results.items():
        print(f"| {key} | {spread(values)} |")
    verdict = "met" if ratio <= 1.5 else "not met"
    print(f"| p99 loaded / alone | {ratio:.2f}x (goal <= 1.5x: {verdict}) |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 s")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.rounds, arguments.seconds = 2, 3.0
    asyncio.run(main(arguments))
