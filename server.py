"""The Starlette application: /graphql over HTTP (and websockets), health, readiness, metrics.

`python server.py` serves it with uvicorn on HOST:PORT.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import orjson
import uvicorn
from cross_web import HTTPException
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
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.unset import UNSET, UnsetType
from tortoise import connections
from tortoise.contrib.starlette import RegisterTortoise

from config import Settings, settings, tortoise_config
from doors import (
    GRAPHQL_RESPONSE,
    RETRY_AFTER_OUTAGE,
    BodyLimit,
    OutageGuard,
    Refusal,
    TooDeep,
    decode_json,
)
from models import Role
from observability import RequestLogMiddleware, configure_logging
from resolvers.api_key import is_api_key, key_user
from resolvers.auth import authenticate
from resolvers.context import RequestContext
from resolvers.errors import ErrorCode, is_outage
from resolvers.export import EXPORTS, stream
from resolvers.limits import HASH_RE, LoginThrottle, RateLimiter, known_query, query_hash
from resolvers.pagination import page_limit
from schema import build_schema
from schema.gate import Gate, graphql_error, retry_after
from subscriptions.hub import Hub

log = logging.getLogger("crm.server")


class TransportWsHandler(BaseGraphQLTransportWSHandler):
    """graphql-transport-ws, refusing a bad connection_init with 4401 Unauthorized.

    Strawberry closes a refused connection with 4403 Forbidden, which graphql-ws clients take
    as a reason to reconnect (and fail again) forever; 4401 is one of the codes they give up on.
    Each operation passes the gate (size, rate limits, allow-list) before it is parsed.
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
            refusal = await admit_connection(ctx)
            if refusal is not None:
                self.connection_init_received = True
                if self.connection_init_timeout_task:
                    self.connection_init_timeout_task.cancel()
                code, reason, _ = refusal
                await self.websocket.close(code=code, reason=reason)
                return
        await super().handle_connection_init(message)

    async def handle(self) -> Any:
        try:
            return await super().handle()
        finally:
            release_connection(cast(RequestContext, self.context))

    async def run_operation(self, operation: Any) -> None:
        refusal = await admit_operation(cast(RequestContext, self.context), operation.query)
        if refusal is not None:
            await operation.send_initial_errors([refusal])
            return
        await super().run_operation(operation)


class LegacyWsHandler(BaseGraphQLWSHandler):
    """The legacy graphql-ws protocol: each subscription passes the gate before it is parsed."""

    async def handle_connection_init(self, message: Any) -> None:
        payload = message.get("payload")
        if isinstance(payload, dict):
            ctx = cast(RequestContext, self.context)
            ctx.connection_params = payload
            refusal = await admit_connection(ctx)
            if refusal is not None:
                code, reason, error = refusal
                await self.send_message({"type": "connection_error", "payload": error})
                # Strawberry closes a refused legacy connection with 1011; an outage says 1013.
                await self.websocket.close(code=code if code == 1013 else 1011, reason=reason)
                return
        await super().handle_connection_init(message)

    async def handle(self) -> Any:
        try:
            return await super().handle()
        finally:
            release_connection(cast(RequestContext, self.context))

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        refusal = await admit_operation(cast(RequestContext, self.context), query)
        if refusal is None:
            await super().handle_async_results(operation_id, query, operation_name, variables)
            return
        try:
            await self.send_message(
                {"type": "error", "id": operation_id, "payload": refusal.formatted}  # type: ignore[typeddict-item]
            )
        finally:
            self.tasks.pop(operation_id, None)


async def admit_operation(ctx: RequestContext, query: Any) -> GraphQLError | None:
    gate: Gate = ctx.gate
    return await gate.admit(ctx, query if isinstance(query, str) else None)


async def admit_connection(ctx: RequestContext) -> tuple[int, str, dict[str, Any]] | None:
    """Sign a websocket in, and count it against its user's connections: None when it may stay,
    else (close code, reason, the legacy protocol's connection_error payload)."""
    if ctx.connection_counted:
        return None
    try:
        signed_in = await authenticate_connection(ctx)
    except Exception as error:
        if not is_outage(error):
            raise
        log.warning("database unreachable at connection_init: %s", error)
        reason = "Service unavailable: retry later"
        return 1013, reason, {"message": reason, "extensions": {"code": "SERVICE_UNAVAILABLE"}}
    if not signed_in:
        payload = {"message": ctx.auth_error, "extensions": {"code": "UNAUTHENTICATED"}}
        return 4401, "Unauthorized", payload
    assert ctx.viewer is not None
    hub: Hub = ctx.hub
    if not hub.connect(ctx.viewer.id, ctx.gate.config.max_connections_per_user):
        reason = "Too many connections for this user"
        payload = {"message": reason, "extensions": {"code": "TOO_MANY_SUBSCRIPTIONS"}}
        return 4429, reason, payload
    ctx.connection_counted = True
    return None


