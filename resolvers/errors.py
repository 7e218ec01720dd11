"""The one error type of the API: a message with a code (and the input field it is about)."""

from __future__ import annotations

import re
import sqlite3
from enum import Enum
from typing import Any

import asyncpg
from tortoise.exceptions import DBConnectionError


class ErrorCode(str, Enum):
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    CONFLICT = "CONFLICT"
    RATE_LIMITED = "RATE_LIMITED"
    # A live subscription fell too far behind and was ended; resume it with `after`.
    SUBSCRIPTION_OVERFLOW = "SUBSCRIPTION_OVERFLOW"
    # A live subscription to one record ended: the viewer may no longer read the record.
    RECORD_UNREADABLE = "RECORD_UNREADABLE"
    # A sync cursor older than the change log's retention: start again without one.
    RESYNC_REQUIRED = "RESYNC_REQUIRED"
    # An operation whose computed cost is over MAX_QUERY_COST, refused before it runs.
    QUERY_TOO_COSTLY = "QUERY_TOO_COSTLY"
    # Persisted queries: the hash is unknown (send the query along once), or only known queries
    # run (PERSISTED_QUERIES=allowlist).
    PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
    PERSISTED_QUERY_REQUIRED = "PERSISTED_QUERY_REQUIRED"
    # Refused before any work: a body, JSON nesting or document over its limit, a request the
    # GraphQL-over-HTTP protocol does not allow (BAD_REQUEST), and the GraphQL steps.
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    BAD_REQUEST = "BAD_REQUEST"
    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
    # More live subscriptions on a websocket, or websockets for a user, than allowed.
    TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"
    # The database is unreachable: retry after `Retry-After` seconds.
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"


class ApiError(Exception):
    """Raised by resolvers; graphql-core copies `extensions` into the GraphQL error."""

    def __init__(self, code: ErrorCode, message: str, *, field: str | None = None, **extra: Any):
        super().__init__(message)
        self.code = code
        self.message = message
        self.extensions: dict[str, Any] = {"code": code.value, **extra}
        if field is not None:
            self.extensions["field"] = field


def bad_input(field: str, message: str) -> ApiError:
    return ApiError(ErrorCode.BAD_USER_INPUT, message, field=field)


def not_found(what: str = "record", field: str | None = "id") -> ApiError:
    """The one answer for a record that is missing or out of the viewer's reach: `what` in
    words ("contact", "pipeline stage": `readable`), `field` the argument that named it."""
    return ApiError(ErrorCode.NOT_FOUND, f"No {what} with this id.", field=field)


def readable(type_name: str) -> str:
    """A type's name as words in a message: "PipelineStage" -> "pipeline stage", "ApiKey" ->
    "API key"."""
    words = re.findall(r"[A-Z][a-z0-9]*|[a-z0-9]+", type_name)
    return " ".join("API" if word == "Api" else word.lower() for word in words)


def a(noun: str) -> str:
    """The noun with its indefinite article: "an account", "a lead", "an API key". (No type of
    this API starts with a vowel letter sounded as a consonant, "user" aside.)"""
    vowel = noun[:1].lower() in "aeio" or (noun[:1].lower() == "u" and not noun.startswith("us"))
    return f"{'an' if vowel else 'a'} {noun}"


def forbidden(message: str) -> ApiError:
    return ApiError(ErrorCode.FORBIDDEN, message)


def conflict(message: str, **extra: Any) -> ApiError:
    return ApiError(ErrorCode.CONFLICT, message, **extra)


def unauthenticated(
    message: str = "Sign in first: send Authorization: Bearer <token>.",
) -> ApiError:
    return ApiError(ErrorCode.UNAUTHENTICATED, message)


_OUTAGES: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable
    TimeoutError,
    DBConnectionError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,  # "connection is closed"
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
)


def is_outage(error: BaseException | None) -> bool:
    """Whether an error (or what caused it) says the database cannot be reached."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, _OUTAGES):
            return True
        if isinstance(error, sqlite3.OperationalError) and "unable to open" in str(error):
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False
