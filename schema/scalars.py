"""Times as the API reads them: Strawberry's DateTime scalar, taken to UTC when it is read.

`0001-01-01T00:00:00+01:00` and `9999-12-31T23:00:00-05:00` have no UTC equivalent: Python
raised OverflowError wherever they were compared or stored, an INTERNAL_SERVER_ERROR. Read here,
they are a clear BAD_USER_INPUT naming the input field (schema.extensions.ErrorCodes).
"""

from __future__ import annotations

import datetime as dt

import dateutil.parser
from strawberry.schema.types.base_scalars import DateTimeDefinition, wrap_parser
from strawberry.types.scalar import ScalarDefinition


def _datetime(value: str) -> dt.datetime:
    parsed = dateutil.parser.isoparse(value)
    if parsed.tzinfo is None:
        return parsed
    try:
        return parsed.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("it is out of range once taken to UTC") from None


DATETIME = ScalarDefinition(
    name=DateTimeDefinition.name,
    description=DateTimeDefinition.description,
    specified_by_url=None,
    serialize=DateTimeDefinition.serialize,
    parse_value=wrap_parser(_datetime, "DateTime"),
    parse_literal=None,
    origin=dt.datetime,
)
SCALARS: dict[object, ScalarDefinition] = {dt.datetime: DATETIME}