def release_connection(ctx: RequestContext) -> None:
    if ctx.connection_counted and ctx.viewer is not None:
        ctx.connection_counted = False
        ctx.hub.disconnect(ctx.viewer.id)


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


# The HTTP status of an answer that never ran (no `data`) for clients that accept
# application/graphql-response+json (GraphQL over HTTP); application/json clients get 200.
_STATUS = {
    ErrorCode.RATE_LIMITED.value: 429,
    ErrorCode.REQUEST_TOO_LARGE.value: 413,
    ErrorCode.SERVICE_UNAVAILABLE.value: 503,
    ErrorCode.UNAUTHENTICATED.value: 401,
}


def wants_graphql_response(request: Any) -> bool:
    """Whether the client accepts application/graphql-response+json (it then gets it)."""
    accept = request.headers.get("accept", "")
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        if media.strip().lower() == GRAPHQL_RESPONSE:
            return "q=0" not in params.replace(" ", "").split(";")
    return False


class CrmGraphQL(GraphQL):
    graphql_transport_ws_handler_class = TransportWsHandler
    graphql_ws_handler_class = LegacyWsHandler

    def __init__(
        self, *args: Any, hub: Hub, limiter: RateLimiter, config: Settings, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.hub = hub
        self.config = config
        throttle = LoginThrottle(
            limiter,
            config.login_failures_per_account,
            config.login_failures_per_address,
            config.login_max_delay_seconds,
        )
        self.gate = Gate(limiter, config, throttle)
        self.websockets: set[Any] = set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope=scope, receive=receive)
        try:
            response = await self.run(request)
        except HTTPException as error:
            # Strawberry answers protocol errors in plain text: a JSON GraphQL error instead.
            message = error.reason
            if isinstance(error.__cause__, TooDeep):
                message = f"{error.__cause__.msg}."
            refusal = Refusal(error.status_code, ErrorCode.BAD_REQUEST, message)
            media = GRAPHQL_RESPONSE if wants_graphql_response(request) else "application/json"
            await refusal.send(send, media)
            return
        await response(scope, receive, send)

    def decode_json(self, data: str | bytes) -> object:
        return decode_json(data, self.config.max_json_depth)

    def should_render_graphql_ide(self, request: Any) -> bool:
        """GraphiQL for a browser (Accept: text/html) that asks for nothing else; a GET with
        only a persisted query's hash (Apollo's useGETForHashedQueries, Accept: */*) runs it."""
        params = request.query_params
        return (
            request.method == "GET"
            and params.get("query") is None
            and params.get("extensions") is None
            and "text/html" in request.headers.get("accept", "")
        )

    def encode_json(self, data: object) -> str:
        """Responses and websocket messages (text frames), with orjson: a tenth of json.dumps's
        time on a pipeline page. Anything orjson refuses goes through json.dumps."""
        try:
            return orjson.dumps(data).decode()
        except orjson.JSONEncodeError:
            return super().encode_json(data)  # type: ignore[return-value]

    async def process_result(self, request: Any, result: ExecutionResult) -> Any:
        answer = await super().process_result(request, result)
        if isinstance(result, PreExecutionError) and wants_graphql_response(request):
            answer.pop("data", None)  # the operation never ran
        return answer

    def create_response(self, response_data: Any, sub_response: Any) -> Response:
        response = super().create_response(response_data, sub_response)
        if sub_response.media_type == GRAPHQL_RESPONSE:
            response.headers["content-type"] = f"{GRAPHQL_RESPONSE}; charset=utf-8"
        return response

    async def execute_single(  # type: ignore[override]
        self,
        request: Any,
        request_adapter: Any,
        sub_response: Any,
        context: RequestContext,
        root_value: Any,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """Over HTTP, before the schema: the gate (the document's size, the rate limits, the
        allow-list), and a persisted query's hash becomes its query. Then the status and media
        type of the answer."""
        graphql_response = wants_graphql_response(request)
        if graphql_response:
            sub_response.media_type = GRAPHQL_RESPONSE
        refusal = await self.gate.admit(context, request_data.query)
        if refusal is None and request_data.query is None:
            refusal = await self._persisted(context, request_data)
            if refusal is None and request_data.query is not None:
                refusal = await self.gate.admit(context, request_data.query, draw=False)
        elif refusal is None:
            refusal = await self._persisted(context, request_data)
        if refusal is not None:
            result: ExecutionResult = PreExecutionError(data=None, errors=[refusal])
        else:
            result = await super().execute_single(
                request,
                request_adapter,
                sub_response,
                context,  # type: ignore[arg-type]
                root_value,
                request_data,
            )
        codes = [(error.extensions or {}).get("code") for error in result.errors or ()]
        if ErrorCode.SERVICE_UNAVAILABLE.value in codes:
            sub_response.status_code = 503
            sub_response.headers["Retry-After"] = str(RETRY_AFTER_OUTAGE)
        elif graphql_response and isinstance(result, PreExecutionError):
            sub_response.status_code = _STATUS.get(str(codes[0]) if codes else "", 400)
        return result

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
        organization = ctx.viewer.organization_id if ctx.viewer is not None else None
        query = await known_query(digest, organization)
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
            page_limit.set(self.config.api_key_max_page_size)
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

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        if request.scope["type"] != "websocket":
            return await super().run(request, context, root_value)
        self.websockets.add(request)
        try:
            return await super().run(request, context, root_value)
        finally:
            self.websockets.discard(request)

    async def close_websockets(self, code: int, reason: str) -> None:
        """Close every open websocket with a code and a reason (on shutdown)."""
        for websocket in list(self.websockets):
            with contextlib.suppress(Exception):
                await websocket.close(code=code, reason=reason)

    async def on_ws_connect(self, context: RequestContext) -> UnsetType | dict[str, object] | None:  # type: ignore[override]
        # The legacy graphql-ws protocol answers a refusal with connection_error.
        refusal = await admit_connection(context)
        if refusal is not None:
            raise ConnectionRejectionError(refusal[2])
        return UNSET


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
        raise Refusal(404, ErrorCode.NOT_FOUND, f"No such export: try {known}.")
    viewer, key, _, why = await principal(request.headers.get("authorization"))
    if viewer is None:
        message = why or "Send Authorization: Bearer <key>."
        raise Refusal(401, ErrorCode.UNAUTHENTICATED, message)
    if viewer.role != Role.ADMIN:
        raise Refusal(403, ErrorCode.FORBIDDEN, "Exports are for admins and their API keys.")
    gate: Gate = request.app.state.gate
    ctx = RequestContext(request_id="", viewer=viewer, api_key=key, request=request)
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
            async for chunk in stream(spec, viewer.organization_id):
                yield chunk
        finally:
            slots.give_back(viewer.organization_id)

    timeout = gate.config.export_send_timeout_seconds
    return PatientStreamingResponse(lines(), timeout, media_type="application/x-ndjson")


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
                await asyncio.wait_for(send(message), self.timeout)
            except TimeoutError:
                log.warning("export ended: its client read nothing for %s s", self.timeout)
                raise OSError("the client stopped reading") from None

        try:
            await super().stream_response(patient)
        except OSError:
            with contextlib.suppress(Exception):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
            raise


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
        timeout=config.redis_timeout_seconds,
        breaker_failures=config.redis_breaker_failures,
        breaker_seconds=config.redis_breaker_seconds,
    )
    graphql = CrmGraphQL(
        build_schema(config),
        graphql_ide="graphiql" if config.graphiql else None,
        allowed_origins=config.cors_origins,
        keep_alive=True,  # legacy graphql-ws: "ka" messages keep proxies from idling us out
        keep_alive_interval=15,
        # Live subscriptions are counted per websocket by the feeds (TOO_MANY_SUBSCRIPTIONS);
        # this bounds everything else in flight on one socket (queries and mutations).
        max_subscriptions_per_connection=config.max_subscriptions_per_connection + 10,
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
                allow_headers=CORS_HEADERS,
                expose_headers=["x-request-id", "retry-after"],
                max_age=600,
            ),
            Middleware(OutageGuard),
            Middleware(BodyLimit, limit=config.max_body_bytes),
        ],
        lifespan=lifespan,
    )
    app.state.hub = hub
    app.state.limiter = limiter
    app.state.gate = graphql.gate
    app.state.graphql = graphql
    app.state.exports = ExportSlots(config.exports_per_process, config.exports_per_organization)
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
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        proxy_headers=True,
        access_log=False,  # RequestLogMiddleware writes the structured access log
        ws_per_message_deflate=settings.ws_compression,
        ws_max_size=settings.max_body_bytes,  # a websocket message: the same limit as a body
        timeout_graceful_shutdown=int(math.ceil(settings.shutdown_timeout_seconds)),
    )
    GracefulServer(config, app.state.graphql).run()


if __name__ == "__main__":
    main()
