"""The Starlette application: /graphql over HTTP (and websockets), health, readiness, metrics.

`create_app(settings)` builds it from one Settings object, which everything it builds is given;
`python server.py` reads them from the environment and serves the app with uvicorn on HOST:PORT.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from tortoise import connections
from tortoise.contrib.starlette import RegisterTortoise

from config import Settings, tortoise_config
from doors import (
    RETRY_AFTER_OUTAGE,
    BodyLimit,
    ExportSlots,
    OutageGuard,
    PatientStreamingResponse,
    Refusal,
)
from endpoint import CrmGraphQL, principal
from models import Role
from observability import RequestLogMiddleware, configure_logging
from resolvers import statements
from resolvers.context import RequestContext
from resolvers.errors import ErrorCode
from resolvers.export import stream
from resolvers.jobs import Runner
from resolvers.limits import RateLimiter
from schema import build_schema
from schema.engine.gate import Gate, retry_after
from schema.records import exports
from subscriptions.hub import Hub
from webhooks import sealing
from webhooks.delivery import Deliverer

log = logging.getLogger("crm.server")


async def healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception as error:  # any failure to reach the database means not ready
        log.warning("database not reachable: %s", error)
        return JSONResponse(
            {"status": "unavailable", "database": "unreachable"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_OUTAGE)},
        )
    # The bus being down makes live delivery slower (each process polls the log), not wrong:
    # it is reported, and the process stays ready.
    bus = "ok" if request.app.state.hub.bus_connected else "reconnecting"
    return JSONResponse({"status": "ok", "database": "ok", "bus": bus})


async def export(request: Request) -> Response:
    """GET /export/<type>.ndjson: a whole record type for admins and their API keys."""
    spec = exports().get(request.path_params["name"])
    if spec is None:
        known = ", ".join(f"/export/{name}.ndjson" for name in exports())
        raise Refusal(404, ErrorCode.NOT_FOUND, f"No such export: try {known}.")
    viewer, key, _, why, _ = await principal(request.headers.get("authorization"))
    if viewer is None:
        message = why or "Send Authorization: Bearer <key>."
        raise Refusal(401, ErrorCode.UNAUTHENTICATED, message)
    if viewer.role != Role.ADMIN:
        raise Refusal(403, ErrorCode.FORBIDDEN, "Exports are for admins and their API keys.")
    settings: Settings = request.app.state.settings
    gate: Gate = request.app.state.gate
    ctx = RequestContext(
        request_id="", settings=settings, viewer=viewer, api_key=key, request=request
    )
    wait = await gate.wait(ctx)
    if wait > 0:
        retry = str(retry_after(wait))
        raise Refusal(
            429,
            ErrorCode.RATE_LIMITED,
            f"Too many requests: retry in {retry} s.",
            {"Retry-After": retry},
            retryAfter=int(retry),
        )
    slots: ExportSlots = request.app.state.exports
    if not slots.take(viewer.organization_id):
        raise Refusal(
            429,
            ErrorCode.RATE_LIMITED,
            "Too many exports at once: retry in a minute.",
            {"Retry-After": "60"},
            retryAfter=60,
        )

    async def lines() -> AsyncIterator[bytes]:
        try:
            async for chunk in stream(spec, viewer.organization_id, settings.database_url):
                yield chunk
        finally:
            slots.give_back(viewer.organization_id)

    timeout = settings.export_send_timeout_seconds
    return PatientStreamingResponse(lines(), timeout, media_type="application/x-ndjson")


async def metrics(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def create_app(settings: Settings, *, orm: bool = True) -> Starlette:
    """The app, served with `settings`. `orm=False`: the process has set Tortoise up already
    and keeps it (an app served beside another in the same process, as the tests do); the app
    then neither opens nor closes the database connections."""
    # The secrets' keys, read (or made: webhooks/sealing.py) once; refused here, at start,
    # when missing in production or not Fernet keys.
    settings = replace(settings, secrets_keys=sealing.keys(settings))
    sealing.sealer(settings)
    hub = Hub(
        settings.broadcast_url,
        settings.bus_channel,
        poll_seconds=settings.event_poll_seconds,
        queue_size=settings.subscription_queue_size,
        auth_recheck_seconds=settings.auth_recheck_seconds,
    )
    limiter = RateLimiter(
        settings.rate_limit_per_second,
        settings.rate_limit_burst,
        settings.rate_limit_redis_url,
        prefix=settings.bus_channel,
        timeout=settings.redis_timeout_seconds,
        breaker_failures=settings.redis_breaker_failures,
        breaker_seconds=settings.redis_breaker_seconds,
    )
    schema = build_schema(settings)
    # Under test, each statement from the shape cache is checked against Tortoise's too.
    statements.COMPARE = settings.plans_compare
    graphql = CrmGraphQL(
        schema,
        graphql_ide="graphiql" if settings.graphiql else None,
        allowed_origins=settings.cors_origins,
        keep_alive=True,  # legacy graphql-ws: "ka" messages keep proxies from idling us out
        keep_alive_interval=15,
        # Live subscriptions are counted per websocket by the feeds (TOO_MANY_SUBSCRIPTIONS);
        # this bounds everything else in flight on one socket (queries and mutations).
        max_subscriptions_per_connection=settings.max_subscriptions_per_connection + 10,
        hub=hub,
        limiter=limiter,
        settings=settings,
    )

    deliverer = Deliverer(schema, settings) if settings.webhook_delivery else None
    if deliverer is not None:
        hub.doorbell_listeners.append(deliverer.ring)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if orm:
                tortoise = RegisterTortoise(app, config=tortoise_config(settings.database_url))
                await stack.enter_async_context(tortoise)
            await hub.start()
            # Background jobs run here too, unless JOBS_EMBEDDED=0 leaves them to workers;
            # what a stopped process left unfinished resumes now.
            runner = Runner(settings, hub=hub) if settings.jobs_embedded else None
            if runner is not None:
                await runner.start()
            if deliverer is not None:
                await deliverer.start()
            try:
                yield
            finally:
                if deliverer is not None:
                    await deliverer.stop()
                if runner is not None:
                    await runner.stop()
                await hub.stop()
                await limiter.close()

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Route("/export/{name}.ndjson", export, methods=["GET"]),
        ],
        middleware=[
            Middleware(RequestLogMiddleware),
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=CORS_HEADERS,
                expose_headers=["x-request-id", "retry-after", "server-timing"],
                max_age=600,
            ),
            Middleware(OutageGuard),
            Middleware(BodyLimit, limit=settings.max_body_bytes),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.hub = hub
    app.state.limiter = limiter
    app.state.gate = graphql.gate
    app.state.graphql = graphql
    app.state.deliverer = deliverer
    app.state.exports = ExportSlots(settings.exports_per_process, settings.exports_per_organization)
    return app


# Request headers browsers may send cross-origin: ours, and those common GraphQL clients and
# tracing add (Apollo Client's, Sentry's and W3C trace context).
CORS_HEADERS = [
    "authorization",
    "content-type",
    "accept",
    "x-request-id",
    "apollographql-client-name",
    "apollographql-client-version",
    "apollo-require-preflight",
    "x-apollo-operation-name",
    "sentry-trace",
    "baggage",
    "traceparent",
    "tracestate",
]


class GracefulServer(uvicorn.Server):
    """uvicorn, closing each websocket with 1012 and a reason before its own shutdown (which
    closes them with a bare 1012), then giving requests `timeout_graceful_shutdown` seconds."""

    def __init__(self, config: uvicorn.Config, graphql: CrmGraphQL) -> None:
        super().__init__(config)
        self.graphql = graphql

    async def shutdown(self, sockets: Any = None) -> None:
        await self.graphql.close_websockets(1012, "Server restarting: reconnect")
        await super().shutdown(sockets)


def server_config(app: Starlette, settings: Settings, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for the app: HOST:PORT, and what uvicorn enforces of the settings
    (a websocket message's size, compression, the graceful shutdown). `options`: uvicorn's own."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        proxy_headers=True,
        access_log=False,  # RequestLogMiddleware writes the structured access log
        ws_per_message_deflate=settings.ws_compression,
        ws_max_size=settings.max_body_bytes,  # a websocket message: the same limit as a body
        timeout_graceful_shutdown=int(math.ceil(settings.shutdown_timeout_seconds)),
        **options,
    )


def main() -> None:
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    ide = " (GraphiQL in a browser)" if settings.graphiql else ""
    print(f"Serving http://{settings.host}:{settings.port}/graphql{ide}", flush=True)
    try:
        app = create_app(settings)
    except sealing.SecretsError as error:
        raise SystemExit(f"Not started: {error}") from None
    # A GraphQL response allocates tens of thousands of short-lived objects; the cyclic
    # collector's default thresholds then scan the long-lived ones (schema, models, modules)
    # over and over. Freeze what exists at start, and collect the young generation less often;
    # not much less: a collection stops every request in the process, and a request leaves a
    # few hundred objects in reference cycles (a new document's validation about 500), so at
    # 50,000 each young collection took 60-100 ms and made every organization's tail latency
    # (bench/fairness.py); at 5,000 they take 2-10 ms (and less in all). The middle
    # generation likewise: every 10 young collections rather than 50 (one took 35-55 ms).
    gc.collect()
    gc.freeze()
    gc.set_threshold(settings.gc_threshold, 10, 100)
    GracefulServer(server_config(app, settings), app.state.graphql).run()


if __name__ == "__main__":
    main()
