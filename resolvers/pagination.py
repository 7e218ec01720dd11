"""Keyset pagination: the one way every connection pages.

A cursor carries the sort key's name and the values of the last row seen, so a page starts right
after that row however many rows were inserted or deleted before it, and the SQL stays an index
range scan at any depth (no OFFSET).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Generic, TypeVar

from tortoise.expressions import Q
from tortoise.models import Model
from tortoise.queryset import QuerySet

from config import settings
from resolvers.errors import bad_input

M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class SortKey:
    """Rows ordered by `field` then by id, both in one direction."""

    name: str
    field: str | None  # None: by id alone
    parse: Callable[[Any], Any] = lambda value: value
    dump: Callable[[Any], Any] = lambda value: value


def _dump_time(value: datetime | date) -> str:
    return value.isoformat()


BY_ID = SortKey("ID", None)
BY_UPDATED_AT = SortKey("UPDATED_AT", "updated_at", datetime.fromisoformat, _dump_time)
BY_DATE = {
    "EXPECTED_CLOSE_DATE": SortKey(
        "EXPECTED_CLOSE_DATE", "expected_close_date", date.fromisoformat, _dump_time
    )
}


def text_key(name: str, field: str) -> SortKey:
    return SortKey(name, field)


@dataclass
class PageRequest:
    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None


@dataclass
class Page(Generic[M]):
    rows: list[M]
    cursors: list[str]
    has_next_page: bool
    has_previous_page: bool
    query: QuerySet[M]  # the filtered rows before paging, for totalCount

    async def total_count(self) -> int:
        return await self.query.count()


def encode_cursor(key: SortKey, row: Model) -> str:
    values = [key.dump(getattr(row, key.field))] if key.field else []
    payload = json.dumps([key.name, *values, row.pk], separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(key: SortKey, cursor: str, field: str) -> tuple[Any, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        name, *values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if name != key.name:
            raise ValueError("cursor of another order")
        *sort_values, row_id = values
        if not isinstance(row_id, int) or len(sort_values) != (1 if key.field else 0):
            raise ValueError("malformed cursor")
        sort_value = key.parse(sort_values[0]) if key.field else None
    except (ValueError, TypeError, UnicodeDecodeError, json.JSONDecodeError):
        raise bad_input(
            field, "Invalid cursor: use a cursor from this connection with the same orderBy."
        ) from None
    return sort_value, row_id


def _after_condition(key: SortKey, value: Any, row_id: int, descending: bool) -> Q:
    op = "lt" if descending else "gt"
    if key.field is None:
        return Q(**{f"id__{op}": row_id})
    return Q(**{f"{key.field}__{op}": value}) | Q(
        **{key.field: value, f"id__{op}": row_id}
    )


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
    limit = max_page_size or settings.max_page_size
    _check_size(page.first, "first", limit)
    _check_size(page.last, "last", limit)
    if page.first is not None and page.last is not None:
        raise bad_input("last", "Pass first (with after) or last (with before), not both.")

    filtered = query
    if page.after:
        value, row_id = decode_cursor(key, page.after, "after")
        query = query.filter(_after_condition(key, value, row_id, descending))
    if page.before:
        value, row_id = decode_cursor(key, page.before, "before")
        query = query.filter(_after_condition(key, value, row_id, not descending))

    backwards = page.last is not None
    size = page.last if backwards else page.first
    if size is None:
        size = settings.default_page_size
    rows = list(await query.order_by(*_order(key, descending != backwards)).limit(size + 1))
    more = len(rows) > size
    rows = rows[:size]
    if backwards:
        rows.reverse()
    return Page(
        rows=rows,
        cursors=[encode_cursor(key, row) for row in rows],
        has_next_page=more if not backwards else page.before is not None,
        has_previous_page=more if backwards else page.after is not None,
        query=filtered,
    )


def search_condition(words: str, fields: list[str]) -> Q:
    """Every word must appear (case-insensitively) in at least one of the fields."""
    condition = Q()
    for word in words.split()[:8]:
        condition &= Q(*[Q(**{f"{name}__icontains": word}) for name in fields], join_type="OR")
    return condition
