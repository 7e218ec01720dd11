"""The suite runs the real app, served by uvicorn over loopback HTTP, on SQLite and PostgreSQL.

Every test gets its own organization (signUp), so tests share a database without sharing data.
The PostgreSQL database is created for the session and dropped after it. A test that needs other
settings serves another app beside it, in this process (`live_server.serve(...)`).
"""

from __future__ import annotations

import os

from cryptography.fernet import Fernet

# Cheap password hashing for the suite (the production defaults take ~50 ms a hash on purpose).
os.environ.setdefault("ARGON2_TIME_COST", "1")
os.environ.setdefault("ARGON2_MEMORY_KIB", "1024")
os.environ.setdefault("CORS_ORIGINS", "https://app.example")
# No scheduled upkeep in the suite's processes (a resend of the shared outbox would deliver other
# tests' messages to a test's SMTP server): tests/test_jobs.py turns it on where it checks it.
os.environ.setdefault("LIFECYCLE_SWEEP_HOURS", "0")
os.environ.setdefault("PRUNE_CHANGES_HOURS", "0")
os.environ.setdefault("RESEND_OUTBOX_MINUTES", "0")
# One key for the secrets of the suite's apps and of the server processes it starts, which
# inherit the environment (without it, each would make a key file of its own under PostgreSQL;
# tests/test_webhook_secrets.py tests that file).
os.environ.setdefault("SECRETS_KEYS", Fernet.generate_key().decode())

import logging
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from config import Settings
from manage import migrate
from observability import request_id_var
from resolvers import statements
from schema.engine import plans
from tests.apps import AppServer, serve
from tests.helpers import Api, Org, new_org

# tests.paging holds assertions of its own: let pytest explain their failures.
pytest.register_assert_rewrite("tests.paging")

POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"
)
# One database per pytest process: Tortoise keeps the SQL dialect of its first init for the life
# of a process, so `make test` runs the suite once on SQLite and once on PostgreSQL.
DATABASE = os.environ.get("TEST_DATABASE", "sqlite")
if DATABASE not in ("sqlite", "postgres"):
    raise RuntimeError(f"TEST_DATABASE must be sqlite or postgres, not {DATABASE!r}")
# Plans proven: under CI (or PLANS_COMPARE=1), the suite's server runs every planned operation
# on graphql-core as well, and a test whose request answered differently fails with the diff.
PLANS_COMPARE = os.environ.get("PLANS_COMPARE", "1" if os.environ.get("CI") else "0").lower() in {
    "1",
    "true",
    "yes",
    "on",
}


@dataclass
class LiveServer:
    database: str
    database_url: str
    base_url: str
    settings: Settings  # the app's
    app: Any = None  # the Starlette app (tests/test_webhooks.py reaches its delivery loop)

    def serve(self, **changes: Any) -> AbstractAsyncContextManager[AppServer]:
        """Another app on the same database, in this process, with these settings changed:
        `async with live_server.serve(max_query_cost=50) as server: ... server.base_url`."""
        return serve(replace(self.settings, **changes), orm=False)


async def _create_postgres_database() -> tuple[str, str]:
    name = f"crm_test_{uuid.uuid4().hex[:12]}"
    try:
        conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=10)
    except (OSError, asyncpg.PostgresError) as error:
        message = f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {error}"
        if os.environ.get("CI"):
            pytest.fail(message)  # under CI a missing database is a failure, never a skip
        pytest.skip(message)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    return name, f"{base}/{name}"


async def _drop_postgres_database(name: str) -> None:
    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def pytest_report_header() -> str:
    return f"database: {DATABASE}, plans compared with graphql-core: {PLANS_COMPARE}"


@pytest.fixture(autouse=True)
def _plans_answer_as_graphql_core() -> Iterator[None]:
    """A planned operation of this test that answered unlike graphql-core fails it (the API
    helper fails at the request; this catches the rest: raw requests, live events). So does a
    statement from the shape cache unlike Tortoise's (resolvers/statements.py)."""
    plans.MISMATCHES.clear()
    statements.MISMATCHES.clear()
    yield
    found = [*plans.MISMATCHES, *statements.MISMATCHES]
    plans.MISMATCHES.clear()
    statements.MISMATCHES.clear()
    assert not found, "\n\n".join(found)


@pytest.fixture(scope="session")
async def live_server() -> AsyncIterator[LiveServer]:
    database = DATABASE
    tmp: tempfile.TemporaryDirectory[str] | None = None
    pg_name = None
    if database == "sqlite":
        tmp = tempfile.TemporaryDirectory(prefix="crm-test-")
        database_url = f"sqlite://{Path(tmp.name) / 'crm.sqlite3'}"
    else:
        pg_name, database_url = await _create_postgres_database()
    await migrate(database_url)
    # Rate limits, login throttling and sign-up limits are tested on apps of their own
    # (tests/test_limits.py, tests/test_doors.py): every test here signs up and logs in.
    settings = replace(
        Settings.from_env(),
        database_url=database_url,
        rate_limit_per_second=0,
        rate_limit_org_per_second=0,
        signups_per_hour=0,
        login_failures_per_account=0,
        login_failures_per_address=0,
        plans_compare=PLANS_COMPARE,
        # Webhooks go to receivers on loopback, and retry quickly (tests/test_webhooks.py).
        webhook_allow_private_addresses=True,
        webhook_poll_seconds=0.5,
        webhook_backoff_seconds=0.2,
        webhook_backoff_max_seconds=1.0,
        webhook_lease_seconds=5.0,
        webhook_timeout_seconds=3.0,
    )
    try:
        async with serve(settings, orm=True) as server:
            yield LiveServer(database, database_url, server.base_url, settings, server.app)
    finally:
        if pg_name:
            await _drop_postgres_database(pg_name)
        if tmp:
            tmp.cleanup()


@pytest.fixture
async def http(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=30) as client:
        yield client


@pytest.fixture
def api(http: httpx.AsyncClient) -> Api:
    """An anonymous GraphQL client."""
    return Api(http)


@pytest.fixture
async def org(http: httpx.AsyncClient) -> Org:
    """A fresh organization with an admin, a sales manager and two sellers."""
    return await new_org(http)


@pytest.fixture
async def other_org(http: httpx.AsyncClient) -> Org:
    return await new_org(http)


class _Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.statements: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # Only statements run for an HTTP request count (observability's middleware sets its id):
        # the live hub, the job runner and the webhooks' delivery read and write on timers of
        # their own, in the same process, and those statements are not the request's.
        if request_id_var.get() == "-":
            return
        message = record.getMessage().lstrip()
        if message.split(" ", 1)[0].upper() in {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH"}:
            self.statements.append(message)


@pytest.fixture
def sql_statements() -> Iterator[callable]:  # type: ignore[valid-type]
    """`with sql_statements() as seen:` collects the SQL statements the server runs meanwhile."""
    logger = logging.getLogger("tortoise.db_client")

    @contextmanager
    def collect() -> Iterator[list[str]]:
        counter = _Counter()
        previous = logger.level
        logger.addHandler(counter)
        logger.setLevel(logging.DEBUG)
        try:
            yield counter.statements
        finally:
            logger.removeHandler(counter)
            logger.setLevel(previous)

    yield collect
