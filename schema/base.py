"""What every slice of the schema uses: global ids, connections, ordering, input helpers."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Generic, TypeVar

import strawberry
from graphql import FieldNode
from strawberry import UNSET, relay

from resolvers.context import RequestContext
from resolvers.errors import a, bad_input, readable
from resolvers.pagination import Count, Page, PageRequest

T = TypeVar("T")
Info = strawberry.Info[RequestContext, None]


def context(info: Info) -> RequestContext:
    return info.context


# Global ids ----------------------------------------------------------------------------------


_PK_RE = re.compile(r"-?[0-9]{1,10}")
_MAX_PK = 2**31 - 1


def decode_id(value: str, field: str, *type_names: str) -> tuple[str, int]:
    """The (type name, primary key) of a global id, which must be of one of `type_names`.

    Inputs take ids as plain `ID` strings and decode them here, so that a malformed id is a
    BAD_USER_INPUT naming its field, like any other bad value.
    """
    try:
        gid = relay.GlobalID.from_id(value)
        # Plain ASCII digits only (int() also takes " 1", "1_0" and other scripts' digits), and
        # within the 32-bit key columns: a larger key would fail in the database, not here.
        if not _PK_RE.fullmatch(gid.node_id):
            raise ValueError(gid.node_id)
        pk = int(gid.node_id)
        if not -_MAX_PK <= pk <= _MAX_PK:
            raise ValueError(gid.node_id)
    except (ValueError, TypeError):
        raise bad_input(field, f"{value!s:.60} is not a valid id.") from None
    if type_names and gid.type_name not in type_names:
        kinds = [a(readable(name)) for name in type_names]
        expected = " or ".join([", ".join(kinds[:-1]), kinds[-1]] if len(kinds) > 2 else kinds)
        raise bad_input(
            field, f"Expected the id of {expected}, got the id of {a(readable(gid.type_name))}."
        )
    return gid.type_name, pk


def pk_of(value: str, field: str, type_name: str) -> int:
    return decode_id(value, field, type_name)[1]


def pks_of(values: Iterable[str] | None, field: str, type_name: str) -> list[int]:
    return [pk_of(value, field, type_name) for value in values or ()]


def values_of(data: Any, ids: dict[str, tuple[str, str]] | None = None) -> dict[str, Any]:
    """The fields an input object was given (UNSET ones left out), global ids decoded.

    `ids` maps an input field to (graphql field name, node type) for the ids it holds.
    """
    values: dict[str, Any] = {}
    for item in dataclass_fields(data):
        value = getattr(data, item.name)
        if value is UNSET:
            continue
        if ids and item.name in ids:
            field, type_name = ids[item.name]
            if isinstance(value, list):
                value = pks_of(value, field, type_name)
            elif value is not None:
                value = pk_of(value, field, type_name)
        values[item.name] = value
    return values


# Connections ---------------------------------------------------------------------------------


@strawberry.enum(description="Sort direction.")
class OrderDirection(Enum):
    ASC = "ASC"
    DESC = "DESC"


@strawberry.type(description="Where a page stands in its connection.")
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.enum(description="Whether a count is exact.")
class CountPrecision(Enum):
    EXACT = strawberry.enum_value("EXACT", description="The count is exact.")
    AT_LEAST = strawberry.enum_value(
        "AT_LEAST",
        description="At least this many: counting stopped at the server's limit (COUNT_LIMIT).",
    )


def precision(count: Count) -> CountPrecision:
    return CountPrecision.EXACT if count.exact else CountPrecision.AT_LEAST


@strawberry.type(description="A record in a connection, with the cursor to page from it.")
class Edge(Generic[T]):
    node: T
    row: strawberry.Private[Any]
    page: strawberry.Private[Page[Any]]

    @strawberry.field(description="Where to page from, after or before this record.")
    def cursor(self) -> str:
        return self.page.cursor(self.row)


@strawberry.type(
    description="A page of records. Cursors are keyset cursors: stable while rows are inserted."
)
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    page: strawberry.Private[Page[Any]]

    @strawberry.field(
        description="How many records match the filter, across all pages: exact up to the "
        "server's limit (COUNT_LIMIT, 10,000 by default), beyond it that limit, with "
        "`totalCountPrecision` AT_LEAST."
    )
    async def total_count(self) -> int:
        return (await self.page.total_count()).value

    @strawberry.field(description="Whether `totalCount` is exact or a lower bound.")
    async def total_count_precision(self) -> CountPrecision:
        return precision(await self.page.total_count())

    @strawberry.field(description="The records of this page (the nodes of `edges`).")
    def nodes(self) -> list[T]:
        return [edge.node for edge in self.edges]


def connection(page: Page[Any], convert: Callable[[Any], T]) -> Connection[T]:
    rows = page.rows
    return Connection(
        edges=[Edge(node=convert(row), row=row, page=page) for row in rows],
        page_info=PageInfo(
            has_next_page=page.has_next_page,
            has_previous_page=page.has_previous_page,
            start_cursor=page.start_cursor,
            end_cursor=page.end_cursor,
        ),
        page=page,
    )


def page_request(
    info: Info, first: int | None, after: str | None, last: int | None, before: str | None
) -> PageRequest:
    """The page asked for, within the request's bounds (its settings' page sizes)."""
    bounds = context(info).page_bounds
    return PageRequest(
        bounds=bounds,
        first=first,
        after=after,
        last=last,
        before=before,
        counted=asks_count(info),
    )


COUNT_FIELDS = frozenset({"totalCount", "totalCountPrecision"})


def asks_count(info: Info) -> bool:
    """Whether the connection's own selection names totalCount (or its precision): the page's
    statement then counts too. One named in a fragment, or under a directive (`@include`,
    `@skip`), is counted when it is resolved, apart."""
    for node in info._raw_info.field_nodes:  # noqa: SLF001  (graphql-core's field nodes)
        selections = node.selection_set.selections if node.selection_set else ()
        for selection in selections:
            if (
                isinstance(selection, FieldNode)
                and selection.name.value in COUNT_FIELDS
                and not selection.directives
            ):
                return True
    return False


def ordering(order_by: Any, default: str) -> tuple[str, bool]:
    """(sort key name, descending) from an orderBy input, or the default (newest first)."""
    if order_by is None or order_by is UNSET:
        return default, True
    return order_by.field.value, order_by.direction == OrderDirection.DESC


def in_utc(value: Any) -> Any:
    """Filter times in UTC (SQLite compares stored times as text); a time without offset is UTC."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def filter_values(data: Any, ids: dict[str, tuple[str, str]] | None = None) -> dict[str, Any]:
    if data is None or data is UNSET:
        return {}
    return {
        name: in_utc(value) for name, value in values_of(data, ids).items() if value is not None
    }
