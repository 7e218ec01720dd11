"""Webhook signing secrets at rest: encrypted in the database, opened to sign, re-encrypted
when the keys rotate, converted by migration 0022 (webhooks/sealing.py)."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.fernet import Fernet
from tortoise import connections

from config import ROOT, Settings
from tests.conftest import LiveServer, _create_postgres_database, _drop_postgres_database
from tests.helpers import Org, create_account, new_org, pk
from tests.processes import ServerProcess
from tests.receiver import Receiver
from tests.test_history import _migrate
from tests.test_webhooks import (
    DELIVERIES,
    PAUSE,
    ROTATE,
    create_endpoint,
    delivery_settings,
    verify,
)
from webhooks import sealing


async def stored(endpoint_id: str) -> dict[str, Any]:
    """The endpoint's secret columns as the database holds them, read with SQL."""
    client = connections.get("default")
    mark = "$1" if client.capabilities.dialect == "postgres" else "?"
    rows = await client.execute_query_dict(
        f'SELECT "secret", "previous_secret" FROM "webhook_endpoint" WHERE "id" = {mark}',
        [pk(endpoint_id)],
    )
    return rows[0]


async def set_stored_secret(endpoint_id: str, value: str) -> None:
    client = connections.get("default")
    if client.capabilities.dialect == "postgres":
        sql = 'UPDATE "webhook_endpoint" SET "secret" = $1 WHERE "id" = $2'
    else:
        sql = 'UPDATE "webhook_endpoint" SET "secret" = ? WHERE "id" = ?'
    await client.execute_query(sql, [value, pk(endpoint_id)])


def suite_keys(live_server: LiveServer) -> tuple[str, ...]:
    return live_server.app.state.graphql.settings.secrets_keys


