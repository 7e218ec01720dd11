"""The Starlette application: /graphql over HTTP (and websockets), health, readiness, metrics.

`python server.py` serves it with uvicorn on HOST:PORT.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import orjson
import uvicorn
from graphql import GraphQLError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLRequestData
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET, UnsetType
from tortoise import connections
from tortoise.contrib.starlette import RegisterTortoise

from config import Settings, settings, tortoise_config
from models import Role
from observability import RequestLogMiddleware, configure_logging
from resolvers.api_key import is_api_key, key_user
from resolvers.auth import authenticate
from resolvers.context import RequestContext
from resolvers.errors import ErrorCode
from resolvers.export import EXPORTS, stream
from resolvers.limits import HASH_RE, RateLimiter, known_query, query_hash
from resolvers.pagination import page_limit
from schema import build_schema
from schema.gate import Gate, bucket, graphql_error, retry_after
from subscriptions.hub import Hub

log = logging.getLogger("crm.server")


class TransportWsHandler(BaseGraphQLTransportWSHandler):
    """graphql-transport-ws, refusing a bad connection_init with 4401 Unauthorized.

    Strawberry closes a refused connection with 4403 Forbidden, which graphql-ws clients take
    as a reason to reconnect (and fail again) forever; 4401 is one of the codes they give up on.
    """

    async def handle_connection_init(self, message: Any) -> None:
        payload = message.get("payload") or {}
        if (
            isinstance(payload, dict)
            and not self.connection_init_received
            and not self.connection_timed_out
        ):
            ctx = cast(RequestContext, self.context)
            ctx.connection_params = payload
            if not await authenticate_connection(ctx):
                self.connection_init_received = True
                if self.connection_init_timeout_task:
                    self.connection_init_timeout_task.cancel()
                await self.websocket.close(code=4401, reason="Unauthorized")
                return
        await super().handle_connection_init(message)


async def authenticate_connection(ctx: RequestContext) -> bool:
    """Sign a websocket in with the connection_init payload's authorization (or, for clients
    that can set headers, the upgrade request's Authorization header)."""
    if ctx.viewer is not None:
        return True
    params = ctx.connection_params or {}
    authorization = params.get("authorization") or params.get("Authorization")
    if not isinstance(authorization, str) or not authorization:
        ctx.auth_error = 'Send {"authorization": "Bearer <token>"} in connection_init.'
        return False
    ctx.viewer, ctx.token_hash, ctx.auth_error = await authenticate(authorization)
    if ctx.viewer is not None:
        ctx.log_fields.update(organization=ctx.viewer.organization_id, user=ctx.viewer.id)
    return ctx.viewer is not None


