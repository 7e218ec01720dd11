"""Statements built before the transaction that runs them (a launch's record transactions, a
batch's delivery outcomes).

Building a statement (Tortoise resolving its filters and expressions, pypika writing its SQL, a
bulk insert converting every field of every row) costs the event loop 0.5-2 ms at a launch's
sizes; inside a transaction the job takes no turns (resolvers/foreground.py), so that work ran
in one piece while this process's requests waited for the loop, and on SQLite for its one
connection. Built beforehand, between the job's turns, the transaction only sends them.

`update`, `insert` and `run` use Tortoise's own query building (its private steps, which its
`__await__` runs), so that the SQL and the values are those the ORM would send."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.models import Model
from tortoise.queryset import UpdateQuery

from resolvers.statements import render


@dataclass(frozen=True)
class Prepared:
    """A statement and its values: one row (`many` False) or several (an executemany)."""

    sql: str
    values: list[Any]
    many: bool = False


def update(query: UpdateQuery) -> Prepared:
    """An UPDATE's SQL and values, as awaiting `query` would send them."""
    return Prepared(*render(query, for_write=True))


def insert(model: type[Model], objects: Sequence[Model]) -> Prepared:
    """The INSERT of these new rows (no primary key of their own: the database numbers them),
    as `model.bulk_create(objects)` would send it; their ids stay unset, as with bulk_create."""
    query = model.bulk_create(objects)
    query._choose_db_if_not_chosen(True)
    query._executor = query._db.executor_class(model=model, db=query._db)
    query._objects = list(objects)
    if any(instance._custom_generated_pk for instance in query._objects):
        raise ValueError("prepared.insert numbers new rows only (no primary key given)")
    omit = query._analyze_db_default_fields(query._executor.regular_columns)
    sql, _ = query._make_queries(omit)
    columns = [column for column in query._executor.regular_columns if column not in omit]
    fields = model._meta.fields_map
    rows = [
        [fields[column].to_db_value(getattr(instance, column), instance) for column in columns]
        for instance in query._objects
    ]
    return Prepared(sql, rows, many=True)


async def run(connection: BaseDBAsyncClient, statement: Prepared) -> int:
    """Send a prepared statement on `connection` (the transaction's); the rows an UPDATE
    changed (an INSERT: the rows given)."""
    if statement.many:
        if statement.values:
            await connection.execute_many(statement.sql, statement.values)
        return len(statement.values)
    return int((await connection.execute_query(statement.sql, statement.values))[0])
