"""Operator commands, with the settings of the environment (config.py):

python manage.py migrate            apply the migrations to DATABASE_URL
python manage.py seed-demo          load the demo organization unless it is there
python manage.py export-schema      write schema/schema.graphql
python manage.py check-migrations   fail when the models need a new migration
python manage.py lifecycle-sweep    move clients whose last win is too old to inactive (daily)
python manage.py send-outbox [--failed]
                                    deliver the outbox through SMTP_URL (--failed: and retry
                                    the failed messages)
python manage.py prune-changes      forget sync changes older than SYNC_RETENTION_DAYS (daily)
python manage.py worker             run background jobs until SIGTERM (campaign launches, upkeep)
python manage.py persist-queries FILE...
                                    register documents as persisted queries (allow-list)
python manage.py rotate-secrets     re-encrypt the stored webhook secrets with the first key of
                                    SECRETS_KEYS (after putting a new key first)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from tortoise import Tortoise
from tortoise.migrations.api import migrate as run_migrations

from config import ROOT, Settings, tortoise_config

SCHEMA_FILE = ROOT / "schema" / "schema.graphql"


async def migrate(database_url: str, settings: Settings | None = None) -> None:
    """The migrations, run with `settings` (default: the environment's) on `database_url`:
    0022 encrypts the webhook secrets stored in clear with their keys."""
    from resolvers.sync import install_triggers
    from webhooks import sealing

    settings = replace(settings or Settings.from_env(), database_url=database_url)
    with sealing.migrating_with(settings):
        await run_migrations(config=tortoise_config(database_url))
    await Tortoise.close_connections()
    await Tortoise.init(config=tortoise_config(database_url))
    try:
        await install_triggers()  # the change log's (see resolvers/sync.py)
    finally:
        await Tortoise.close_connections()


async def seed_demo(settings: Settings) -> None:
    from resolvers.demo import DEMO_PASSWORD, DEMO_USERS, seed_demo

    await Tortoise.init(config=tortoise_config(settings.database_url))
    try:
        created = await seed_demo(settings)
    finally:
        await Tortoise.close_connections()
    print("Loaded the demo organization." if created else "The demo organization is there already.")
    print(f"Log in as any demo user with the password {DEMO_PASSWORD!r}:")
    for email, name, role, _ in DEMO_USERS:
        print(f"  {role.value:<14} {name:<12} {email}")
    print(
        '  mutation { login(email: "admin@demo.example", password: "demo-password") { token } }\n'
        "  then send the header  Authorization: Bearer <token>"
    )


async def pending_model_changes(database_url: str) -> list[str]:
    """Names of the migrations `tortoise makemigrations` would write now (none: in sync)."""
    from tortoise.context import TortoiseContext
    from tortoise.migrations.autodetector import MigrationAutodetector

    config = tortoise_config(database_url)
    async with TortoiseContext() as ctx:
        await ctx.init(config=config)
        assert ctx.apps is not None
        writers = await MigrationAutodetector(ctx.apps, config["apps"]).changes()
    return [f"{writer.app_label}.{writer.name}" for writer in writers]


def check_migrations() -> int:
    pending = asyncio.run(pending_model_changes("sqlite://:memory:"))
    if pending:
        print("The models and the migrations disagree; run `tortoise makemigrations`. Missing:")
        for name in pending:
            print(f"  {name}")
        return 1
    print("The migrations match the models.")
    return 0


async def lifecycle_sweep(database_url: str) -> None:
    from resolvers.lifecycle import sweep

    await Tortoise.init(config=tortoise_config(database_url))
    try:
        moved = await sweep()
    finally:
        await Tortoise.close_connections()
    print(f"{moved} contact(s) became inactive clients.")


async def send_outbox(settings: Settings, include_failed: bool) -> int:
    from resolvers.message import send_outbox as deliver_outbox

    if not settings.smtp_url:
        print("SMTP_URL is not set: nothing can be delivered.")
        return 1
    await Tortoise.init(config=tortoise_config(settings.database_url))
    try:
        outcome = await deliver_outbox(
            settings, include_failed=include_failed, stale_after=timedelta(minutes=10)
        )
    finally:
        await Tortoise.close_connections()
    print(f"{outcome['SENT']} message(s) sent, {outcome['FAILED']} failed.")
    return 0 if outcome["FAILED"] == 0 else 1


async def prune_changes(database_url: str, retention_days: int) -> None:
    from resolvers.sync import prune

    await Tortoise.init(config=tortoise_config(database_url))
    try:
        removed = await prune(timedelta(days=retention_days))
    finally:
        await Tortoise.close_connections()
    print(f"{removed} change(s) older than {retention_days} days removed.")


async def persist_queries(database_url: str, paths: list[str]) -> None:
    from resolvers.limits import register_query

    await Tortoise.init(config=tortoise_config(database_url))
    try:
        documents = {name: Path(name).read_text(encoding="utf-8") for name in paths}  # noqa: ASYNC240  (a one-off command)
        for name, document in documents.items():
            digest = await register_query(document)
            print(f"{digest}  {name}")
    finally:
        await Tortoise.close_connections()


async def rotate_secrets(settings: Settings) -> int:
    from tortoise import connections

    from webhooks import sealing

    try:
        sealer = sealing.sealer(settings)
    except sealing.SecretsError as error:
        print(error)
        return 1
    await Tortoise.init(config=tortoise_config(settings.database_url))
    try:
        changed = await sealing.reseal_all(connections.get("default"), sealer)
    finally:
        await Tortoise.close_connections()
    print(f"{changed} webhook secret(s) encrypted with the first key of SECRETS_KEYS.")
    return 0


async def worker(settings: Settings) -> None:
    """Run background jobs until SIGTERM or SIGINT (any number of workers on PostgreSQL)."""
    import signal

    from resolvers.jobs import Runner
    from subscriptions.bus import Doorbell, create_bus

    if settings.job_worker_niceness > 0:
        os.nice(settings.job_worker_niceness)  # the API processes beside it go first
    await Tortoise.init(config=tortoise_config(settings.database_url))
    # No hub here: the jobs' events and campaign progress ring the servers' hubs over the bus.
    broadcast, _ = create_bus(settings.broadcast_url)
    await broadcast.connect()
    doorbell = Doorbell(broadcast, settings.bus_channel)
    runner = Runner(settings, hub=doorbell)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await runner.start()
    print(f"Worker {runner.name} running jobs ({settings.job_slots} at once).", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.stop()
        await doorbell.close()
        await broadcast.disconnect()
        await Tortoise.close_connections()


def schema_sdl(settings: Settings) -> str:
    from schema import build_schema

    return str(build_schema(settings)).strip() + "\n"


def export_schema(settings: Settings, path: Path) -> None:
    path.write_text(schema_sdl(settings), encoding="utf-8")
    print(f"Wrote {path.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="manage.py")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="Apply the migrations to DATABASE_URL.")
    commands.add_parser("seed-demo", help="Load the demo organization unless it is there.")
    commands.add_parser("export-schema", help="Write schema/schema.graphql.")
    commands.add_parser("check-migrations", help="Fail when the models need a new migration.")
    commands.add_parser(
        "lifecycle-sweep",
        help="Move active clients whose last win is too old to inactive (run it daily).",
    )
    outbox = commands.add_parser(
        "send-outbox",
        help="Deliver the messages waiting in the outbox through SMTP_URL (and those a stopped "
        "process left half-sent for 10 minutes).",
    )
    outbox.add_argument("--failed", action="store_true", help="Retry FAILED messages too.")
    commands.add_parser(
        "worker",
        help="Run background jobs (campaign launches, the scheduled upkeep) until stopped; "
        "start any number of them on PostgreSQL, with JOBS_EMBEDDED=0 on the servers or not.",
    )
    commands.add_parser(
        "prune-changes",
        help="Forget the sync changes older than SYNC_RETENTION_DAYS (run it daily).",
    )
    persist = commands.add_parser(
        "persist-queries",
        help="Register GraphQL documents (one operation document a file) as persisted queries "
        "and print their SHA-256 (for PERSISTED_QUERIES=allowlist).",
    )
    persist.add_argument("files", nargs="+")
    commands.add_parser(
        "rotate-secrets",
        help="Re-encrypt the stored webhook secrets with the first key of SECRETS_KEYS (put a "
        "new key first, run this, then drop the old key).",
    )
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.command == "migrate":
        asyncio.run(migrate(settings.database_url, settings))
    elif args.command == "seed-demo":
        asyncio.run(seed_demo(settings))
    elif args.command == "export-schema":
        export_schema(settings, SCHEMA_FILE)
    elif args.command == "check-migrations":
        return check_migrations()
    elif args.command == "lifecycle-sweep":
        asyncio.run(lifecycle_sweep(settings.database_url))
    elif args.command == "persist-queries":
        asyncio.run(persist_queries(settings.database_url, args.files))
    elif args.command == "prune-changes":
        asyncio.run(prune_changes(settings.database_url, settings.sync_retention_days))
    elif args.command == "rotate-secrets":
        return asyncio.run(rotate_secrets(settings))
    elif args.command == "worker":
        asyncio.run(worker(settings))
    elif args.command == "send-outbox":
        return asyncio.run(send_outbox(settings, args.failed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
