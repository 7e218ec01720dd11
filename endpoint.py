"""/graphql over HTTP and websockets: Strawberry's ASGI view with the gate, persisted queries,
the GraphQL-over-HTTP media type and the API's JSON errors."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import orjson
from cross_web import HTTPException
from graphql import GraphQLError
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLRequestData
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.unset import UNSET, UnsetType

from config import Settings
from doors import (
    GRAPHQL_RESPONSE,
    RETRY_AFTER_OUTAGE,
    Refusal,
    TooDeep,
    decode_json,
)
from resolvers import statements
from resolvers.api_key import is_api_key, key_user
from resolvers.auth import authenticate
from resolvers.context import RequestContext
from resolvers.errors import ErrorCode
from resolvers.foreground import REQUESTS
from resolvers.limits import HASH_RE, LoginThrottle, RateLimiter, known_query, query_hash
from schema.engine.gate import Gate, graphql_error, in_flight
from sockets import LegacyWsHandler, TransportWsHandler, admit_connection
from subscriptions.hub import Hub

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
        self, *args: Any, hub: Hub, limiter: RateLimiter, settings: Settings, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.hub = hub
        self.settings = settings
        throttle = LoginThrottle(
            limiter,
            settings.login_failures_per_account,
            settings.login_failures_per_address,
            settings.login_max_delay_seconds,
        )
        self.gate = Gate(limiter, settings, throttle)
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
        return decode_json(data, self.settings.max_json_depth)

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
        if self.settings.persisted_queries == "off" or not isinstance(persisted, dict):
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
        viewer, api_key, token_hash, auth_error, team = await principal(
            request.headers.get("authorization"), keys=request.scope["type"] == "http"
        )
        ctx = RequestContext(
            request_id=state.get("request_id") or uuid.uuid4().hex,
            settings=self.settings,
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
            team_ids=team,
        )
        if viewer is not None:
            statements.OWNER.set(viewer.organization_id)  # whose share a new shape takes
            ctx.log_fields["organization"] = viewer.organization_id
            ctx.log_fields["user"] = viewer.id
            flight = in_flight(ctx)
            if flight is not None:
                REQUESTS.own(flight, viewer.organization_id)
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


async def principal(
    authorization: str | None, *, keys: bool = True
) -> tuple[Any, Any, str | None, str | None, set[int] | None]:
    """(viewer, API key, session token digest, why not, the viewer's team when read): an API
    key (when `keys`: over HTTP), else a session token."""
    token = (authorization or "").partition(" ")[2].strip()
    if keys and is_api_key(token):
        viewer, key, why = await key_user(token)
        return viewer, key, None, why, None
    viewer, token_hash, why, team = await authenticate(authorization)
    return viewer, None, token_hash, why, team
