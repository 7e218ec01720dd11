"""The checked-in SDL and migrations must match the code."""

from __future__ import annotations

import subprocess
import sys

from config import ROOT, Settings
from manage import SCHEMA_FILE, schema_sdl


def test_exported_schema_is_current():
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_sdl(Settings()), (
        "schema/schema.graphql is stale: run `make schema` and commit it"
    )


def test_migrations_match_the_models():
    # A separate process: Tortoise binds one set of models per process, and the server runs here.
    result = subprocess.run(
        [sys.executable, "manage.py", "check-migrations"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_type_and_field_is_described():
    from graphql import GraphQLEnumType, GraphQLInputObjectType, GraphQLObjectType

    from schema import build_schema

    schema = build_schema(Settings())._schema
    undescribed = []
    for name, graphql_type in schema.type_map.items():
        if name.startswith("__") or name in {"String", "Int", "Boolean", "ID", "Float"}:
            continue
        needs_description = isinstance(graphql_type, GraphQLObjectType | GraphQLInputObjectType)
        needs_description = needs_description or isinstance(graphql_type, GraphQLEnumType)
        generated = name.endswith(("Connection", "Edge"))
        if needs_description and not generated and not graphql_type.description:
            undescribed.append(name)
    for root in (schema.query_type, schema.mutation_type):
        assert root is not None
        undescribed += [
            f"{root.name}.{field}" for field, value in root.fields.items() if not value.description
        ]
    assert undescribed == []


# The SDL clients were last given (update it, and empty the list below, at each release). A
# change graphql-core finds breaking against it must be listed here, with the words of its
# **breaking** entry in CHANGELOG.md; anything else goes through deprecation.
PUBLISHED_FILE = ROOT / "schema" / "published.graphql"
ACCEPTED_BREAKING = {
    "Field Notification.event changed type from Event! to Event.": (
        "`Notification.event` is nullable"
    ),
}


def test_breaking_changes_are_deliberate_and_announced():
    from graphql import build_schema, find_breaking_changes

    published = build_schema(PUBLISHED_FILE.read_text(encoding="utf-8"))
    current = build_schema(SCHEMA_FILE.read_text(encoding="utf-8"))
    found = {change.description for change in find_breaking_changes(published, current)}
    assert found <= ACCEPTED_BREAKING.keys(), (
        "breaking SDL changes: deprecate instead, or list them in ACCEPTED_BREAKING and in the "
        f"CHANGELOG: {sorted(found - ACCEPTED_BREAKING.keys())}"
    )
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    for description, words in ACCEPTED_BREAKING.items():
        entry = changelog.find(words)
        assert entry >= 0 and "**breaking**" in changelog[max(0, entry - 200) : entry], description
