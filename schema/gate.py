"""What every operation passes before it runs, over HTTP and websockets alike: the caller's rate
limit, then (PERSISTED_QUERIES=allowlist) the allow-list; and, in the automatic mode, an
authenticated caller's new persisted query is remembered once it is let through."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from graphql import ExecutionResult, GraphQLError
from strawberry.extensions import SchemaExtension

from resolvers.context import RequestContext
from resolvers.errors import ErrorCode
from resolvers.limits import RateLimiter, allowlisted, query_hash, remember_query


@dataclass
class Gate:
    limiter: RateLimiter
    persisted_queries: str  # auto, allowlist or off


def bucket(api_key: Any, viewer: Any, client: Any) -> str:
    """The rate limit's bucket: the API key, else the user, else the client's address."""
    if api_key is not None:
        return f"key:{api_key.id}"
    if viewer is not None:
        return f"user:{viewer.id}"
    return f"ip:{client.host if client else 'unknown'}"


def retry_after(wait: float) -> int:
    """Whole seconds to wait, at least one (the Retry-After header and `retryAfter`)."""
    return max(1, math.ceil(wait))


class Gatekeeper(SchemaExtension):
    async def on_execute(self) -> AsyncIterator[None]:
        ctx = self.execution_context.context
        gate = ctx.gate if isinstance(ctx, RequestContext) else None
        if gate is not None:
            refusal = await self._check(ctx, gate)
            if refusal is not None:
                self.execution_context.result = ExecutionResult(data=None, errors=[refusal])
        yield

    async def _check(self, ctx: RequestContext, gate: Gate) -> GraphQLError | None:
        wait = await gate.limiter.take(
            bucket(ctx.api_key, ctx.viewer, getattr(ctx.request, "client", None))
        )
        if wait > 0:
            seconds = retry_after(wait)
            headers = getattr(ctx.response, "headers", None)
            if headers is not None and not ctx.over_websocket:
                headers["Retry-After"] = str(seconds)
            return graphql_error(
                ErrorCode.RATE_LIMITED,
                f"Too many requests: retry in {seconds} s.",
                retryAfter=seconds,
            )
        query = self.execution_context.query or ""
        if gate.persisted_queries == "allowlist" and ctx.api_key is None:
            if not await allowlisted(query_hash(query)):
                return graphql_error(
                    ErrorCode.PERSISTED_QUERY_REQUIRED,
                    "Only registered queries run here (manage.py persist-queries).",
                )
        elif gate.persisted_queries == "auto" and ctx.persist_query and ctx.viewer is not None:
            await remember_query(query)
        return None


def graphql_error(code: ErrorCode, message: str, **extensions: Any) -> GraphQLError:
    """An error refused before execution, with its code (and any other extensions)."""
    return GraphQLError(message, extensions={"code": code.value, **extensions})
