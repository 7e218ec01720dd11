"""Operator commands: `python manage.py migrate | seed-demo | export-schema`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from tortoise import Tortoise
from tortoise.migrations.api import migrate as run_migrations

from config import ROOT, settings, tortoise_config

SCHEMA_FILE = ROOT / "schema" / "schema.graphql"


async def migrate(database_url: str) -> None:
    await run_migrations(config=tortoise_config(database_url))
    await Tortoise.close_connections()


async def seed_demo(database_url: str) -> None:
    from resolvers.demo import DEMO_PASSWORD, DEMO_USERS, seed_demo

    await Tortoise.init(config=tortoise_config(database_url))
    try:
        created = await seed_demo()
    finally:
        await Tortoise.close_connections()
    print("Loaded the demo organization." if created else "The demo organization is there already.")
    print(f"Log in as any demo user with the password {DEMO_PASSWORD!r}:")
    for email, name, role, _ in DEMO_USERS:
        print(f"  {role.value:<14} {name:<12} {email}")
    print(
        '  mutation { login(email: "admin@demo.example", password: "demo-password") { token } }\n'
        '  then send the header  Authorization: Bearer <token>'
    )


def schema_sdl() -> str:
    from schema import build_schema

    return str(build_schema(settings)).strip() + "\n"


def export_schema(path: Path) -> None:
    path.write_text(schema_sdl(), encoding="utf-8")
    print(f"Wrote {path.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="manage.py")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="Apply the migrations to DATABASE_URL.")
    commands.add_parser("seed-demo", help="Load the demo organization unless it is there.")
    commands.add_parser("export-schema", help="Write schema/schema.graphql.")
    args = parser.parse_args(argv)
    if args.command == "migrate":
        asyncio.run(migrate(settings.database_url))
    elif args.command == "seed-demo":
        asyncio.run(seed_demo(settings.database_url))
    elif args.command == "export-schema":
        export_schema(SCHEMA_FILE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
