"""Error codes, masking of unexpected errors, and per-operation logging and metrics."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.exceptions import StrawberryInputCoercionError
from strawberry.extensions import SchemaExtension

from observability import GRAPHQL_OPERATIONS
from resolvers.context import RequestContext
from resolvers.errors import ApiError, ErrorCode

log = logging.getLogger("crm.graphql")
MASKED_MESSAGE = "Internal server error. Quote the request id when reporting it."


class ErrorCodes(SchemaExtension):
    """Every error leaves with an `extensions.code`; unexpected ones are logged and masked."""

    def on_operation(self) -> Iterator[None]:
        yield
        execution = self.execution_context
        ctx = execution.context
        result = execution.result
        codes: list[str] = []
        errors = getattr(result, "errors", None)
        if result is not None and errors:
            result.errors = [self._format(error, ctx) for error in errors]
            codes = sorted({(error.extensions or {})["code"] for error in result.errors})
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

    def _format(self, error: GraphQLError, ctx: object) -> GraphQLError:
        original = error.original_error
        if isinstance(original, ApiError):
            return error
        if isinstance(original, StrawberryInputCoercionError):
            # An argument Strawberry could not convert before calling the resolver. (Ids are
            # plain ID strings that our resolvers decode, naming the field; this is the rest.)
            return GraphQLError(
                error.message,
                error.nodes,
                error.source,
                error.positions,
                error.path,
                None,
                {"code": ErrorCode.BAD_USER_INPUT.value},
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
            return GraphQLError(
                error.message, error.nodes, error.source, error.positions, None, None, extensions
            )
        request_id = ctx.request_id if isinstance(ctx, RequestContext) else None
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
