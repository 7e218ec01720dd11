"""Dates and times as the API reads them: Strawberry's scalars, bounded.

A time with an offset is taken to UTC when it is read, so that no resolver meets one that
cannot be (`0001-01-01T00:00:00+01:00` has no UTC equivalent: Python raised OverflowError,
an INTERNAL_SERVER_ERROR). Years past 9998 are refused too, so that a day added to a date or a
time never overflows. Out of range is a clear BAD_USER_INPUT naming the argument.
"""

from __future__ import annotations

import datetime as dt

import dateutil.parser
from strawberry.schema.types.base_scalars import (
    DateDefinition,
    DateTimeDefinition,
    wrap_parser,
)
from strawberry.types.scalar import ScalarDefinition

LAST_YEAR = 9998


def _datetime(value: str) -> dt.datetime:
    parsed = dateutil.parser.isoparse(value)
    if parsed.tzinfo is not None:
        try:
            parsed = parsed.astimezone(dt.UTC)
        except OverflowError:
            raise ValueError("it is out of range once taken to UTC") from None
    if parsed.year > LAST_YEAR:
        raise ValueError(f"years after {LAST_YEAR} are out of range")
    return parsed


def _date(value: str) -> dt.date:
    parsed = dt.date.fromisoformat(value)
    if parsed.year > LAST_YEAR:
        raise ValueError(f"years after {LAST_YEAR} are out of range")
    return parsed


DATETIME = ScalarDefinition(
    name=DateTimeDefinition.name,
    description=DateTimeDefinition.description,
    specified_by_url=None,
    serialize=DateTimeDefinition.serialize,
    parse_value=wrap_parser(_datetime, "DateTime"),
    parse_literal=None,
    origin=dt.datetime,
)
DATE = ScalarDefinition(
    name=DateDefinition.name,
    description=DateDefinition.description,
    specified_by_url=None,
    serialize=DateDefinition.serialize,
    parse_value=wrap_parser(_date, "Date"),
    parse_literal=None,
    origin=dt.date,
)
SCALARS: dict[object, ScalarDefinition] = {dt.datetime: DATETIME, dt.date: DATE}
