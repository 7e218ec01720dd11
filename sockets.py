"""The websocket doors: graphql-transport-ws and the legacy graphql-ws, each connection signed
in and counted against its user's, each operation through the gate before it is parsed."""

from __future__ import annotations

import logging
from typing import Any, cast

from graphql import GraphQLError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from resolvers.auth import authenticate
from resolvers.context import RequestContext
from resolvers.errors import is_outage
from schema.engine.gate import Gate
from subscriptions.hub import Hub

log = logging.getLogger("crm.websocket")


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
    if not hub.connect(ctx.viewer.id, ctx.settings.max_connections_per_user):
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
    ctx.viewer, ctx.token_hash, ctx.auth_error, ctx.team_ids = await authenticate(authorization)
    if ctx.viewer is not None:
        ctx.log_fields.update(organization=ctx.viewer.organization_id, user=ctx.viewer.id)
    return ctx.viewer is not None