async def rotate_secrets(database_url: str, keys: list[str]) -> str:
    """`manage.py rotate-secrets` with SECRETS_KEYS=keys, in a process of its own."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "manage.py",
        "rotate-secrets",
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url, "SECRETS_KEYS": ",".join(keys)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    return output.decode()


async def attempt_errors(org: Org, endpoint_id: str) -> list[str | None]:
    data = await org.admin.api.uncompared().data(DELIVERIES, id=endpoint_id, first=1)
    edges = data["webhookDeliveries"]["edges"]
    return [a["error"] for a in edges[0]["node"]["attempts"]] if edges else []


async def test_secrets_are_stored_encrypted_and_deliveries_verify(org: Org) -> None:
    async with Receiver() as receiver:
        endpoint, secret = await create_endpoint(org.admin, receiver.url)
        row = await stored(endpoint["id"])
        assert row["secret"].startswith("fernet:") and row["previous_secret"] is None
        assert secret not in row["secret"]
        assert secret.removeprefix("whsec_") not in row["secret"]

        await create_account(org.seller)
        await receiver.wait_for(1, seconds=10)
        assert verify(secret, receiver.received[0])["recordType"] == "Account"

        # After a rotation both are sealed, and deliveries verify with each of them.
        rotated = (await org.admin.api.uncompared().data(ROTATE, id=endpoint["id"]))[
            "rotateWebhookSecret"
        ]
        row = await stored(endpoint["id"])
        assert rotated["secret"] not in row["secret"] and secret not in row["previous_secret"]
        assert row["secret"].startswith("fernet:") and row["previous_secret"].startswith("fernet:")
        await create_account(org.seller)
        await receiver.wait_for(2, seconds=10)
        assert verify(rotated["secret"], receiver.received[1])["recordType"] == "Account"
        assert verify(secret, receiver.received[1])["recordType"] == "Account"


async def test_rotating_the_keys_keeps_signing(org: Org, live_server: LiveServer) -> None:
    old = list(suite_keys(live_server))
    new = Fernet.generate_key().decode()
    async with Receiver() as receiver:
        endpoint, secret = await create_endpoint(org.admin, receiver.url)
        sealed_before = (await stored(endpoint["id"]))["secret"]
        try:
            # A new key first, the old one second: the secret sealed with the old one signs.
            async with delivery_settings(live_server, secrets_keys=(new, *old)):
                await create_account(org.seller)
                await receiver.wait_for(1, seconds=10)
                assert verify(secret, receiver.received[0])["recordType"] == "Account"

                output = await rotate_secrets(live_server.database_url, [new, *old])
                assert "encrypted with the first key" in output
                sealed = (await stored(endpoint["id"]))["secret"]
                assert sealed != sealed_before and secret not in sealed
                assert sealing.Sealer([new]).open(sealed) == secret  # the new key alone opens it

            # The old key dropped: still signing.
            async with delivery_settings(live_server, secrets_keys=(new,)):
                await create_account(org.seller)
                await receiver.wait_for(2, seconds=10)
                assert verify(secret, receiver.received[1])["recordType"] == "Account"
        finally:
            # Every endpoint of the suite's database back under the suite's key.
            await rotate_secrets(live_server.database_url, [*old, new])
        assert sealing.Sealer(old).open((await stored(endpoint["id"]))["secret"]) == secret


async def test_an_unreadable_secret_fails_the_attempt_with_a_code(
    org: Org, live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="crm.webhooks")
    async with Receiver() as receiver:
        endpoint, secret = await create_endpoint(org.admin, receiver.url)
        # A key that did not seal it: nothing is sent, the attempt says why, and is retried.
        async with delivery_settings(live_server, secrets_keys=(Fernet.generate_key().decode(),)):
            await create_account(org.seller)
            errors = await first_errors(org, endpoint["id"])
            assert str(errors[0]).startswith("SECRET_UNREADABLE: no key of SECRETS_KEYS decrypts")
            assert receiver.received == []
        logged = [r for r in caplog.records if r.name == "crm.webhooks"]
        assert any("SECRET_UNREADABLE" in r.getMessage() for r in logged)
        assert all(r.exc_info is None for r in logged)  # an error, not a crash

        # The key back: the same change is delivered on its retry, and signed.
        await receiver.wait_for(1, seconds=10)
        assert verify(secret, receiver.received[0])["recordType"] == "Account"

        # A secret found in clear is refused too (migration 0022 converts them).
        await org.admin.api.uncompared().data(PAUSE, id=endpoint["id"])
        clear, clear_secret = await create_endpoint(org.admin, receiver.url)
        await set_stored_secret(clear["id"], clear_secret)
        await create_account(org.seller)
        errors = await first_errors(org, clear["id"])
        assert errors[0] == (
            "SECRET_UNREADABLE: the secret is stored in clear: run `manage.py migrate`."
        )
        await org.admin.api.uncompared().data(PAUSE, id=clear["id"])
        assert len(receiver.received) == 1


async def first_errors(org: Org, endpoint_id: str) -> list[str | None]:
    deadline = asyncio.get_running_loop().time() + 10
    while not (errors := await attempt_errors(org, endpoint_id)):
        assert asyncio.get_running_loop().time() < deadline, "no attempt recorded"
        await asyncio.sleep(0.1)
    return errors


async def read_secrets(database_url: str) -> list[tuple[str, str | None]]:
    """Every endpoint's secret columns, read with SQL from another database than the suite's."""
    sql = 'SELECT "secret", "previous_secret" FROM "webhook_endpoint" ORDER BY "id"'
    if database_url.startswith("sqlite://"):
        with sqlite3.connect(database_url.removeprefix("sqlite://")) as db:
            return list(db.execute(sql))
    db = await asyncpg.connect(database_url)
    try:
        return [tuple(row) for row in await db.fetch(sql)]
    finally:
        await db.close()


async def test_migration_0022_seals_the_secrets_stored_in_clear(
    live_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if live_server.database == "sqlite":
        database_url, name = f"sqlite://{tmp_path / 'before.sqlite3'}", None
    else:
        name, database_url = await _create_postgres_database()
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("SECRETS_KEYS", key)  # the migrations' processes read it
    try:
        await _migrate(database_url)
        env = {
            "DATABASE_URL": database_url,
            "SIGNUPS_PER_HOUR": "0",
            "WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "1",
        }
        async with (
            ServerProcess(env) as server,
            httpx.AsyncClient(base_url=server.base_url, timeout=30) as http,
        ):
            org = await new_org(http)
            endpoint, first = await create_endpoint(org.admin, "http://127.0.0.1:9/hook")
            await org.admin.api.uncompared().data(PAUSE, id=endpoint["id"])
            rotated = await org.admin.api.uncompared().data(ROTATE, id=endpoint["id"])
            second = rotated["rotateWebhookSecret"]["secret"]

        # Back before 0022: in clear, as 0021 kept them.
        await _migrate(database_url, "models.0021_webhooks")
        assert await read_secrets(database_url) == [(second, first)]

        # 0022 seals them (with the first of SECRETS_KEYS), the previous secret too.
        await _migrate(database_url)
        [(secret, previous)] = await read_secrets(database_url)
        assert secret.startswith("fernet:") and previous is not None
        assert previous.startswith("fernet:")
        opener = sealing.Sealer([key])
        assert (opener.open(secret), opener.open(previous)) == (second, first)
    finally:
        if name is not None:
            await _drop_postgres_database(name)


def test_without_keys_one_is_made_once_beside_the_database(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite://{tmp_path / 'crm.sqlite3'}")
    made = sealing.keys(settings)
    path = tmp_path / "crm.sqlite3.keys"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(made) == 1 and sealing.keys(settings) == made  # made once, then read
    assert sealing.Sealer(made).open(sealing.Sealer(made).seal("whsec_x")) == "whsec_x"
    elsewhere = replace(settings, database_url="postgres://db.example/crm")
    assert sealing.key_file(elsewhere) == ROOT / "secrets.keys"
    assert sealing.keys(replace(settings, secrets_keys=("k",))) == ("k",)


async def start_refused(tmp_path: Path, **env: str) -> str:
    """The output of `python server.py`, which must exit before serving."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SECRETS_KEY")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "server.py",
        cwd=ROOT,
        env={**environ, "DATABASE_URL": f"sqlite://{tmp_path / 'crm.sqlite3'}", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(30):
        output, _ = await process.communicate()
    assert process.returncode == 1, output.decode()
    return output.decode()


async def test_production_refuses_to_start_without_keys(tmp_path: Path) -> None:
    output = await start_refused(tmp_path, CRM_ENV="production")
    assert "Not started: SECRETS_KEYS_MISSING: SECRETS_KEYS must be set in production" in output
    assert not (tmp_path / "crm.sqlite3.keys").exists()
    output = await start_refused(tmp_path, SECRETS_KEYS="not-a-fernet-key")
    assert "Not started: SECRETS_KEYS_INVALID" in output
