"""Request ids, structured request logs and Prometheus metrics."""

from __future__ import annotations

import contextvars
import json
import logging
import time
import uuid
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from resolvers.foreground import REQUESTS

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
access_log = logging.getLogger("crm.access")

HTTP_REQUESTS = Counter(
    "crm_http_requests_total", "HTTP requests served", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "crm_http_request_duration_seconds", "Time to serve an HTTP request", ["route"]
)
GRAPHQL_OPERATIONS = Counter(
    "crm_graphql_operations_total", "GraphQL operations executed", ["type", "outcome"]
)
OPERATION_PLANS = Counter(
    "crm_graphql_operation_plans_total",
    "Operations (and live events) by how they ran: planned (schema/engine/plans.py), shared "
    "(a live event's result computed for another subscriber), fallback (a planned run dropped "
    "for graphql-core, with its reason: null, gone, type, scalar, list or fault) or "
    "unplanned (graphql-core, with its reason: mutation, arguments, resolver, abstract, "
    "directive, introspection, middleware, unparsed)",
    ["path", "reason"],
)
STATEMENT_SHAPES = Counter(
    "crm_statement_shapes_total",
    "Statements of plain querysets by where their SQL came from (resolvers/statements.py): "
    "kept (the shape cache), learnt (a shape seen the first time, or again after it was pushed "
    "out), unfit (a shape found not to fit, rendered by Tortoise each time), rendered (a "
    "queryset with values a shape does not hold: text, dates, expressions, long lists) or full "
    "(a new shape of an organization that added its share of the cache: rendered)",
    ["outcome"],
)
LIVE_SUBSCRIPTIONS = Gauge("crm_live_subscriptions", "Live subscriptions open in this process")
LIVE_DELIVERIES = Counter(
    "crm_live_deliveries_total", "Events and notifications handed to live subscribers"
)
LIVE_ENDED = Counter(
    "crm_live_subscriptions_cut_total",
    "Live subscriptions the server ended (overflow: too far behind; revoked: session ended)",
    ["reason"],
)
EVENT_BUS_CONNECTED = Gauge(
    "crm_event_bus_connected", "1 while this process's event bus connection is up"
)
JOBS = Gauge(
    "crm_jobs",
    "Background jobs waiting (QUEUED) and running, by kind, in the whole deployment (read by "
    "each runner every few seconds)",
    ["kind", "state"],
)
JOBS_FINISHED = Counter(
    "crm_jobs_runs_total",
    "Job runs that ended in this process: done, again (rescheduled), retry (failed, will be "
    "retried), failed (out of attempts), released (process stopping), lease lost",
    ["kind", "outcome"],
)
KNOWN_ROUTES = {"/graphql", "/healthz", "/readyz", "/metrics"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id_var.get(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class RequestLogMiddleware:
    """Gives every HTTP request an id (X-Request-ID), and a signed-in query a `Server-Timing:
    app;dur=` header (ms from this middleware's start to its answer's first byte), logs one line
    for it, and counts it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if 0 < len(incoming) <= 100 else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        log_fields: dict[str, Any] = {}
        scope.setdefault("state", {})["log"] = log_fields
        scope["state"]["request_id"] = request_id
        status = 500
        started = time.perf_counter()
        # A background job in this process gives way to GraphQL requests, from their first byte
        # (the session lookup, the parsing) to their last (resolvers/foreground.py); not to
        # exports, metrics or probes, nor to a refusal while it is held (Gate.hold_refusal).
        # An organization at its limits gives way to the other organizations' requests: the
        # session lookup names the request's organization (`REQUESTS.own`).
        flight = REQUESTS.enter() if scope["path"] == "/graphql" else None
        scope["state"]["in_flight"] = flight

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                extra = [(b"x-request-id", request_id.encode("latin-1"))]
                if log_fields.get("operation_type") == "query" and "organization" in log_fields:
                    # The application's time on a signed-in query, from this middleware's start
                    # to the answer's first byte (devtools show it; a client tells it from the
                    # network's time). Not on anything else: a login's or a sign-up's precise
                    # time would tell more of the password check than the wall clock does.
                    elapsed = (time.perf_counter() - started) * 1000
                    extra.append((b"server-timing", f"app;dur={elapsed:.2f}".encode("latin-1")))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if flight is not None:
                REQUESTS.leave(flight)
            duration = time.perf_counter() - started
            route = scope["path"] if scope["path"] in KNOWN_ROUTES else "other"
            HTTP_REQUESTS.labels(scope["method"], route, str(status)).inc()
            HTTP_DURATION.labels(route).observe(duration)
            access_log.info(
                "%s %s %s",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "fields": {
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round(duration * 1000, 2),
                        **log_fields,
                    }
                },
            )
            request_id_var.reset(token)