class CrmGraphQL(GraphQL):
    graphql_transport_ws_handler_class = TransportWsHandler

    def __init__(
        self, *args: Any, hub: Hub, limiter: RateLimiter, config: Settings, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.hub = hub
        self.config = config
        self.gate = Gate(limiter, config.persisted_queries)

    def encode_json(self, data: object) -> str:
        """Responses and websocket messages (text frames), with orjson: a tenth of json.dumps's
        time on a pipeline page. Anything orjson refuses goes through json.dumps."""
        try:
            return orjson.dumps(data).decode()
        except orjson.JSONEncodeError:
            return super().encode_json(data)  # type: ignore[return-value]

    async def execute_single(  # type: ignore[override]
        self,
        request: Any,
        request_adapter: Any,
        sub_response: Any,
        context: RequestContext,
        root_value: Any,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """Over HTTP, before the schema: a persisted query's hash becomes its query. (The rate
        limit and the allow-list are schema/gate.py's, for websockets too.)"""
        refusal = await self._persisted(context, request_data)
        if refusal is not None:
            return ExecutionResult(data=None, errors=[refusal])
        return await super().execute_single(
            request,
            request_adapter,
            sub_response,
            context,  # type: ignore[arg-type]
            root_value,
            request_data,
        )

    async def _persisted(
        self, ctx: RequestContext, data: GraphQLRequestData
    ) -> GraphQLError | None:
        persisted = (data.extensions or {}).get("persistedQuery")
        if self.config.persisted_queries == "off" or not isinstance(persisted, dict):
            return None
        digest = str(persisted.get("sha256Hash") or "")
        if not HASH_RE.match(digest):
            return graphql_error(
                ErrorCode.BAD_USER_INPUT, "persistedQuery.sha256Hash is 64 hex digits."
            )
        if data.query:
            if query_hash(data.query) != digest:
                return graphql_error(
                    ErrorCode.BAD_USER_INPUT, "The query does not match its sha256Hash."
                )
            ctx.persist_query = True  # remembered once the gate lets it through
            return None
        query = await known_query(digest)
        if query is None:
            return graphql_error(ErrorCode.PERSISTED_QUERY_NOT_FOUND, "PersistedQueryNotFound")
        data.query = query
        return None

    async def get_context(self, request: HTTPConnection, response: Any) -> RequestContext:  # type: ignore[override]
        state = request.scope.setdefault("state", {})
        viewer, api_key, token_hash, auth_error = await principal(
            request.headers.get("authorization"), keys=request.scope["type"] == "http"
        )
        if api_key is not None:
            page_limit.set(settings.api_key_max_page_size)
        ctx = RequestContext(
            request_id=state.get("request_id") or uuid.uuid4().hex,
            viewer=viewer,
            token_hash=token_hash,
            auth_error=auth_error,
            request=request,
            response=response,
            log_fields=state.setdefault("log", {}),
            hub=self.hub,
            over_websocket=request.scope["type"] == "websocket",
            api_key=api_key,
            gate=self.gate,
        )
        if viewer is not None:
            ctx.log_fields["organization"] = viewer.organization_id
            ctx.log_fields["user"] = viewer.id
        return ctx

    async def on_ws_connect(self, context: RequestContext) -> UnsetType | dict[str, object] | None:  # type: ignore[override]
        # The legacy graphql-ws protocol answers a refusal with connection_error.
        if not await authenticate_connection(context):
            raise ConnectionRejectionError(
                {"message": context.auth_error, "extensions": {"code": "UNAUTHENTICATED"}}
            )
        return UNSET


EXPORTS_AT_ONCE = 2  # per process: each holds a database connection while it streams


async def healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception as error:  # any failure to reach the database means not ready
        log.warning("database not reachable: %s", error)
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    # The bus being down makes live delivery slower (each process polls the log), not wrong:
    # it is reported, and the process stays ready.
    bus = "ok" if request.app.state.hub.bus_connected else "reconnecting"
    return JSONResponse({"status": "ok", "database": "ok", "bus": bus})


async def principal(
    authorization: str | None, *, keys: bool = True
) -> tuple[Any, Any, str | None, str | None]:
    """(viewer, API key, session token digest, why not): an API key (when `keys`: over HTTP),
    else a session token."""
    token = (authorization or "").partition(" ")[2].strip()
    if keys and is_api_key(token):
        viewer, key, why = await key_user(token)
        return viewer, key, None, why
    viewer, token_hash, why = await authenticate(authorization)
    return viewer, None, token_hash, why


async def export(request: Request) -> Response:
    """GET /export/<type>.ndjson: a whole record type for admins and their API keys."""
    spec = EXPORTS.get(request.path_params["name"])
    if spec is None:
        known = ", ".join(f"/export/{name}.ndjson" for name in EXPORTS)
        return JSONResponse({"error": f"No such export: try {known}."}, status_code=404)
    viewer, key, _, why = await principal(request.headers.get("authorization"))
    if viewer is None:
        return JSONResponse({"error": why or "Send Authorization: Bearer <key>."}, status_code=401)
    if viewer.role != Role.ADMIN:
        return JSONResponse({"error": "Exports are for admins and their API keys."}, 403)
    wait = await request.app.state.limiter.take(bucket(key, viewer, request.client))
    if wait > 0:
        retry = str(retry_after(wait))
        body = {"error": f"Too many requests: retry in {retry} s."}
        return JSONResponse(body, status_code=429, headers={"Retry-After": retry})
    exports: asyncio.Semaphore = request.app.state.exports
    if exports.locked():
        body = {"error": "Too many exports at once on this process: retry in a minute."}
        return JSONResponse(body, status_code=429, headers={"Retry-After": "60"})

    async def lines() -> AsyncIterator[bytes]:
        async with exports:
            async for chunk in stream(spec, viewer.organization_id):
                yield chunk

    return StreamingResponse(lines(), media_type="application/x-ndjson")


async def metrics(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def create_app(config: Settings = settings) -> Starlette:
    hub = Hub(
        config.broadcast_url,
        config.bus_channel,
        poll_seconds=config.event_poll_seconds,
        queue_size=config.subscription_queue_size,
        auth_recheck_seconds=config.auth_recheck_seconds,
    )
    limiter = RateLimiter(
        config.rate_limit_per_second,
        config.rate_limit_burst,
        config.rate_limit_redis_url,
        prefix=config.bus_channel,
    )
    graphql = CrmGraphQL(
        build_schema(config),
        graphql_ide="graphiql" if config.graphiql else None,
        allowed_origins=config.cors_origins,
        keep_alive=True,  # legacy graphql-ws: "ka" messages keep proxies from idling us out
        keep_alive_interval=15,
        hub=hub,
        limiter=limiter,
        config=config,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with RegisterTortoise(app, config=tortoise_config(config.database_url)):
            await hub.start()
            try:
                yield
            finally:
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
                allow_origins=config.cors_origins,
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["authorization", "content-type", "x-request-id"],
                expose_headers=["x-request-id"],
                max_age=600,
            ),
        ],
        lifespan=lifespan,
    )
    app.state.hub = hub
    app.state.limiter = limiter
    app.state.exports = asyncio.Semaphore(EXPORTS_AT_ONCE)
    return app


GC_THRESHOLD = int(os.environ.get("GC_THRESHOLD", "50000"))


def main() -> None:
    configure_logging(settings.log_level)
    ide = " (GraphiQL in a browser)" if settings.graphiql else ""
    print(f"Serving http://{settings.host}:{settings.port}/graphql{ide}", flush=True)
    app = create_app(settings)
    # A GraphQL response allocates tens of thousands of short-lived objects; the cyclic
    # collector's default thresholds then scan the long-lived ones (schema, models, modules)
    # over and over. Freeze what exists at start, and collect the young generation less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 50, 100)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        proxy_headers=True,
        access_log=False,  # RequestLogMiddleware writes the structured access log
        ws_per_message_deflate=settings.ws_compression,
    )


if __name__ == "__main__":
    main()
