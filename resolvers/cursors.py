"""Cursors: where a client resumes a list, a timeline or the change feed, as an opaque string.

A cursor is a short list of values (the first names what it is a cursor of) written as compact
JSON in URL-safe base64. Each reader checks the values it reads back: a cursor comes from the
client, and a wrong one is a BAD_USER_INPUT on its argument, never a database error.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from resolvers.errors import bad_input

MAX_LENGTH = 400  # characters: far more than any cursor written here, far less than a body


def encode(*values: Any) -> str:
    payload = json.dumps(values, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode(cursor: str, field: str, message: str) -> list[Any]:
    """A cursor's values (a non-empty list), or BAD_USER_INPUT on `field` with `message`."""
    try:
        if len(cursor) > MAX_LENGTH:
            raise ValueError("too long")
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(values, list) or not values:
            raise ValueError("not a cursor")
        return values
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError):
        raise invalid(field, message) from None


def invalid(field: str, message: str) -> Exception:
    return bad_input(field, message)
