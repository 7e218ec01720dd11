"""Bulk exports for partners: a whole record type as NDJSON, streamed, as of one snapshot.

On PostgreSQL the export reads through a server-side cursor inside a REPEATABLE READ, read-only
transaction: every line is as of the moment the export began, and the process holds a few
hundred rows at a time, whatever the table's size. On SQLite a single SELECT is its own snapshot;
it holds the database's one connection while it streams (the embedded default is for one user).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from tortoise import connections

from models.base import from_cents
from resolvers.events import global_id

BATCH = 500


def money(value: Any) -> str | None:
    return None if value is None else str(from_cents(value))


def reference(type_name: str) -> Callable[[Any], str | None]:
    return lambda value: None if value is None else global_id(type_name, value)


@dataclass(frozen=True)
class Export:
    """A record type's export (declared with the record: schema/records.py): its table, and
    each column exported with its name in the API and, where its value is not written as it is
    (datetimes and dates are: orjson writes them as `isoformat` does), its conversion."""

    type_name: str
    table: str
    columns: dict[str, tuple[str, Callable[[Any], Any] | None]]  # column -> (field, converter)


def _line(export: Export, row: Any) -> bytes:
    item: dict[str, Any] = {"id": global_id(export.type_name, row["id"])}
    for column, (field, convert) in export.columns.items():
        value = row[column]
        item[field] = value if convert is None else convert(value)
    return orjson.dumps(item, option=orjson.OPT_APPEND_NEWLINE)


def _dsn(database_url: str) -> str:
    return "postgresql://" + database_url.split("://", 1)[1]


async def stream(
    export: Export, organization_id: int, database_url: str | None = None
) -> AsyncIterator[bytes]:
    """The organization's live records of one type, one JSON object a line, by id. With
    `database_url` (PostgreSQL), on a connection of its own."""
    client = connections.get("default")
    columns = ", ".join(["id", *export.columns])
    where = "organization_id = {} AND deleted_at IS NULL ORDER BY id"
    if client.capabilities.dialect == "postgres":
        sql = f"SELECT {columns} FROM {export.table} WHERE {where.format('$1')}"
        # A connection of its own, outside the pool requests share: an export may stream for
        # minutes (its client reads slowly), and must not hold one of the pool's few connections
        # while other organizations' requests wait for it.
        async with contextlib.AsyncExitStack() as stack:
            connection: Any
            if database_url:
                connection = await asyncpg.connect(_dsn(database_url))
                stack.push_async_callback(connection.close)
            else:
                connection = await stack.enter_async_context(client.acquire_connection())
            await stack.enter_async_context(
                connection.transaction(isolation="repeatable_read", readonly=True)
            )
            chunk: list[bytes] = []
            async for row in connection.cursor(sql, organization_id, prefetch=BATCH):
                chunk.append(_line(export, row))
                if len(chunk) >= BATCH:
                    yield b"".join(chunk)
                    chunk = []
            if chunk:
                yield b"".join(chunk)
        return
    sql = f"SELECT {columns} FROM {export.table} WHERE {where.format('?')}"
    async with client.acquire_connection() as connection:
        cursor = await connection.execute(sql, (organization_id,))
        try:
            while rows := await cursor.fetchmany(BATCH):
                names = [description[0] for description in cursor.description]
                yield b"".join(_line(export, dict(zip(names, row, strict=True))) for row in rows)
        finally:
            await cursor.close()
