"""Error codes, masking of unexpected errors, and per-operation logging and metrics."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError, OperationType, validate
from strawberry.exceptions import StrawberryInputCoercionError
from strawberry.extensions import SchemaExtension
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from observability import GRAPHQL_OPERATIONS
from resolvers.auth import refresh_session
from resolvers.context import RequestContext, begin_operation
from resolvers.errors import ApiError, ErrorCode, is_outage
from schema.engine.cost import operation_of

log = logging.getLogger("crm.graphql")
MASKED_MESSAGE = "Internal server error. Quote the request id when reporting it."
_INVALID_AT = re.compile(r"has invalid value at \.([\w.\[\]]+):")


class ErrorCodes(SchemaExtension):
    """Every error leaves with an `extensions.code`; unexpected ones are logged and masked."""

    def on_operation(self) -> Iterator[None]:
        self._streamed = False
        yield
        execution = self.execution_context
        ctx = execution.context
        result = execution.result
        codes: list[str] = []
        if not self._streamed:
            self._format_result(result, ctx)
        errors = getattr(result, "errors", None)
        if result is not None and errors:
            codes = sorted({(error.extensions or {}).get("code", "") for error in errors})
        try:
            operation_type = execution.operation_type.value
        except RuntimeError:  # the document did not parse
            operation_type = "unknown"
        outcome = "ok" if not codes else ",".join(codes)
        if isinstance(ctx, RequestContext):
            ctx.log_fields.update(
                operation=execution.operation_name,
                operation_type=operation_type,
                outcome=outcome,
            )
        GRAPHQL_OPERATIONS.labels(operation_type, "ok" if not codes else "error").inc()

    def on_stream_result(self, result: Any) -> Iterator[None]:
        """Over websockets each result is sent as it comes (subscription events, and queries
        and mutations too), before on_operation ends: format each on its way out."""
        self._streamed = True
        self._format_result(result, self.execution_context.context)
        yield

    def _format_result(self, result: Any, ctx: object) -> None:
        errors = getattr(result, "errors", None)
        if result is not None and errors:
            result.errors = [self._format(error, ctx) for error in errors]

    def _format(self, error: GraphQLError, ctx: object) -> GraphQLError:
        original = error.original_error
        if isinstance(original, ApiError):
            return error
        if isinstance(original, StrawberryInputCoercionError):
            # An argument Strawberry could not convert before calling the resolver. (Ids are
            # plain ID strings that our resolvers decode, naming the field; this is the rest.)
            extensions: dict[str, Any] = {"code": ErrorCode.BAD_USER_INPUT.value}
            found = _INVALID_AT.search(error.message)
            if found:
                extensions["field"] = found.group(1)
            return GraphQLError(
                error.message,
                error.nodes,
                error.source,
                error.positions,
                error.path,
                None,
                extensions,
            )
        if error.path is None:
            # Raised before execution: syntax, validation, variable coercion, limits.
            code = (
                "GRAPHQL_PARSE_FAILED"
                if isinstance(original, GraphQLSyntaxError)
                or error.message.startswith("Syntax Error")
                else "BAD_USER_INPUT"
                if original is not None or "Variable" in error.message
                else "GRAPHQL_VALIDATION_FAILED"
            )
            extensions = {"code": code, **(error.extensions or {})}
            found = _INVALID_AT.search(error.message)
            if code == "BAD_USER_INPUT" and found and "field" not in extensions:
                extensions["field"] = found.group(1)  # "... has invalid value at .startsAt: ..."
            return GraphQLError(
                error.message, error.nodes, error.source, error.positions, None, None, extensions
            )
        request_id = ctx.request_id if isinstance(ctx, RequestContext) else None
        if is_outage(original):
            log.warning("database unreachable in %s: %s", error.path, original)
            return GraphQLError(
                "The database cannot be reached: retry later.",
                error.nodes,
                error.source,
                error.positions,
                error.path,
                None,
                {"code": ErrorCode.SERVICE_UNAVAILABLE.value, "requestId": request_id},
            )
        log.error(
            "unexpected error in %s (request %s)",
            ".".join(str(part) for part in error.path),
            request_id,
            exc_info=original or error,
        )
        return GraphQLError(
            MASKED_MESSAGE,
            error.nodes,
            error.source,
            error.positions,
            error.path,
            None,
            {"code": ErrorCode.INTERNAL_SERVER_ERROR.value, "requestId": request_id},
        )


class Validation(SchemaExtension):
    """Validation, run here rather than by Strawberry, so that the checks after it (the gate's,
    the cost) can refuse in the same step: Strawberry reads the validation's errors before any
    extension's `on_validate` resumes. Without "Did you mean ...?" suggestions where
    introspection is off: they would let a client rebuild the schema it may not introspect."""

    def __init__(self, *, hide_suggestions: bool) -> None:
        self.hide_suggestions = hide_suggestions

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.pre_execution_errors is None and context.graphql_document is not None:
            rules = (*context.validation_rules, MaybeNullValidationRule, OneOfInputValidationRule)
            context.pre_execution_errors = validate(
                context.schema._schema,  # noqa: SLF001  (graphql-core's schema)
                context.graphql_document,
                rules,
                hide_suggestions=self.hide_suggestions,
            )
        yield


class OperationScope(SchemaExtension):
    """What each operation starts and ends with.

    Before: a fresh record of what it writes (per operation: the operations of one websocket
    share its context), and over websockets a re-read session and empty caches. After, its
    transaction having committed by then: tell the live hub what it wrote (events to read from
    the log, sessions to re-check). Never before the commit."""

    async def on_operation(self) -> AsyncIterator[None]:
        ctx = self.execution_context.context
        writes = begin_operation()
        if isinstance(ctx, RequestContext) and ctx.over_websocket:
            await refresh_session(ctx)
        yield
        organizations = {event.organization_id for event in writes.events}
        # A mutation may have grown the change log without an event (accounts, contacts,
        # activities): its organization's doorbell rings too, for the webhooks' delivery.
        if isinstance(ctx, RequestContext) and ctx.viewer is not None and self._mutation():
            organizations.add(ctx.viewer.organization_id)
        wrote = organizations or writes.sessions_revoked
        if wrote and isinstance(ctx, RequestContext) and ctx.hub is not None:
            ctx.hub.announce(organizations=organizations, sessions=writes.sessions_revoked)

    def _mutation(self) -> bool:
        document = self.execution_context.graphql_document
        name = self.execution_context.operation_name
        operation = operation_of(document, name) if document is not None else None
        return operation is not None and operation.operation == OperationType.MUTATION
