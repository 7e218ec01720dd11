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
import collections
import contextlib
import itertools
import math
import sys
import time
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
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
from resolvers.foreground import REQUESTS, Courtesy, Flight
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

    # Places to execute, by organization id or by principal (a user's or key's rate bucket);
    # the organizations and principals refused by their own bucket lately (until when, and
    # their courtesy toward the other organizations).
    _places: dict[Hashable, Places] = field(default_factory=dict)
    _at_limits: dict[Hashable, AtLimits] = field(default_factory=dict)
    _parked: dict[str, int] = field(default_factory=dict)

    def places_of(self, who: Hashable, usual: int) -> int:
        """How many operations of an organization or a principal may execute at once now:
        `usual`, or ORG_CONCURRENCY_AT_LIMITS while it was refused by its own bucket in the last
        AT_LIMITS_SECONDS (at its limits it takes turns, one operation at a time, and leaves
        the process's loop to the others)."""
        mark = self._at_limits.get(who)
        if mark is not None:
            if time.monotonic() >= mark.until:
                del self._at_limits[who]
            elif self.settings.org_concurrency_at_limits > 0:
                return self.settings.org_concurrency_at_limits  # (0: no fewer than usual)
        return usual

    async def give_way(self, ctx: RequestContext) -> None:
        """Before a step of an operation (its parsing, validation, execution, each level of its
        plan's statements: schema/engine/plans.py) of a principal or an organization at its
        limits: wait while another organization's request is in flight in this process, within
        its courtesy's bounds (AT_LIMITS_COURTESY_SHARE of its time,
        AT_LIMITS_COURTESY_LONGEST_SECONDS at once; resolvers/foreground.py), so that its work
        does not interleave with theirs on the event loop."""
        if not self._at_limits or ctx.viewer is None or self.settings.at_limits_courtesy_share <= 0:
            return
        now = time.monotonic()
        for who in (bucket(ctx.api_key, ctx.viewer, client_of(ctx)), ctx.viewer.organization_id):
            mark = self._at_limits.get(who)
            if mark is not None and now < mark.until:
                await mark.courtesy.turn()
                return

    @contextlib.asynccontextmanager
    async def share(self, ctx: RequestContext) -> AsyncIterator[None]:
        """One of the organization's places to execute in this process (ORG_CONCURRENCY): a
        burst of one organization waits behind itself, and the others' operations go ahead.
        A principal (user or API key) at its own limits first takes one of its own places
        (ORG_CONCURRENCY_AT_LIMITS), so it takes turns without holding its colleagues'."""
        if self.settings.org_concurrency <= 0 or ctx.viewer is None:
            yield
            return
        principal = bucket(ctx.api_key, ctx.viewer, client_of(ctx))
        async with contextlib.AsyncExitStack() as places:
            if principal in self._at_limits:
                await places.enter_async_context(self._place(principal, sys.maxsize))
            organization = ctx.viewer.organization_id
            await places.enter_async_context(
                self._place(organization, self.settings.org_concurrency)
            )
            yield

    @contextlib.asynccontextmanager
    async def _place(self, who: Hashable, usual: int) -> AsyncIterator[None]:
        places = self._places.get(who)
        if places is None:
            places = self._places[who] = Places()
        try:
            await places.take(lambda: self.places_of(who, usual))
            try:
                yield
            finally:
                places.give_back(lambda: self.places_of(who, usual))
        finally:
            # Idle (no holder, no waiter): forget it, so the dict holds the active ones.
            if places.idle:
                self._places.pop(who, None)

    async def wait(self, ctx: RequestContext) -> float:
        """A draw from the caller's bucket and their organization's: the seconds to wait (0:
        go). A refusal marks the principal or the organization whose bucket refused as at its
        limits (`places_of`)."""
        principal = bucket(ctx.api_key, ctx.viewer, client_of(ctx))
        wait = await self.limiter.take(principal)
        if wait > 0 and ctx.viewer is not None:  # the user's or key's own bucket
            self._mark_at_limits(principal, ctx.viewer.organization_id)
        elif wait == 0 and ctx.viewer is not None:
            organization = ctx.viewer.organization_id
            wait = await self.limiter.take(
                f"org:{organization}",
                rate=self.settings.rate_limit_org_per_second,
                burst=self.settings.rate_limit_org_burst,
            )
            if wait > 0:  # the organization's own bucket: all its users take turns
                self._mark_at_limits(organization, organization)
        return wait

    def _mark_at_limits(self, who: Hashable, organization: Hashable) -> None:
        """The marks are kept in the order they expire (each re-inserted at the end), so the
        expired ones, organizations that went quiet, are dropped from the front. A mark still
        running keeps its courtesy (and what it waited)."""
        now = time.monotonic()
        marks = self._at_limits
        mark = marks.pop(who, None)
        if mark is None or mark.until <= now:
            courtesy = Courtesy(
                share=self.settings.at_limits_courtesy_share,
                longest=self.settings.at_limits_courtesy_longest_seconds,
                owner=organization,
            )
            mark = AtLimits(now, courtesy)
        mark.until = now + AT_LIMITS_SECONDS
        marks[who] = mark
        for marked, old in list(itertools.islice(marks.items(), 8)):
            if old.until > now:
                break
            del marks[marked]

    async def hold_refusal(self, ctx: RequestContext, wait: float) -> None:
        """Before a RATE_LIMITED answer over HTTP: RATE_LIMIT_REFUSAL_DELAY_SECONDS (never past
        the `retryAfter` it announces), so that a client resending at once slows itself down to
        a few requests a second. At most RATE_LIMIT_PARKED_PER_ORGANIZATION refusals of an
        organization (or of one anonymous address) are held at once; the next ones are answered
        at once."""
        delay = min(retry_after(wait), self.settings.rate_limit_refusal_delay_seconds)
        if delay <= 0 or ctx.over_websocket:
            return
        key = (
            f"org:{ctx.viewer.organization_id}"
            if ctx.viewer is not None
            else bucket(ctx.api_key, None, client_of(ctx))
        )
        parked = self._parked.get(key, 0)
        if parked >= self.settings.rate_limit_parked_per_organization:
            return
        self._parked[key] = parked + 1
        try:
            # A held refusal does no work: background jobs and organizations at their limits go on.
            with REQUESTS.away(in_flight(ctx)):
                await asyncio.sleep(delay)
        finally:
            left = self._parked[key] - 1
            if left > 0:
                self._parked[key] = left
            else:
                del self._parked[key]

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
            await self.hold_refusal(ctx, wait)
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


