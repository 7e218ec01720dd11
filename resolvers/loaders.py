"""Per-request DataLoaders: every relation of the graph is fetched through one of these.

Each batch function runs one statement for all the keys of a tick, scoped to the organization,
and returns results in key order.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from strawberry.dataloader import DataLoader
from tortoise import timezone
from tortoise.expressions import Subquery
from tortoise.fields import DatetimeField, Field
from tortoise.fields.data import CharEnumFieldInstance, IntEnumFieldInstance
from tortoise.models import Model
from tortoise.queryset import QuerySet

from models import (
    Account,
    ActivityAttendee,
    Contact,
    ContactTag,
    Event,
    LineItem,
    Organization,
    PipelineStage,
    Product,
    User,
)
from resolvers.statements import sql_of

if TYPE_CHECKING:
    from resolvers.deal_kinds import DealKind, FollowedKind

M = TypeVar("M", bound=Model)
K = TypeVar("K")
V = TypeVar("V")


class Loader(DataLoader[K, V]):
    """A DataLoader whose shared futures no cancelled reader can cancel for the others.

    graphql-core cancels what is left of a selection when a non-null field fails; a reader
    cancelled while it awaits a key's future would cancel that future, which other readers of
    the key share, and their CancelledError would fail the whole request (an HTTP 500 instead
    of the field's error). Each read waits on a shield of the shared futures instead."""

    def load(self, key: K) -> Awaitable[V]:
        return asyncio.shield(_retrieved(super().load(key)))

    def load_many(self, keys: Iterable[K]) -> Awaitable[list[V]]:
        load = super().load
        return asyncio.shield(_retrieved(asyncio.gather(*(load(key) for key in keys))))


def _retrieved(future: Awaitable[V]) -> Awaitable[V]:
    """A shielded future whose readers were all cancelled may still fail: its error is then
    nobody's, and is taken here rather than logged as never retrieved."""
    if isinstance(future, asyncio.Future) and not future.done():  # a cached result: no need
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
    return future


def live_contact(table: str, organization: str | int) -> str:
    """A row's contact is not deleted (looked up by its key in the organization's live contacts,
    an index-only probe): the rule for participants, here and in their SQL projection
    (schema/deal.py). `organization`: the organization's id, or SQL standing for it."""
    return (
        'EXISTS (SELECT 1 FROM "contact" AS c WHERE c."organization_id" = '
        f'{organization} AND c."id" = "{table}"."contact_id" AND c."deleted_at" IS NULL)'
    )


def _by_id(rows: Iterable[M], keys: Sequence[int]) -> list[M | None]:
    found = {row.pk: row for row in rows}
    return [found.get(key) for key in keys]


async def select(model: type[M], *, order_by: str = "id", also: str = "", **equal: Any) -> list[M]:
    """Model instances of the rows whose columns equal the values given (a list: any of its
    values; None: NULL) and that meet `also` (SQL without parameters), in `order_by` order.

    For the graph's hot relations: building an `id IN (...)` query with Tortoise's query builder
    took longer than running it (about 2.7 ms for 200 ids on PostgreSQL), so the statement is
    written here, and its rows become instances with `instances`.
    """
    _, rows = await _execute(model, _all_columns(model), order_by, also, equal)
    return instances(model, rows)


@cache
def columns_of(model: type[Model]) -> tuple[str, ...]:
    """A model's columns, in the order `_all_columns` selects them (known once Tortoise is
    initialised: foreign keys' columns are added then)."""
    return tuple(model._meta.fields_db_projection.values())


@cache
def _all_columns(model: type[Model]) -> str:
    """The select list of a model's columns, each named (an extra column a migration added
    ahead of the code is not read)."""
    return ", ".join(f'"{column}"' for column in columns_of(model))


Converter = Callable[[Any], Any] | None


@cache
def _builder(model: type[Model], columns: tuple[str, ...]) -> list[tuple[str, Converter]]:
    """For each column of a statement: the attribute it fills and how its value converts."""
    meta = model._meta
    by_column: dict[str, tuple[str, Converter]] = {}
    for column, attribute, _ in meta.db_native_fields:
        by_column[column] = (attribute, None)  # the driver returns the Python value
    for column, attribute, field in meta.db_default_fields:
        by_column[column] = (attribute, _or_none(field.field_type))
    for column, attribute, field in meta.db_complex_fields:
        by_column[column] = (attribute, _converter(field))
    return [by_column[column] for column in columns]


def _or_none(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else convert(value)


def _converter(field: Field[Any]) -> Callable[[Any], Any]:
    """The field's `to_python_value`, with a shortcut giving the same value for what drivers
    return most: an enum column's stored value (its member, looked up without calling the
    enum), a time as asyncpg returns it (aware, in UTC: moved to Tortoise's time zone, the
    settings read once rather than through three calls for every value). Those conversions
    were a third of the time of making a page's opportunities."""
    convert = field.to_python_value
    if isinstance(field, CharEnumFieldInstance | IntEnumFieldInstance):
        members = field.enum_type._value2member_map_

        def member(value: Any) -> Any:
            found = members.get(value) if value is not None else None
            return found if found is not None else convert(value)

        return member
    if type(field) is DatetimeField and timezone.get_use_tz():
        zone = timezone.get_default_timezone()

        def moment(value: Any) -> Any:
            if type(value) is datetime and value.tzinfo is UTC:
                return value.astimezone(zone)
            return convert(value)

        return moment
    return convert


def instances(model: type[M], rows: Sequence[Any]) -> list[M]:
    """Model instances of full rows, exactly as `Model._init_from_db` makes them (the same
    attributes, the same conversions), with the columns' conversions looked up once per
    statement rather than once per row: half the time for a page's contacts.
    (tests/test_plans.py compares the two for every model on both databases.)"""
    if not rows:
        return []
    make = _maker(model, tuple(rows[0].keys()))
    return [make(row) for row in rows]


def instance(model: type[M], columns: Sequence[str], values: Iterable[Any]) -> M:
    """One model instance from the values of its `columns` (as `instances` builds them)."""
    return _maker(model, tuple(columns))(values)


@cache
def _maker(model: type[M], columns: tuple[str, ...]) -> Callable[[Iterable[Any]], M]:
    plan = _builder(model, columns)
    custom_pk = model._meta.db_pk_column not in model._meta.generated_db_fields

    def make(values: Iterable[Any]) -> M:
        made = model.__new__(model)
        attributes = made.__dict__
        attributes.update(
            _partial=False, _saved_in_db=True, _custom_generated_pk=custom_pk, _await_when_save={}
        )
        for (attribute, convert), value in zip(plan, values, strict=True):
            attributes[attribute] = value if convert is None else convert(value)
        return made

    return make


async def fetch(query: QuerySet[M]) -> list[M]:
    """`await query`, its rows built by `instances` when it is a plain query of whole rows
    (pages of every list: Tortoise's `_init_from_db` took 0.35 of 0.9 ms for a page of 50
    opportunities). A query with related rows, annotations or chosen fields goes through
    Tortoise. (tests/test_plans.py compares the two on both databases.)"""
    return (await fetch_with(query))[0]


async def fetch_with(
    query: QuerySet[M], also: tuple[str, list[Any]] | None = None
) -> tuple[list[M], Any]:
    """`fetch`, and `also`: a statement of one value (a count, with its parameters) read as one
    more column of the plain query's statement, returned beside the rows (None for a query
    left to Tortoise, or without rows)."""
    if (
        type(query) is not QuerySet
        or query._select_related
        or query._prefetch_map
        or query._prefetch_queries
        or query._annotations
        or query._fields_for_select
        or query._single
        or query._group_bys
        or query._select_for_update
    ):
        return list(await query), None
    if query._db is None:
        query._db = query._choose_db()
    sql, params = sql_of(query)  # what `await query` would run (built once per shape)
    if also is None:
        _, rows = await query._db.execute_query(sql, params)
        return instances(query.model, rows), None
    sql, params = _with_column(query._db.capabilities.dialect, sql, list(params), *also)
    _, rows = await query._db.execute_query(sql, params)
    if not rows:
        return [], None
    make = _maker(query.model, tuple(rows[0].keys())[:-1])
    return [make(tuple(row)[:-1]) for row in rows], rows[0][-1]


def _with_column(
    dialect: str, sql: str, params: list[Any], column: str, column_params: list[Any]
) -> tuple[str, list[Any]]:
    """A plain query's statement (`SELECT "a","b" FROM ...`: its columns are names) with one
    more column, the value of `column` (a statement of its own, with its own parameters)."""
    head, found, tail = sql.partition(" FROM ")
    if not found or not head.startswith("SELECT ") or "(" in head:
        raise ValueError(f"not a plain query: {sql[:80]}")
    if dialect == "postgres":  # $1... of the column's statement, after the query's own
        offset = len(params)
        column = re.sub(r"\$(\d+)", lambda m: f"${int(m.group(1)) + offset}", column)
        return f"{head}, ({column}){found}{tail}", [*params, *column_params]
    # SQLite's `?` are positional: the column's come first, in the select list
    return f"{head}, ({column}){found}{tail}", [*column_params, *params]


async def select_values(
    model: type[Model], columns: Sequence[str], *, order_by: str = "id", **equal: Any
) -> list[tuple[Any, ...]]:
    """The `columns` of the rows `select` would read, as tuples (for integer columns)."""
    names = ", ".join(f'"{column}"' for column in columns)
    _, rows = await _execute(model, names, order_by, "", equal)
    return [tuple(row) for row in rows]


async def _execute(
    model: type[Model], columns: str, order_by: str, also: str, equal: dict[str, Any]
) -> tuple[int, Sequence[Any]]:
    client = model._meta.db
    postgres = client.capabilities.dialect == "postgres"
    conditions: list[str] = [also] if also else []
    params: list[Any] = []

    def mark(value: Any) -> str:
        params.append(value)
        return f"${len(params)}" if postgres else "?"

    for column, value in equal.items():
        if value is None:
            conditions.append(f'"{column}" IS NULL')
        elif isinstance(value, list) and postgres:
            conditions.append(f'"{column}" = ANY({mark(value)})')
        elif isinstance(value, list):
            conditions.append(f'"{column}" IN ({", ".join(mark(item) for item in value)})')
        else:
            conditions.append(f'"{column}" = {mark(value)}')
    where = " AND ".join(conditions) or "TRUE"
    table = model._meta.db_table
    return await client.execute_query(
        f'SELECT {columns} FROM "{table}" WHERE {where} ORDER BY "{order_by}"', params
    )


class Loaders:
    def __init__(self, organization_id: int) -> None:
        self.organization_id = organization_id
        self._per_kind: dict[tuple[str, str], Loader[int, Any]] = {}
        self._organization: asyncio.Future[Organization] | None = None

    async def organization(self) -> Organization:
        """The viewer's organization, read once a request."""
        if self._organization is None:
            self._organization = asyncio.ensure_future(Organization.get(id=self.organization_id))
        return await asyncio.shield(self._organization)

    def rows(self, model: type[M], *, live: bool) -> Loader[int, M | None]:
        """The organization's rows of a model by id (`live`: not the deleted ones): the
        organization's records' read rule (resolvers/access.py), one statement a tick."""
        conditions: dict[str, Any] = {"deleted_at": None} if live else {}

        async def load(keys: list[int]) -> list[M | None]:
            rows = await select(model, id=keys, organization_id=self.organization_id, **conditions)
            return _by_id(rows, keys)

        key = (model.__name__, "live" if live else "rows")
        if key not in self._per_kind:
            self._per_kind[key] = Loader(load_fn=load)
        return self._per_kind[key]

    @property
    def user(self) -> Loader[int, User | None]:
        return self.rows(User, live=False)

    @property
    def account(self) -> Loader[int, Account | None]:
        return self.rows(Account, live=True)

    @property
    def contact(self) -> Loader[int, Contact | None]:
        return self.rows(Contact, live=True)

    @cached_property
    def tags(self) -> Loader[int, list[str]]:
        """The tags of each contact, alphabetically."""

        async def load(keys: list[int]) -> list[list[str]]:
            grouped: dict[int, list[str]] = defaultdict(list)
            rows = await (
                ContactTag.filter(contact_id__in=keys)
                .order_by("tag")
                .values_list("contact_id", "tag")
            )
            for contact_id, tag in rows:
                grouped[contact_id].append(tag)
            return [grouped[key] for key in keys]

        return Loader(load_fn=load)

    @property
    def product(self) -> Loader[int, Product | None]:
        return self.rows(Product, live=False)

    @cached_property
    def line_items(self) -> Loader[int, list[LineItem]]:
        """The line items of each opportunity, oldest first."""

        async def load(keys: list[int]) -> list[list[LineItem]]:
            grouped: dict[int, list[LineItem]] = defaultdict(list)
            for row in await LineItem.filter(opportunity_id__in=keys).order_by("id"):
                grouped[row.opportunity_id].append(row)
            return [grouped[key] for key in keys]

        return Loader(load_fn=load)

    def products_used(self, field: str, won: Any) -> Loader[int, list[int]]:
        """The ids of the products on the won opportunities (`won`: those the viewer may read)
        of each account (field "account_id") or primary contact ("contact_id")."""

        async def load(keys: list[int]) -> list[list[int]]:
            deals = won.filter(**{f"{field}__in": keys}).values("id")
            pairs = await LineItem.filter(opportunity_id__in=Subquery(deals)).values_list(
                f"opportunity__{field}", "product_id"
            )
            used: dict[int, set[int]] = defaultdict(set)
            for owner_id, product_id in pairs:
                used[owner_id].add(product_id)
            return [sorted(used[key]) for key in keys]

        key = ("products_used", field)
        if key not in self._per_kind:
            self._per_kind[key] = Loader(load_fn=load)
        return self._per_kind[key]

    @property
    def stage(self) -> Loader[int, PipelineStage | None]:
        return self.rows(PipelineStage, live=False)

    @property
    def event(self) -> Loader[int, Event | None]:
        return self.rows(Event, live=False)

    @cached_property
    def attendee_ids(self) -> Loader[int, list[int]]:
        """The ids of the live contacts taking part in each activity."""

        async def load(keys: list[int]) -> list[list[int]]:
            grouped: dict[int, list[int]] = defaultdict(list)
            rows = await (
                ActivityAttendee.filter(activity_id__in=keys, contact__deleted_at__isnull=True)
                .order_by("id")
                .values_list("activity_id", "contact_id")
            )
            for activity_id, contact_id in rows:
                grouped[activity_id].append(contact_id)
            return [grouped[key] for key in keys]

        return Loader(load_fn=load)

    def deal(self, kind: DealKind[Any]) -> Loader[int, Any]:
        return self.rows(kind.model, live=True)

    def participants(self, kind: DealKind[Any]) -> Loader[int, list[Any]]:
        """Participant rows (contact id and role) of each lead or opportunity, oldest first."""

        async def load(keys: list[int]) -> list[list[Any]]:
            grouped: dict[int, list[Any]] = defaultdict(list)
            table = kind.participant._meta.db_table
            live = live_contact(table, int(self.organization_id))
            rows = await select(kind.participant, record_id=keys, also=live)
            for row in rows:
                grouped[row.record_id].append(row)
            return [grouped[key] for key in keys]

        return self._kind_loader(kind, "participants", lambda: Loader(load_fn=load))

    def follower_ids(self, kind: FollowedKind[Any]) -> Loader[int, list[int]]:
        """The ids of the users following each record, in the order they followed."""

        async def load(keys: list[int]) -> list[list[int]]:
            grouped: dict[int, list[int]] = defaultdict(list)
            rows = await select_values(kind.follower, ["record_id", "user_id"], record_id=keys)
            for record_id, user_id in rows:
                grouped[record_id].append(user_id)
            return [grouped[key] for key in keys]

        return self._kind_loader(kind, "followers", lambda: Loader(load_fn=load))

    def forget_roles(self, kind: FollowedKind[Any], record_id: int) -> None:
        """After a write to a record's roles, later loads in this request read them anew."""
        for name in ("participants", "followers"):
            loader = self._per_kind.get((kind.name, name))
            if loader is not None and loader.cache_map.get(record_id) is not None:
                loader.clear(record_id)  # (clearing a key never loaded raises KeyError)

    def _kind_loader(self, kind: FollowedKind[Any], name: str, make: Any) -> Loader[int, Any]:
        key = (kind.name, name)
        if key not in self._per_kind:
            self._per_kind[key] = make()
        return self._per_kind[key]
