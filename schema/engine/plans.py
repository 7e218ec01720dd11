"""Operation plans: a query resolved breadth-first, each field once for all its parents.

graphql-core resolves a query field by field and item by item: for each of the ~2,500 fields of
a pipeline page it builds an info object, calls a resolver, checks and serializes the result, and
for a relation awaits a DataLoader. That was most of a page's time (README, Performance). A plan,
compiled once per document, resolves each field once for all the objects of its level:

- a plain attribute is read off each object, and serialized by its scalar or enum;
- `id` of a Node is the global id, as relay.Node computes it;
- a resolver that takes only `self` (`fullName`, `totalCount`) is called on each object;
- a relation declared with `batched(load)` calls `load` once for the whole level. Its per-item
  resolver is `one(load, ...)`, a batch of one, so both paths share one implementation: the same
  DataLoaders, organization scoping and read rules;
- root fields are called exactly as graphql-core calls them (arguments, info, resolver).

An operation with anything else (a nested field with arguments, an abstract type below the root,
a directive, or a mutation) has no plan and runs on graphql-core. A planned run that meets
anything unexpected (an error from a resolver, a null in a non-null field, a value not of its
field's type) is dropped and the operation runs again on graphql-core, which produces the answer
and the errors it always did: a plan never changes a response, it only makes a successful query
cheaper.

A subscription's events run on its plan too, the event as the root field's value; when no field
of the selection depends on the viewer, its subscribers share one run per event
(`PlannedExecutor`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from inspect import isawaitable
from operator import attrgetter
from typing import Any
from weakref import WeakKeyDictionary

from graphql import (
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLString,
    InlineFragmentNode,
    NamedTypeNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    is_abstract_type,
    is_leaf_type,
)
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path, Undefined, gather_with_cancel, is_iterable
from strawberry import relay
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.field import StrawberryField
from strawberry.types.fields.resolver import StrawberryResolver

from observability import OPERATION_PLANS
from resolvers.context import RequestContext
from schema.engine.documents import Lru, per_schema
from schema.engine.projections import (
    SQL,
    Join,
    Projection,
    Projector,
    Statement,
    plain_field,
    relay_id,
    table_of,
)

log = logging.getLogger("crm.plans")

BATCH = "crm.batch"  # the metadata key of a batched field's batch function
SAME_FOR_ALL = "crm.same_for_all"  # ... and whether its values are the same for every viewer
EVENTS_REMEMBERED = 256  # per subscription plan: the results of its latest events
# ... shared for this long after the first subscriber computed one: the subscribers an event is
# dispatched to take it within milliseconds, while a replay or a lagging queue, later, computes
# afresh and sees the rows as they are then.
SHARED_FOR_SECONDS = 1.0
PLANS_PER_SCHEMA = 256  # compiled plans kept, least recently used dropped

Batch = Callable[[list[Any], RequestContext], Coroutine[Any, Any, list[Any]]]


def batched(
    load: Batch, *, same_for_all: bool = False, sql: Join | str | None = None
) -> dict[str, Any]:
    """Field metadata: `load(parents, ctx)` resolves the field for many parents, in their order.
    `same_for_all`: its values do not depend on who reads them (in the parents' organization),
    so that a live event's result can be shared by all its subscribers. `sql`: the same
    relation (or value) in SQL, for PostgreSQL to build as JSON (schema/engine/projections.py).

    The field's own resolver is then `return await one(load, self, info)`."""
    return {BATCH: load, SAME_FOR_ALL: same_for_all, SQL: sql}


async def one(load: Batch, parent: Any, info: Any) -> Any:
    """A batched field resolved for one parent (graphql-core's path): its batch of one.
    DataLoaders still gather the parents of a tick into one statement."""
    return (await load([parent], info.context))[0]


async def related(
    loader: Any, ids: Sequence[int | None], convert: Callable[[Any], Any]
) -> list[Any]:
    """The record of each id through a DataLoader, converted (None for a None id or a record
    the loader does not find), in the order of `ids`."""
    wanted = list(dict.fromkeys(key for key in ids if key is not None))  # each id once
    found = dict(zip(wanted, await loader.load_many(wanted), strict=True))
    return [None if (row := found.get(key)) is None else convert(row) for key in ids]  # type: ignore[arg-type]


class NoPlan(Exception):
    """This operation, or this run of it, is for graphql-core."""


# Shapes: how values of one output type are completed into JSON values, a whole list at a time.


@dataclass(frozen=True, slots=True)
class Leaf:
    serialize: Callable[[Any], Any]
    nullable: bool

    def complete(self, values: Sequence[Any]) -> list[Any]:
        serialize, completed = self.serialize, list[Any]()
        for value in values:
            if value is None:
                if not self.nullable:
                    raise NoPlan("null in a non-null field")
                completed.append(None)
                continue
            serialized = serialize(value)
            if serialized is None or serialized is Undefined:
                raise NoPlan("a value its scalar does not serialize")
            completed.append(serialized)
        return completed


@dataclass(frozen=True, slots=True)
class ListOf:
    item: Shape
    nullable: bool


@dataclass(frozen=True, slots=True)
class Objects:
    selection: Selection
    nullable: bool


Shape = Leaf | ListOf | Objects


async def complete(shape: Shape, values: Sequence[Any], ctx: RequestContext) -> list[Any]:
    """The JSON values of `values` (one per parent), in order."""
    if isinstance(shape, Leaf):
        return shape.complete(values)
    present = [value for value in values if value is not None]
    done: Iterator[Any]
    if len(present) != len(values) and not shape.nullable:
        raise NoPlan("null in a non-null field")
    if isinstance(shape, ListOf):
        lists = [_as_list(value) for value in present]
        flat = [item for value in lists for item in value]
        items = iter(await complete(shape.item, flat, ctx))
        done = iter([[next(items) for _ in value] for value in lists])
    else:
        done = iter(await shape.selection.resolve(present, ctx))
    return [None if value is None else next(done) for value in values]


def _as_list(value: Any) -> list[Any]:
    """A list field's value, read once (graphql-core takes any iterable but a string or a
    mapping, and reports the rest as an error: for those, no plan)."""
    if not is_iterable(value):  # graphql-core's own test
        raise NoPlan("a list field's value is not a list")
    return list(value)


# Fields and selections


@dataclass(frozen=True, slots=True)
class Field:
    key: str  # the response key: the alias, else the name
    read: Callable[[list[Any]], list[Any]] | None  # synchronous: attributes, ids, self resolvers
    load: Batch | None  # asynchronous: a batch function, or an async resolver of self
    shape: Shape
    projection: Projection | None = None  # the batch as SQL, on PostgreSQL


@dataclass(frozen=True, slots=True)
class Selection:
    """The fields selected on one object type, in response order."""

    fields: tuple[Field, ...]
    is_type_of: Callable[[Any, Any], Any] | None  # the type's check of its values, if any
    statement: Statement | None = None  # its fields' projections, in one statement

    async def resolve(self, parents: list[Any], ctx: RequestContext) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = [{} for _ in parents]
        if not parents:
            return results
        check = self.is_type_of
        if check is not None and any(check(parent, None) is not True for parent in parents):
            raise NoPlan("a value that is not of its field's type")
        statement = self.statement if self.statement and self.statement.applies() else None
        projected = statement.keys if statement else ()
        # Every relation of the level at once: their DataLoaders dispatch in the same tick. The
        # first to fail stops the others from going on (the operation then runs on graphql-core;
        # a statement already sent finishes, and its rows serve graphql-core's run).
        loading = [
            (field.key, field.load)
            for field in self.fields
            if field.load is not None and field.key not in projected
        ]
        runs = [load(parents, ctx) for _, load in loading]
        if statement is not None:
            runs.append(statement.run(parents, ctx))
        found = await gather_with_cancel(*runs)
        loaded = {
            key: value for (key, _), value in zip(loading, found[: len(loading)], strict=True)
        }
        done = dict(zip(projected, found[-1], strict=True)) if statement else {}
        for field in self.fields:
            if field.key in done:  # JSON values already, checked against the field's type
                for result, value in zip(results, done[field.key], strict=True):
                    result[field.key] = value
                continue
            values = loaded[field.key] if field.read is None else field.read(parents)
            for result, value in zip(
                results, await complete(field.shape, values, ctx), strict=True
            ):
                result[field.key] = value
        return results


def _self_calls(resolver: StrawberryResolver[Any]) -> Any:
    """(read, load) of a resolver that takes only `self`."""
    function: Callable[[Any], Any] = resolver.wrapped_func  # type: ignore[assignment]
    if not resolver.is_async:
        return (lambda parents: [function(parent) for parent in parents]), None

    async def load(parents: list[Any], _: RequestContext) -> list[Any]:
        return list(await asyncio.gather(*(function(parent) for parent in parents)))

    return None, load


def _global_ids(type_name: str, id_attr: str) -> Callable[[list[Any]], list[Any]]:
    """relay.Node's ids, as the strings their GlobalID serializes to."""
    read_id = attrgetter(id_attr)
    return lambda parents: [relay.to_base64(type_name, read_id(p)) for p in parents]


def _takes_only_self(resolver: StrawberryResolver[Any]) -> bool:
    return not resolver.arguments and all(
        parameter is None
        for spec, parameter in resolver.reserved_parameters.items()
        if getattr(spec, "name", None) not in ("self", "cls")
    )


class Compiler:
    """Plans for the operations of one schema."""

    def __init__(self, schema: GraphQLSchema, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self.schema = schema
        self.fragments = fragments
        self.same_for_all = True  # until a field whose values depend on the viewer
        self.projector = Projector(self.collect)

    def collect(
        self, parent: GraphQLObjectType, selection_sets: Sequence[SelectionSetNode]
    ) -> dict[str, list[FieldNode]]:
        """The spec's CollectFields (without directives, which have no plan): field nodes by
        response key, fragments applied when their type condition holds for `parent`."""
        fields: dict[str, list[FieldNode]] = {}
        visited: set[str] = set()

        def applies(condition: NamedTypeNode | None) -> bool:
            if condition is None:
                return True
            target = self.schema.get_type(condition.name.value)
            return target is parent or (
                is_abstract_type(target) and self.schema.is_sub_type(target, parent)  # type: ignore[arg-type]
            )

        def walk(selection_set: SelectionSetNode) -> None:
            for selection in selection_set.selections:
                if selection.directives:
                    raise NoPlan("directives")
                if isinstance(selection, FieldNode):
                    key = (selection.alias or selection.name).value
                    fields.setdefault(key, []).append(selection)
                elif isinstance(selection, InlineFragmentNode):
                    if applies(selection.type_condition):
                        walk(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    fragment = self.fragments.get(name)
                    if fragment is None or fragment.directives:
                        raise NoPlan("an unknown fragment, or directives")
                    if name not in visited and applies(fragment.type_condition):
                        visited.add(name)
                        walk(fragment.selection_set)

        for selection_set in selection_sets:
            walk(selection_set)
        return fields

    def selection(
        self, parent: GraphQLObjectType, selection_sets: Sequence[SelectionSetNode]
    ) -> Selection:
        collected = self.collect(parent, selection_sets)
        fields = tuple(self.field(parent, key, nodes) for key, nodes in collected.items())
        projected = {field.key: field.projection for field in fields if field.projection}
        on = table_of(parent)
        statement = Statement.of(on, projected) if projected and on and on.by_id else None
        return Selection(fields, parent.is_type_of, statement)

    def field(self, parent: GraphQLObjectType, key: str, nodes: list[FieldNode]) -> Field:
        name = nodes[0].name.value
        if name == "__typename":
            typename = parent.name
            string = Leaf(GraphQLString.serialize, nullable=False)
            return Field(key, lambda parents: [typename] * len(parents), None, string)
        found = plain_field(parent, nodes)
        if found is None:
            raise NoPlan(f"{parent.name}.{name} takes arguments, or has extensions")
        definition, field = found
        read, load = self.reader(parent, field)
        sub = [node.selection_set for node in nodes if node.selection_set is not None]
        shape = self.shape(definition.type, sub)
        metadata: Mapping[str, Any] = field.metadata or {}
        projection = None
        if load is not None and metadata.get(BATCH) is load:
            try:
                projection = self.projector.field(parent, field, definition.type, sub)
            except Exception:  # a declaration the projector cannot follow: the batch function
                log.exception("no projection for %s.%s", parent.name, field.python_name)
        return Field(key, read, load, shape, projection)

    def reader(self, parent: GraphQLObjectType, field: StrawberryField) -> Any:
        """(read, load): how the field's values come, synchronously or in one batch."""
        metadata: Mapping[str, Any] = field.metadata or {}
        batch = metadata.get(BATCH)
        if batch is not None:
            self.same_for_all &= bool(metadata.get(SAME_FOR_ALL))
            return None, batch
        resolver = field.base_resolver
        if resolver is None:
            return _attributes(field.python_name), None
        id_attr = relay_id(parent, field)
        if id_attr is not None:
            return _global_ids(parent.name, id_attr), None
        if _takes_only_self(resolver):  # (a Node resolving its own ids takes `info`: no plan)
            return _self_calls(resolver)
        raise NoPlan(f"{parent.name}.{field.python_name} has a resolver")

    def shape(self, type_: GraphQLOutputType, selection_sets: list[SelectionSetNode]) -> Shape:
        nullable = not isinstance(type_, GraphQLNonNull)
        inner = type_ if nullable else type_.of_type  # type: ignore[union-attr]
        if isinstance(inner, GraphQLList):
            return ListOf(self.shape(inner.of_type, selection_sets), nullable)
        if is_leaf_type(inner):
            return Leaf(inner.serialize, nullable)  # type: ignore[union-attr]
        if isinstance(inner, GraphQLObjectType):
            return Objects(self.selection(inner, selection_sets), nullable)
        raise NoPlan(f"{inner} is an abstract type")


def _attributes(name: str) -> Callable[[list[Any]], list[Any]]:
    read = attrgetter(name)
    return lambda parents: list(map(read, parents))


@dataclass(frozen=True, slots=True)
class RootField:
    key: str
    nodes: list[FieldNode]
    shape: Shape


@dataclass(frozen=True, slots=True)
class Plan:
    root_type: GraphQLObjectType
    root_fields: tuple[RootField, ...]
    same_for_all: bool  # its result depends on the root value only, not on the viewer
    # Subscriptions: the result of each recent event (by its type and id), computed once for
    # all the subscribers running this plan, and when.
    events: Lru[tuple[type, Any], tuple[float, asyncio.Future[dict[str, Any]]]] = dataclasses.field(
        default_factory=lambda: Lru(EVENTS_REMEMBERED), compare=False
    )

    async def run(self, executor: StrawberryGraphQLCoreExecutionContext) -> dict[str, Any]:
        root_type = self.root_type
        data: dict[str, Any] = {}
        for root in self.root_fields:
            field_def = root_type.fields[root.nodes[0].name.value]
            resolve = field_def.resolve or executor.field_resolver
            info = executor.build_resolve_info(
                field_def, root.nodes, root_type, Path(None, root.key, root_type.name)
            )
            arguments = get_argument_values(field_def, root.nodes[0], executor.variable_values)
            value = resolve(executor.root_value, info, **arguments)
            if isawaitable(value):
                value = await value
            (data[root.key],) = await complete(root.shape, [value], executor.context_value)
        return data


def compile_plan(
    schema: GraphQLSchema, operation: OperationDefinitionNode, fragments: dict[str, Any]
) -> Plan:
    root_type = PLANNED.get(operation.operation, lambda _: None)(schema)
    if root_type is None or operation.directives:
        raise NoPlan("a mutation, or directives")
    compiler = Compiler(schema, fragments)
    roots = []
    for key, nodes in compiler.collect(root_type, [operation.selection_set]).items():
        name = nodes[0].name.value
        definition = root_type.fields.get(name)
        if name.startswith("__") or definition is None:
            raise NoPlan("introspection")
        sub = [node.selection_set for node in nodes if node.selection_set is not None]
        roots.append(RootField(key, nodes, compiler.shape(definition.type, sub)))
    return Plan(root_type, tuple(roots), compiler.same_for_all)


# Mutations run on graphql-core: serially, and not worth a plan.
PLANNED: dict[OperationType, Callable[[GraphQLSchema], GraphQLObjectType | None]] = {
    OperationType.QUERY: lambda schema: schema.query_type,
    OperationType.SUBSCRIPTION: lambda schema: schema.subscription_type,
}


_plans: WeakKeyDictionary[GraphQLSchema, Lru[tuple[str, str | None], Plan | None]] = (
    WeakKeyDictionary()
)


def plan_for(executor: StrawberryGraphQLCoreExecutionContext) -> Plan | None:
    """The operation's plan (compiled on first use), or None when it has none."""
    operation = executor.operation
    if operation.operation not in PLANNED or operation.loc is None:
        return None
    if executor.middleware_manager is not None and executor.middleware_manager.middlewares:
        return None  # per-field middleware must see every field
    cache = per_schema(_plans, executor.schema, PLANS_PER_SCHEMA)
    key = (operation.loc.source.body, operation.name.value if operation.name else None)
    if key in cache:
        return cache.get(key)
    try:
        plan: Plan | None = compile_plan(executor.schema, operation, executor.fragment_definitions)
    except NoPlan as reason:
        log.debug("no plan for %s: %s", key[1], reason)
        plan = None
    cache.put(key, plan)
    return plan


class PlannedExecutor(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's executor, running a query, or a subscription's event, on its plan when it
    has one.

    A live event goes to every subscriber of its organization whose feed wants it and who may
    read it (subscriptions/hub.py). When the subscription's plan gives the same result to every
    viewer, the first subscriber to run it computes the result and the others take it, so an
    event costs one execution per distinct subscription document, not one per websocket.
    """

    def execute_operation(self, serially: bool | None = None) -> Any:
        plan = plan_for(self)
        if plan is None:
            OPERATION_PLANS.labels("unplanned").inc()
            return super().execute_operation(serially)
        if (
            self.operation.operation is OperationType.SUBSCRIPTION
            and plan.same_for_all
            and getattr(self.root_value, "shareable", True)  # an event may say it is not
        ):
            return self._run(plan, serially, shared=True)
        return self._run(plan, serially)

    async def _run(self, plan: Plan, serially: bool | None, *, shared: bool = False) -> Any:
        path = "planned"
        try:
            if shared:
                data, path = await self._shared(plan)
            else:
                data = await plan.run(self)
        except Exception as reason:  # any surprise: graphql-core answers, errors and all
            log.debug("planned run dropped: %r", reason)
            OPERATION_PLANS.labels("fallback").inc()
            result = super().execute_operation(serially)
            return await result if isawaitable(result) else result
        OPERATION_PLANS.labels(path).inc()
        return ExecutionResult(data=data)

    async def _shared(self, plan: Plan) -> tuple[dict[str, Any], str]:
        """The event's result, computed by the first of its subscribers to ask ("planned"),
        taken by the others ("shared"). Shielded: a subscriber that leaves meanwhile does not
        cancel the others' result."""
        payload = self.root_value
        key = (type(payload), getattr(payload, "id", None))
        if key[1] is None:
            return await plan.run(self), "planned"
        now = asyncio.get_running_loop().time()
        known = plan.events.get(key)
        if known is not None and (not known[1].done() or now - known[0] <= SHARED_FOR_SECONDS):
            result, path = known[1], "shared"  # still running, or done within the second
        else:
            result, path = asyncio.ensure_future(plan.run(self)), "planned"
            plan.events.put(key, (now, result))
        try:
            return await asyncio.shield(result), path
        except Exception:
            if (entry := plan.events.get(key)) is not None and entry[1] is result:
                plan.events.discard(key)  # each subscriber then falls back on its own
            raise