# How long after a refusal an organization counts as at its limits (`Gate.places_of`).
AT_LIMITS_SECONDS = 10.0


@dataclass
class AtLimits:
    """A principal or an organization refused by its own bucket: until when it counts as at its
    limits, and its courtesy toward the other organizations' requests (`Gate.give_way`)."""

    until: float
    courtesy: Courtesy


class Places:
    """Places to execute, their number read when taken (it changes as an organization reaches
    its limits and leaves them): first come, first served."""

    def __init__(self) -> None:
        self.held = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def idle(self) -> bool:
        return self.held == 0 and not self.waiters

    async def take(self, limit: Callable[[], int]) -> None:
        if not self.waiters and self.held < limit():
            self.held += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter  # given a place by give_back (held counted for us)
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.give_back(limit)  # given a place, then cancelled: pass it on
            elif waiter in self.waiters:
                self.waiters.remove(waiter)
            raise

    def give_back(self, limit: Callable[[], int]) -> None:
        self.held -= 1
        while self.waiters and self.held < limit():
            waiter = self.waiters.popleft()
            if not waiter.done():
                self.held += 1
                waiter.set_result(None)


def client_of(ctx: RequestContext) -> Any:
    return getattr(ctx.request, "client", None)


def in_flight(ctx: RequestContext) -> Flight | None:
    """The request as counted in flight (observability.RequestLogMiddleware), if it is."""
    state = getattr(ctx.request, "scope", {}).get("state") or {}
    flight = state.get("in_flight")
    return flight if isinstance(flight, Flight) else None


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
    """An operation within its organization's share of the process (`Gate.share`): over HTTP
    from its parsing to its end (a new document's parsing and validation is most of its
    work); over websockets its execution (for a subscription, subscribing only: its events run
    in the hub's own time). At its limits, it gives way to the other organizations' requests
    before each step (`Gate.give_way`): its parsing, its validation, its execution (and the
    plan, before each level's statements)."""

    async def on_operation(self) -> AsyncIterator[None]:
        ctx = self.execution_context.context
        if self._shared(ctx) and not ctx.over_websocket:
            async with ctx.gate.share(ctx):
                await ctx.gate.give_way(ctx)
                yield
        else:
            yield

    async def on_parse(self) -> AsyncIterator[None]:
        # Between its parsing and its validation. (Hooks after the yield run in reverse order:
        # this one, the last extension's, right after the parse, before any `on_validate`. A
        # document kept from before, DocumentCache's, is neither parsed nor validated again:
        # nothing to give way for.)
        context = self.execution_context
        parsing = context.graphql_document is None
        yield
        ctx = context.context
        if parsing and context.graphql_document is not None and self._shared(ctx):
            await ctx.gate.give_way(ctx)

    async def on_execute(self) -> AsyncIterator[None]:
        ctx = self.execution_context.context
        if self._shared(ctx) and ctx.over_websocket:
            async with ctx.gate.share(ctx):
                await ctx.gate.give_way(ctx)
                yield
        elif self._shared(ctx):
            await ctx.gate.give_way(ctx)
            yield
        else:
            yield

    @staticmethod
    def _shared(ctx: Any) -> bool:
        return isinstance(ctx, RequestContext) and ctx.gate is not None and ctx.viewer is not None


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
