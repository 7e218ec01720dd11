"""The cost of an operation, computed from the query before it runs.

Every field costs one per time it will be resolved: a list field multiplies what is selected
under it by its page size (`first`/`last`, else the default page size, on connections), and by
LIST_ESTIMATE for the other lists (participants, followers, line items...). An operation over
the budget is refused before anything runs; every answer reports its cost in `extensions.cost`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import (
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
    OperationType,
    SelectionSetNode,
    VariableNode,
    get_named_type,
)
from strawberry.extensions import SchemaExtension

from config import Settings
from resolvers.errors import ErrorCode

LIST_ESTIMATE = 10


def fragments_of(document: Any) -> dict[str, FragmentDefinitionNode]:
    """A document's fragment definitions, by name."""
    return {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }  # members of a list without a page size (participants, followers, months...)


class _Counter:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, Any],
        defaults: dict[str, Any],
        settings: Settings,
    ) -> None:
        self.schema = schema
        self.settings = settings
        self.fragments = fragments
        self.variables = variables
        self.defaults = defaults
        # A fragment's cost per time it is resolved: the cost is linear in `times`.
        self.units: dict[tuple[str, str, int | None], int] = {}

    def _size(self, node: FieldNode) -> int:
        """The page a connection field asks for: its first/last, else the default page; a
        negative or unknown one counts as the largest page (the field fails anyway)."""
        for argument in node.arguments or ():
            if argument.name.value not in ("first", "last"):
                continue
            value = argument.value
            size: Any = None
            if isinstance(value, IntValueNode):
                size = int(value.value)
            elif isinstance(value, VariableNode):
                name = value.name.value
                size = self.variables.get(name, self.defaults.get(name))
            if isinstance(size, int) and size >= 0:
                return size
            return self.settings.api_key_max_page_size
        return self.settings.default_page_size

    def cost(self, parent: Any, selections: SelectionSetNode, times: int, page: int | None) -> int:
        total = 0
        for selection in selections.selections:
            if isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.schema.get_type(condition.name.value) if condition else parent
                total += self.cost(target, selection.selection_set, times, page)
            elif isinstance(selection, FragmentSpreadNode):
                total += times * self._fragment_unit(selection.name.value, page)
            elif isinstance(selection, FieldNode):
                total += self._field(parent, selection, times, page)
        return total

    def _fragment_unit(self, name: str, page: int | None) -> int:
        fragment = self.fragments.get(name)
        if fragment is None:
            return 0
        key = (name, fragment.type_condition.name.value, page)
        if key not in self.units:
            self.units[key] = 0  # a cycle (refused by validation) counts nothing
            target = self.schema.get_type(fragment.type_condition.name.value)
            self.units[key] = self.cost(target, fragment.selection_set, 1, page)
        return self.units[key]

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
        size = self._size(node) if "first" in definition.args else None
        named = get_named_type(field_type)
        if not isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
            named = None  # a union: its members come through fragments
        return times + self.cost(named, node.selection_set, inner, size)


def _defaults(operation: OperationDefinitionNode) -> dict[str, Any]:
    return {
        definition.variable.name.value: int(definition.default_value.value)
        for definition in operation.variable_definitions or ()
        if isinstance(definition.default_value, IntValueNode)
    }


def operation_cost(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any] | None,
    settings: Settings,
) -> int:
    """What the operation costs; its page sizes default as `settings` say."""
    root = schema.get_root_type(operation.operation)
    counter = _Counter(schema, fragments, variables or {}, _defaults(operation), settings)
    return counter.cost(root, operation.selection_set, 1, None)


class QueryCost(SchemaExtension):
    """Refuse an operation whose cost is over the budget (MAX_QUERY_COST, or for a subscription,
    whose selection runs once per event, MAX_SUBSCRIPTION_COST); report the cost of every one.

    Checked in the validation step, after validation (schema.extensions.Validation): a refusal
    there is honoured on every path, subscriptions included (one set in `on_execute` is not, on
    Strawberry's subscription path). The limits are those of the settings the schema was built
    with (`schema.build_schema`)."""

    cost: int | None = None
    limit: int = 0

    def __init__(self, *, settings: Settings) -> None:
        self.settings = settings

    def on_validate(self) -> Iterator[None]:
        self._check()
        yield

    def _check(self) -> None:
        context = self.execution_context
        document = context.graphql_document
        if context.pre_execution_errors or document is None:
            return
        operation = operation_of(document, context.operation_name)
        if operation is None:
            return
        settings = self.settings
        self.limit = (
            settings.max_subscription_cost
            if operation.operation is OperationType.SUBSCRIPTION
            else settings.max_query_cost
        )
        schema = context.schema._schema  # noqa: SLF001  (graphql-core's schema)
        fragments = fragments_of(document)
        self.cost = operation_cost(schema, operation, fragments, context.variables, settings)
        if self.cost > self.limit:
            what = (
                "subscription" if operation.operation is OperationType.SUBSCRIPTION else "operation"
            )
            context.pre_execution_errors = [
                GraphQLError(
                    f"This {what} would cost {self.cost}, over the limit of {self.limit}: "
                    "ask for smaller pages or fewer fields.",
                    extensions={
                        "code": ErrorCode.QUERY_TOO_COSTLY.value,
                        "cost": self.cost,
                        "limit": self.limit,
                    },
                )
            ]

    def get_results(self) -> dict[str, Any]:
        if self.cost is None:
            return {}
        return {"cost": {"requested": self.cost, "limit": self.limit}}


def operation_of(document: Any, name: str | None) -> OperationDefinitionNode | None:
    """The operation of a document that will run (the named one, else the only one)."""
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and (
            name is None or (definition.name is not None and definition.name.value == name)
        ):
            return definition
    return None


MAX_EXPANDED_FIELDS = 10_000


def expanded_fields(document: Any) -> int:
    """How many fields a document selects once its fragments are spread: the largest of its
    operations. Linear in the document's size (each fragment is counted once)."""
    fragments = fragments_of(document)
    counted: dict[str, int] = {}

    def count(selections: SelectionSetNode | None) -> int:
        total = 0
        for selection in selections.selections if selections else ():
            if isinstance(selection, FieldNode):
                total += 1 + count(selection.selection_set)
            elif isinstance(selection, InlineFragmentNode):
                total += count(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name not in counted and name in fragments:
                    counted[name] = 0  # a cycle (refused by validation) counts nothing
                    counted[name] = count(fragments[name].selection_set)
                total += counted.get(name, 0)
        return total

    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    return max((count(operation.selection_set) for operation in operations), default=0)


class FragmentBudget(SchemaExtension):
    """Refuse, before validation walks it, a document whose fragments expand beyond
    MAX_EXPANDED_FIELDS fields (a few hundred bytes of nested spreads can mean millions)."""

    def on_validate(self) -> Iterator[None]:
        document = self.execution_context.graphql_document
        if document is not None and expanded_fields(document) > MAX_EXPANDED_FIELDS:
            self.execution_context.pre_execution_errors = [
                GraphQLError(
                    f"This document selects more than {MAX_EXPANDED_FIELDS} fields once its "
                    "fragments are spread.",
                    extensions={"code": "GRAPHQL_VALIDATION_FAILED"},
                )
            ]
        yield
