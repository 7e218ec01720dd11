"""What the HTTP door answers before (and around) GraphQL: bodies over the limit, JSON nested too
deep, protocol errors and database outages, each as a JSON GraphQL error with a code.

    {"errors": [{"message": "...", "extensions": {"code": "REQUEST_TOO_LARGE", "requestId": ...}}]}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import orjson
from starlette.responses import StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from observability import request_id_var
from resolvers.errors import ErrorCode, is_outage

log = logging.getLogger("crm.doors")

RETRY_AFTER_OUTAGE = 5  # seconds a client is asked to wait while the database is unreachable
GRAPHQL_RESPONSE = "application/graphql-response+json"


class Refusal(Exception):
    """An HTTP answer decided before GraphQL runs: a status, one error, headers."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extensions = extensions

    def body(self) -> bytes:
        extensions = {"code": self.code.value, **self.extensions}
        request_id = request_id_var.get()
        if request_id != "-":
            extensions["requestId"] = request_id
        return orjson.dumps({"errors": [{"message": self.message, "extensions": extensions}]})

    async def send(self, send: Send, media_type: str = "application/json") -> None:
        headers = [(b"content-type", media_type.encode())]
        headers += [(name.lower().encode(), value.encode()) for name, value in self.headers.items()]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body()})


def unavailable() -> Refusal:
    return Refusal(
        503,
        ErrorCode.SERVICE_UNAVAILABLE,
        "The database cannot be reached: retry later.",
        {"Retry-After": str(RETRY_AFTER_OUTAGE)},
    )


def json_depth_exceeded(value: Any, limit: int) -> bool:
    """Whether parsed JSON nests deeper than `limit` arrays and objects (iterative)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def decode_json(data: str | bytes, max_depth: int) -> object:
    """JSON as the API reads it: orjson (which refuses more than 1,024 levels itself, where
    json.loads blew the stack), then no deeper than `max_depth`."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        if "depth limit" in str(error).lower() or "recursion" in str(error).lower():
            raise TooDeep(max_depth) from error
        # What orjson refuses and JSON allows (a lone surrogate escape, say): the standard
        # parser, which answers it field by field like any other bad value.
        try:
            value = json.loads(data)
        except RecursionError:
            raise TooDeep(max_depth) from None
    if json_depth_exceeded(value, max_depth):
        raise TooDeep(max_depth)
    return value


class TooDeep(json.JSONDecodeError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"The JSON nests deeper than {limit} levels", "", 0)
        self.limit = limit


class BodyLimit:
    """Refuse an HTTP request body over `limit` bytes with 413, before the app reads it all: at
    once when Content-Length says so, else as soon as the bytes received pass it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = Refusal(
            413,
            ErrorCode.REQUEST_TOO_LARGE,
            f"The request body is over the limit of {self.limit} bytes.",
            limit=self.limit,
        )
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await refusal.send(send)
                return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await refusal.send(send)


class _TooLarge(Exception):
    pass


class OutageGuard:
    """An error that says the database is unreachable, escaping any HTTP route, becomes a 503
    with `Retry-After` and a SERVICE_UNAVAILABLE error (never a bare 500); anything else
    unexpected is logged and masked as INTERNAL_SERVER_ERROR with the request id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Refusal as refusal:
            if not started:
                await refusal.send(send)
        except Exception as error:
            if started:
                raise
            if is_outage(error):
                log.warning("database unreachable: %s", error)
                await unavailable().send(send)
                return
            log.exception("unexpected error (request %s)", request_id_var.get())
            await Refusal(
                500,
                ErrorCode.INTERNAL_SERVER_ERROR,
                "Internal server error. Quote the request id when reporting it.",
            ).send(send)


class ExportSlots:
    """Exports streaming at once: at most `per_process`, and `per_organization` for each one,
    so that one organization holding its slots leaves the others theirs."""

    def __init__(self, per_process: int, per_organization: int) -> None:
        self.per_process = per_process
        self.per_organization = per_organization
        self.held: dict[int, int] = {}

    def take(self, organization_id: int) -> bool:
        if sum(self.held.values()) >= self.per_process:
            return False
        if self.held.get(organization_id, 0) >= self.per_organization:
            return False
        self.held[organization_id] = self.held.get(organization_id, 0) + 1
        return True

    def give_back(self, organization_id: int) -> None:
        held = self.held.get(organization_id, 0) - 1
        if held > 0:
            self.held[organization_id] = held
        else:
            self.held.pop(organization_id, None)


class PatientStreamingResponse(StreamingResponse):
    """A stream whose client must keep reading: a chunk that cannot be sent within `timeout`
    seconds (the client stopped reading) ends the stream, and frees what it held."""

    def __init__(self, content: Any, timeout: float, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.timeout = timeout

    async def stream_response(self, send: Any) -> None:
        async def patient(message: Any) -> None:
            try:
                async with asyncio.timeout(self.timeout):
                    await send(message)
            except TimeoutError:
                log.warning("export ended: its client read nothing for %s s", self.timeout)
                raise OSError("the client stopped reading") from None

        try:
            await super().stream_response(patient)
        except OSError:
            with contextlib.suppress(Exception):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
            raise
