"""Keyset pagination: the one way every connection pages.

A cursor carries the sort key's name and the values of the last row seen, so a page starts right
after that row however many rows were inserted or deleted before it, and the SQL stays an index
range scan at any depth (no OFFSET).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Generic, TypeVar

from tortoise.expressions import F, Q
from tortoise.models import Model
from tortoise.queryset import QuerySet

from config import Settings
from resolvers import cursors
from resolvers.errors import bad_input
from resolvers.loaders import fetch_with
from resolvers.statements import sql_of

M = TypeVar("M", bound=Model)
_MAX_ID = 2**31 - 1  # ids are IntField: 32-bit integers on PostgreSQL
_MAX_BIGINT = 2**63 - 1


# Cursor values come back from clients: each key checks its value's type (a wrong one is a bad
# cursor, not a database error).
def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("not a text value")
    return value


def _integer(value: Any) -> int:
    if type(value) is not int or not -_MAX_BIGINT <= value <= _MAX_BIGINT:
        raise ValueError("not a 64-bit integer")
    return value


def parse_time(value: Any) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("time without an offset")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01 east of UTC, 9999-12-31 west of it
        raise ValueError("time out of range") from None


@dataclass(frozen=True)
class SortKey:
    """Rows ordered by `field` then by id, both in one direction."""

    name: str
    field: str | None  # None: by id alone
    parse: Callable[[Any], Any] = _text  # a cursor's value back to a field value (text by default)
    dump: Callable[[Any], Any] = lambda value: value
    # For a key read from a related row: the column, as `related__column`, which `prepare`
    # annotates the query with as `field` (pages, cursors and conditions then read `field`).
    related: str | None = None

    def prepare(self, query: QuerySet[M]) -> QuerySet[M]:
        if self.related is None or self.field is None:
            return query
        return query.annotate(**{self.field: F(self.related)})


def _dump_time(value: datetime | date) -> str:
    return value.isoformat()


BY_ID = SortKey("ID", None)
BY_UPDATED_AT = SortKey("UPDATED_AT", "updated_at", parse_time, _dump_time)  # see time_key
BY_DATE = {
    "EXPECTED_CLOSE_DATE": SortKey(
        "EXPECTED_CLOSE_DATE", "expected_close_date", date.fromisoformat, _dump_time
    )
}


def integer_key(name: str, field: str) -> SortKey:
    return SortKey(name, field, _integer)


def time_key(name: str, field: str) -> SortKey:
    return SortKey(name, field, parse_time, _dump_time)


def related_key(name: str, related: str, parse: Callable[[Any], Any] = _text) -> SortKey:
    """Rows ordered by a column of a related row (`owner__full_name`: the owner's name), then by
    id. The order is read through a join: no index of the list's table holds it, so the page
    sorts the organization's matching rows (read through its index) before it takes its top."""
    return SortKey(name, related.replace("__", "_"), parse, related=related)


def integer_related_key(name: str, related: str) -> SortKey:
    return related_key(name, related, _integer)


@dataclass(frozen=True)
class PageBounds:
    """The page sizes of a request, from its app's settings: the largest page it may ask for
    (more for partners' API keys), the page it gets when it names none, and how far a
    totalCount counts."""

    largest: int
    default: int
    count_limit: int

    @classmethod
    def of(cls, settings: Settings, *, api_key: bool = False) -> PageBounds:
        largest = settings.api_key_max_page_size if api_key else settings.max_page_size
        return cls(largest, settings.default_page_size, settings.count_limit)


@dataclass(kw_only=True)
class PageRequest:
    """The page a client asked for, and the bounds its request pages within."""

    bounds: PageBounds
    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None
    # totalCount is asked for: the page's statement counts too (one statement, not two).
    counted: bool = False


@dataclass(frozen=True)
class Count:
    """How many records a list holds: exact up to a bound, and beyond it that bound with
    `exact` false (the API's totalCount and totalCountPrecision)."""

    value: int
    exact: bool


def count_sql(query: QuerySet[M], bound: int) -> tuple[str, list[Any]]:
    """The statement counting the query's rows, reading at most `bound` + 1 of them."""
    sql, params = sql_of(query.order_by().limit(bound + 1).values_list("id", flat=True))
    return f"SELECT count(*) FROM ({sql}) AS counted", params


def bounded(counted: int, bound: int) -> Count:
    return Count(min(counted, bound), counted <= bound)


async def count_up_to(query: QuerySet[M], bound: int) -> Count:
    """Count the query's rows, reading at most `bound` + 1 of them (COUNT_LIMIT)."""
    sql, params = count_sql(query, bound)
    _, found = await query._choose_db().execute_query(sql, params)
    return bounded(int(found[0][0]), bound)


class CountOnce:
    """A connection's count, computed once whichever of totalCount and totalCountPrecision
    asks first (they resolve side by side)."""

    def __init__(self, count: Callable[[], Awaitable[Count]], found: Count | None = None) -> None:
        self._count = count
        self._found: asyncio.Future[Count] | None = None
        if found is not None:  # counted by the page's statement
            self._found = asyncio.get_running_loop().create_future()
            self._found.set_result(found)

    async def __call__(self) -> Count:
        if self._found is None:
            self._found = asyncio.ensure_future(self._count())
        return await asyncio.shield(self._found)


T = TypeVar("T")


class Window(Generic[T]):
    """One page of anything the API pages (a list, a timeline, the change feed): its items in
    order, whether more come before or after, and each item's cursor (resolvers/cursors.py),
    encoded when asked for. The schema's connections are built from it (schema/base.py)."""

    items: list[T]
    has_next_page: bool
    has_previous_page: bool

    def cursor(self, item: T) -> str:
        raise NotImplementedError

    @property
    def start_cursor(self) -> str | None:
        return self.cursor(self.items[0]) if self.items else None

    @property
    def end_cursor(self) -> str | None:
        return self.cursor(self.items[-1]) if self.items else None


@dataclass
class Page(Window[M]):
    """A page of a list, by keyset (see the module's docstring)."""

    rows: list[M]
    key: SortKey  # the order, which the cursors carry
    has_next_page: bool
    has_previous_page: bool
    query: QuerySet[M]  # the filtered rows before paging, for totalCount
    count_limit: int  # how far totalCount counts
    counted: Count | None = None  # totalCount, when the page's statement counted

    @property
    def items(self) -> list[M]:  # type: ignore[override]
        return self.rows

    def cursor(self, row: M) -> str:
        return encode_cursor(self.key, row)

    def __post_init__(self) -> None:
        self.total_count = CountOnce(
            lambda: count_up_to(self.query, self.count_limit), self.counted
        )


def encode_cursor(key: SortKey, row: Model) -> str:
    values = [key.dump(getattr(row, key.field))] if key.field else []
    return cursors.encode(key.name, *values, row.pk)


def id_cursor(pk: int) -> str:
    """The BY_ID cursor of a row with this id (event cursors: BigInt ids, see decode_cursor)."""
    return cursors.encode(BY_ID.name, pk)


_INVALID = "Invalid cursor: use a cursor from this connection with the same orderBy."


def decode_cursor(
    key: SortKey, cursor: str, field: str, *, min_id: int = 1, max_id: int = _MAX_ID
) -> tuple[Any, int]:
    name, *values = cursors.decode(cursor, field, _INVALID)
    try:
        if name != key.name:
            raise ValueError("cursor of another order")
        *sort_values, row_id = values
        if type(row_id) is not int or not min_id <= row_id <= max_id:
            raise ValueError("malformed row id")
        if len(sort_values) != (1 if key.field else 0):
            raise ValueError("malformed cursor")
        sort_value = key.parse(sort_values[0]) if key.field else None
    except (ValueError, TypeError):
        raise cursors.invalid(field, _INVALID) from None
    return sort_value, row_id


def _after_condition(key: SortKey, value: Any, row_id: int, descending: bool) -> Q:
    """The rows after (value, id) in the order: `field < value OR (field = value AND id < id)`
    when descending, written `field <= value AND (field < value OR id < id)` so that the first
    term bounds the index range scan (a deep page starts where it is, not at the top)."""
    op = "lt" if descending else "gt"
    beyond_id: dict[str, Any] = {f"id__{op}": row_id}
    after_id = Q(**beyond_id)
    if key.field is None:
        return after_id
    within = Q(**{f"{key.field}__{op}e": value})
    return within & (Q(**{f"{key.field}__{op}": value}) | after_id)


def _order(key: SortKey, descending: bool) -> list[str]:
    sign = "-" if descending else ""
    fields = [key.field] if key.field else []
    return [f"{sign}{name}" for name in [*fields, "id"]]


def _check_size(value: int | None, field: str, limit: int) -> None:
    if value is not None and not 0 <= value <= limit:
        raise bad_input(field, f"{field} must be between 0 and {limit}.")


async def paginate(
    query: QuerySet[M],
    page: PageRequest,
    key: SortKey = BY_ID,
    *,
    descending: bool = False,
    max_page_size: int | None = None,
) -> Page[M]:
    limit = max_page_size or page.bounds.largest
    _check_size(page.first, "first", limit)
    _check_size(page.last, "last", limit)
    if page.first is not None and page.last is not None:
        raise bad_input("last", "Pass first (with after) or last (with before), not both.")

    filtered = query
    query = key.prepare(query)
    if page.after:
        value, row_id = decode_cursor(key, page.after, "after")
        query = query.filter(_after_condition(key, value, row_id, descending))
    if page.before:
        value, row_id = decode_cursor(key, page.before, "before")
        query = query.filter(_after_condition(key, value, row_id, not descending))

    backwards = page.last is not None
    size = page.last if backwards else page.first
    if size is None:
        size = page.bounds.default
    query = query.order_by(*_order(key, descending != backwards)).limit(size + 1)
    # When totalCount is asked, the count as one more column of the page's statement (None: a
    # page of no rows, or a query `fetch` leaves to Tortoise: counted apart when asked).
    limit = page.bounds.count_limit
    rows, found = await fetch_with(query, count_sql(filtered, limit) if page.counted else None)
    counted = None if found is None else bounded(int(found), limit)
    more = len(rows) > size
    rows = rows[:size]
    if backwards:
        rows.reverse()
    return Page(
        rows=rows,
        key=key,
        has_next_page=more if not backwards else page.before is not None,
        has_previous_page=more if backwards else page.after is not None,
        query=filtered,
        count_limit=page.bounds.count_limit,
        counted=counted,
    )


MAX_SEARCH_WORD = 100  # characters (SQLite's LIKE refuses patterns over 50,000 bytes)


def search_condition(
    words: str, fields: list[str], also: Callable[[str], list[Q]] | None = None
) -> Q:
    """Every word must appear (case-insensitively) in at least one of the fields (or meet one of
    the conditions `also` gives for it: in a related row's name, say)."""
    condition = Q()
    for word in words.replace("\x00", "").split()[:8]:  # NUL matches nothing (and PG refuses it)
        if len(word) > MAX_SEARCH_WORD:
            raise bad_input("search", f"Search words are at most {MAX_SEARCH_WORD} characters.")
        matches = [Q(**{f"{name}__icontains": word}) for name in fields]
        condition &= Q(*matches, *(also(word) if also else []), join_type="OR")
    return condition
