"""The cost of an operation, computed from the query before it runs.

Every field costs one per time it will be resolved: a list field multiplies what is selected
under it by its page size (`first`/`last`, else the default page size, on connections), and by
LIST_ESTIMATE for the other lists (participants, followers, line items...). An operation over
the budget is refused before anything runs; every answer reports its cost in `extensions.cost`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from graphql import (
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
)
from strawberry.extensions import SchemaExtension

from config import settings
from resolvers.errors import ErrorCode

LIST_ESTIMATE = 10  # members of a list without a page size (participants, followers, months...)


class _Counter:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, Any],
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables

    def _size(self, node: FieldNode, default: int | None) -> int | None:
        for argument in node.arguments or ():
            if argument.name.value in ("first", "last"):
                value = argument.value
                if isinstance(value, IntValueNode):
                    return int(value.value)
                if isinstance(value, VariableNode):
                    given = self.variables.get(value.name.value)
                    if isinstance(given, int):
                        return given
        return default

    def cost(self, parent: Any, selections: SelectionSetNode, times: int, page: int | None) -> int:
        total = 0
        for selection in selections.selections:
            if isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.schema.get_type(condition.name.value) if condition else parent
                total += self.cost(target, selection.selection_set, times, page)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None:
                    target = self.schema.get_type(fragment.type_condition.name.value)
                    total += self.cost(target, fragment.selection_set, times, page)
            elif isinstance(selection, FieldNode):
                total += self._field(parent, selection, times, page)
        return total

    def _field(self, parent: Any, node: FieldNode, times: int, page: int | None) -> int:
        fields = getattr(parent, "fields", {})
        definition = fields.get(node.name.value)
        if definition is None or node.selection_set is None:
            return times  # a scalar, __typename, or a field of a type we cannot see
        field_type = definition.type
        if isinstance(field_type, GraphQLNonNull):
            field_type = field_type.of_type
        inner = times
        if isinstance(field_type, GraphQLList):
            inner = times * (page if page is not None else LIST_ESTIMATE)
        paged = "first" in definition.args
        size = self._size(node, settings.default_page_size) if paged else None
        named = get_named_type(field_type)
        if not isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
            named = None  # a union: its members come through fragments
        return times + self.cost(named, node.selection_set, inner, size)


def operation_cost(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any] | None,
) -> int:
    root = schema.get_root_type(operation.operation)
    return _Counter(schema, fragments, variables or {}).cost(root, operation.selection_set, 1, None)


class QueryCost(SchemaExtension):
    """Refuse an operation whose cost is over the budget; report the cost of every one."""

    cost: int | None = None

    async def on_execute(self) -> AsyncIterator[None]:
        context = self.execution_context
        document = context.graphql_document
        operation = operation_of(document, context.operation_name) if document else None
        if document is not None and operation is not None:
            fragments = {
                d.name.value: d
                for d in document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }
            schema = context.schema._schema  # noqa: SLF001  (graphql-core's schema)
            self.cost = operation_cost(schema, operation, fragments, context.variables)
            if self.cost > settings.max_query_cost:
                error = GraphQLError(
                    f"This operation would cost {self.cost}, over the limit of "
                    f"{settings.max_query_cost}: ask for smaller pages or fewer fields.",
                    extensions={
                        "code": ErrorCode.QUERY_TOO_COSTLY.value,
                        "cost": self.cost,
                        "limit": settings.max_query_cost,
                    },
                )
                context.result = ExecutionResult(data=None, errors=[error])
        yield

    def get_results(self) -> dict[str, Any]:
        if self.cost is None:
            return {}
        return {"cost": {"requested": self.cost, "limit": settings.max_query_cost}}


def operation_of(document: Any, name: str | None) -> OperationDefinitionNode | None:
    """The operation of a document that will run (the named one, else the only one)."""
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and (
            name is None or (definition.name is not None and definition.name.value == name)
        ):
            return definition
    return None
