"""What every operation passes, at every door (HTTP, both websocket protocols, subscriptions).

Before its document is parsed (`Gate.admit`, called by each door): the document's length, a draw
from the caller's rate limit and from their organization's, then (PERSISTED_QUERIES=allowlist)
the allow-list. So a document that does not even parse has paid for its request.

Once it has parsed and validated (`Gatekeeper`, the end of the validation step, which Strawberry
honours on the subscription path too, unlike a refusal set in `on_execute`): a document of several
operations names the one to run, work that costs by design is not multiplied by aliases, and a
signed-in caller's new persisted query is remembered for their organization. The cost is
schema/engine/cost.py's, checked at the same point.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
)
from strawberry.extensions import SchemaExtension

from config import Settings
from resolvers.context import RequestContext
from resolvers.errors import ErrorCode
from resolvers.limits import LoginThrottle, RateLimiter, allowlisted, query_hash, remember_query
from schema.engine.cost import fragments_of

# Mutations whose work is costly by design (password hashing, mail, keys): one per operation.
SENSITIVE_MUTATIONS = frozenset(
    {
        "signUp",
        "login",
        "createUser",
        "changePassword",
        "createApiKey",
        "sendMessage",
        "retryMessage",
        "launchCampaign",
    }
)


@dataclass
class Gate:
    limiter: RateLimiter
    settings: Settings
    login: LoginThrottle
    _shares: dict[int, asyncio.Semaphore] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def share(self, organization_id: int) -> AsyncIterator[None]:
        """One of the organization's ORG_CONCURRENCY places to execute in this process: a burst
        of one organization waits behind itself, and the others' operations go ahead."""
        limit = self.settings.org_concurrency
        if limit <= 0:
            yield
            return
        share = self._shares.get(organization_id)
        if share is None:
            share = self._shares[organization_id] = asyncio.Semaphore(limit)
        try:
            async with share:
                yield
        finally:
            # Idle (no holder, no waiter): forget it, so the dict holds active organizations.
            if share._value == limit and not share._waiters:  # noqa: SLF001
                self._shares.pop(organization_id, None)

    async def wait(self, ctx: RequestContext) -> float:
        """A draw from the caller's bucket and their organization's: the seconds to wait (0:
        go)."""
        wait = await self.limiter.take(bucket(ctx.api_key, ctx.viewer, client_of(ctx)))
        if wait == 0 and ctx.viewer is not None:
            wait = await self.limiter.take(
                f"org:{ctx.viewer.organization_id}",
                rate=self.settings.rate_limit_org_per_second,
                burst=self.settings.rate_limit_org_burst,
            )
        return wait

    async def admit(
        self, ctx: RequestContext, query: str | None, *, draw: bool = True
    ) -> GraphQLError | None:
        """Before parsing: the document's length, the rate limits (unless this request drew
        already), the allow-list."""
        if query is not None and len(query) > self.settings.max_query_length:
            return graphql_error(
                ErrorCode.REQUEST_TOO_LARGE,
                f"The document is {len(query)} characters long, over the limit of "
                f"{self.settings.max_query_length}.",
                limit=self.settings.max_query_length,
            )
        wait = await self.wait(ctx) if draw else 0.0
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
        if (
            self.settings.persisted_queries == "allowlist"
            and ctx.api_key is None
            and query is not None
            and not await allowlisted(query_hash(query))
        ):
            return graphql_error(
                ErrorCode.PERSISTED_QUERY_REQUIRED,
                "Only registered queries run here (manage.py persist-queries).",
            )
        return None


def client_of(ctx: RequestContext) -> Any:
    return getattr(ctx.request, "client", None)


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


def root_fields(
    selections: SelectionSetNode, fragments: dict[str, Any], seen: set[str] | None = None
) -> Iterator[FieldNode]:
    """An operation's root fields, through its fragments."""
    seen = set() if seen is None else seen
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from root_fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name not in seen and name in fragments:
                seen.add(name)
                yield from root_fields(fragments[name].selection_set, fragments, seen)


class OrganizationShare(SchemaExtension):
    """Execution within the organization's share of the process (`Gate.share`). For a
    subscription this covers subscribing only; its events run in the hub's own time."""

    async def on_execute(self) -> AsyncIterator[None]:
        ctx = self.execution_context.context
        if isinstance(ctx, RequestContext) and ctx.gate is not None and ctx.viewer is not None:
            async with ctx.gate.share(ctx.viewer.organization_id):
                yield
        else:
            yield


class Gatekeeper(SchemaExtension):
    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if not context.pre_execution_errors and document is not None:
            refusal = self._check(document, context)
            if refusal is not None:
                context.pre_execution_errors = [refusal]
        yield

    def _check(self, document: Any, context: Any) -> GraphQLError | None:
        # As the client sent it: `operation_name` names the first operation when none was.
        operation_name = context._provided_operation_name  # noqa: SLF001
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if len(operations) > 1 and not operation_name:
            return graphql_error(
                ErrorCode.GRAPHQL_VALIDATION_FAILED,
                "Must provide operation name if query contains multiple operations.",
            )
        operation = next(
            (
                o
                for o in operations
                if not operation_name or (o.name is not None and o.name.value == operation_name)
            ),
            None,
        )
        if operation is None:
            return None
        ctx = context.context
        if operation.operation is OperationType.SUBSCRIPTION and not getattr(
            ctx, "over_websocket", True
        ):
            return graphql_error(
                ErrorCode.BAD_REQUEST,
                "Subscriptions run over websockets at /graphql (graphql-transport-ws or "
                "graphql-ws), not over HTTP.",
            )
        if operation.operation is not OperationType.MUTATION:
            return None
        sensitive = [
            field.name.value
            for field in root_fields(operation.selection_set, fragments_of(document))
            if field.name.value in SENSITIVE_MUTATIONS
        ]
        if len(sensitive) > 1:
            return graphql_error(
                ErrorCode.BAD_USER_INPUT,
                f"{', '.join(sorted(set(sensitive)))}: at most one of these per operation "
                "(each costs the server by design); send them as separate requests.",
            )
        return None

    async def on_execute(self) -> Any:
        # A signed-in caller's query sent with its hash is remembered once it passed every
        # check, for the caller's organization.
        ctx = self.execution_context.context
        query = self.execution_context.query
        if isinstance(ctx, RequestContext) and ctx.persist_query and query and ctx.viewer:
            settings = ctx.settings
            await remember_query(
                ctx.viewer.organization_id,
                query,
                keep=settings.persisted_queries_per_organization,
                longest=settings.persisted_query_max_length,
            )
        yield


def graphql_error(code: ErrorCode, message: str, **extensions: Any) -> GraphQLError:
    """An error refused before execution, with its code (and any other extensions)."""
    return GraphQLError(message, extensions={"code": code.value, **extensions})
