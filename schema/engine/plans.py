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
a directive, or a mutation) has no plan and runs on graphql-core. An error raised by a resolver
(a root field's, a batch function, a statement: a bad argument, a permission, a statement
timeout) is the answer's, as graphql-core gives it: located at each field it failed, its null
carried up to the nearest nullable position, the rest of the answer kept; it is never run
again. A planned run falls back on graphql-core only where the plan cannot complete a value
(a null in a non-null field, a value not of its field's type or its scalar, a projection's row
gone): the fallback is counted in /metrics with its reason, and logged at WARNING. A plan never
changes a response, it only makes a query cheaper; under test, `plans_compare` runs every
planned operation on graphql-core as well and records each difference (`MISMATCHES`).

A subscription's events run on its plan too, the event as the root field's value; when no field
of the selection depends on the viewer, its subscribers share one run per event
(`PlannedExecutor`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import json
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
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
    GraphQLError,
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
    located_error,
)
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path, Undefined, is_iterable
from strawberry import relay
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.field import StrawberryField
from strawberry.types.fields.resolver import StrawberryResolver

from observability import OPERATION_PLANS
from resolvers.context import RequestContext
from schema.engine.documents import Lru, per_schema
from schema.engine.projections import (
    BATCHED,
    COVERED,
    SQL,
    Join,
    Projection,
    Projector,
    Statement,
    Unlike,
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
    """This operation, or this run of it, is for graphql-core. `reason` is one of a few words
    (the label of the /metrics counter), `detail` says more in the log."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Failed:
    """A field's value for one parent, where its resolver raised `error`."""

    error: Exception


@dataclass(frozen=True, slots=True)
class Nulled:
    """A non-null value nulled by `error` below it, on its way up to the nearest nullable
    position (GraphQL's null propagation)."""

    error: GraphQLError


Path_ = tuple[str | int, ...]  # a response path: keys and list indexes


class Run:
    """One planned run: the request's context, and its errors as graphql-core collects them:
    each where it nulled a value, none below a position already nulled."""

    def __init__(self, ctx: RequestContext) -> None:
        self.ctx = ctx
        self.errors: list[GraphQLError] = []
        self.nulled: set[Path_] = set()

    def land(self, error: GraphQLError, at: Path_) -> None:
        if any(at[:end] in self.nulled for end in range(len(at) + 1)):
            return
        self.nulled.add(at)
        self.errors.append(error)


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
                    raise NoPlan("null", "a null in a non-null field")
                completed.append(None)
                continue
            try:
                serialized = serialize(value)
            except Exception as error:  # graphql-core's answer: a field error of its own
                raise NoPlan("scalar", f"a value its scalar does not serialize: {error}") from None
            if serialized is None or serialized is Undefined:
                raise NoPlan("scalar", "a value its scalar does not serialize")
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


async def complete(
    shape: Shape, values: Sequence[Any], run: Run, paths: Sequence[Path_]
) -> list[Any]:
    """The JSON values of `values` (one per parent, at `paths`), in order. A value nulled by an
    error below it is None where the shape is nullable (the error lands there), else Nulled."""
    if isinstance(shape, Leaf):
        return shape.complete(values)
    present = [
        (value, path) for value, path in zip(values, paths, strict=True) if value is not None
    ]
    if len(present) != len(values) and not shape.nullable:
        raise NoPlan("null", "a null in a non-null field")
    done: list[Any]
    if isinstance(shape, ListOf):
        lists = [_as_list(value) for value, _ in present]
        flat = [item for value in lists for item in value]
        flat_paths = [
            (*path, i)
            for value, (_, path) in zip(lists, present, strict=True)
            for i in range(len(value))
        ]
        items = iter(await complete(shape.item, flat, run, flat_paths))
        done = []
        for value in lists:
            completed = [next(items) for _ in value]
            failed = next((item for item in completed if isinstance(item, Nulled)), None)
            done.append(completed if failed is None else failed)  # a null item nulls its list
    else:
        done = await shape.selection.resolve([v for v, _ in present], run, [p for _, p in present])
    if shape.nullable:
        for (_, path), value in zip(present, done, strict=True):
            if isinstance(value, Nulled):
                run.land(value.error, path)
        done = [None if isinstance(value, Nulled) else value for value in done]
    found = iter(done)
    return [None if value is None else next(found) for value in values]


def _as_list(value: Any) -> list[Any]:
    """A list field's value, read once (graphql-core takes any iterable but a string or a
    mapping, and reports the rest as an error: for those, no plan)."""
    if not is_iterable(value):  # graphql-core's own test
        raise NoPlan("list", "a list field's value is not a list")
    return list(value)


# Fields and selections


@dataclass(frozen=True, slots=True)
class Field:
    key: str  # the response key: the alias, else the name
    read: Callable[[list[Any]], list[Any]] | None  # synchronous: attributes, ids, self resolvers
    load: Batch | None  # asynchronous: a batch function, or an async resolver of self
    shape: Shape
    projection: Projection | None = None  # the batch as SQL, on PostgreSQL
    nodes: tuple[FieldNode, ...] = ()  # where its errors are located
    declared: str | None = None  # "Type.field" when the field is declared in SQL

    def values(self, parents: list[Any]) -> list[Any]:
        """A synchronous field's values; Failed for a parent whose resolver raised."""
        assert self.read is not None
        try:
            return self.read(parents)
        except Exception:  # which parent: one at a time
            values = []
            for parent in parents:
                try:
                    values.append(self.read([parent])[0])
                except Exception as error:
                    values.append(Failed(error))
            return values


@dataclass(frozen=True, slots=True)
class Selection:
    """The fields selected on one object type, in response order."""

    fields: tuple[Field, ...]
    is_type_of: Callable[[Any, Any], Any] | None  # the type's check of its values, if any
    statement: Statement | None = None  # its fields' projections, in one statement

    async def resolve(
        self, parents: list[Any], run: Run, paths: Sequence[Path_]
    ) -> list[dict[str, Any] | Nulled]:
        """Each parent's selection, in order; Nulled for a parent a non-null field's error
        nulled."""
        results: list[dict[str, Any]] = [{} for _ in parents]
        if not parents:
            return list(results)
        check = self.is_type_of
        if check is not None and any(check(parent, None) is not True for parent in parents):
            raise NoPlan("type", "a value that is not of its field's type")
        statement = self.statement if self.statement and self.statement.applies() else None
        projected = statement.keys if statement else ()
        # Every relation of the level at once: their DataLoaders dispatch in the same tick. A
        # batch that raises fails its field for every parent; a value the plan cannot complete
        # sends the whole operation to graphql-core.
        loading = [
            field for field in self.fields if field.load is not None and field.key not in projected
        ]
        # At its limits, the caller's organization gives way to the others' requests before each
        # level's statements too (schema/engine/gate.py, `Gate.give_way`).
        if run.ctx.gate is not None and not run.ctx.over_websocket:
            await run.ctx.gate.give_way(run.ctx)
        runs = [field.load(parents, run.ctx) for field in loading if field.load is not None]
        if statement is not None:
            runs.append(statement.run(parents, run.ctx))
        found: list[Any] = await asyncio.gather(*runs, return_exceptions=True)
        for outcome in found:
            if isinstance(outcome, NoPlan | Unlike) or (
                isinstance(outcome, BaseException) and not isinstance(outcome, Exception)
            ):
                raise outcome  # the plan's to drop; or cancelled, exiting
        loaded: dict[str, list[Any]] = {
            field.key: [Failed(value)] * len(parents) if isinstance(value, Exception) else value
            for field, value in zip(loading, found[: len(loading)], strict=True)
        }
        if statement is not None:
            if isinstance(found[-1], Exception):
                loaded.update({key: [Failed(found[-1])] * len(parents) for key in projected})
                projected = ()
            else:
                COVERED.update(statement.declared)
        done = dict(zip(projected, found[-1], strict=True)) if projected else {}
        nulled: list[Nulled | None] = [None] * len(parents)
        for field in self.fields:
            if field.key in done:  # JSON values already, checked against the field's type
                for result, value in zip(results, done[field.key], strict=True):
                    result[field.key] = value
                continue
            if field.declared is not None:
                BATCHED.add(field.declared)
            values = loaded[field.key] if field.read is None else field.values(parents)
            paths_of = [(*path, field.key) for path in paths]
            ok = [i for i, value in enumerate(values) if not isinstance(value, Failed)]
            completed: list[Any] = [None] * len(parents)
            if len(ok) == len(values):
                completed = await complete(field.shape, values, run, paths_of)
            else:
                good = await complete(
                    field.shape, [values[i] for i in ok], run, [paths_of[i] for i in ok]
                )
                for i, value in zip(ok, good, strict=True):
                    completed[i] = value
                for i, value in enumerate(values):
                    if isinstance(value, Failed):
                        error = located_error(value.error, list(field.nodes), list(paths_of[i]))
                        if field.shape.nullable:
                            run.land(error, paths_of[i])
                        else:
                            completed[i] = Nulled(error)
            for i, (result, value) in enumerate(zip(results, completed, strict=True)):
                if isinstance(value, Nulled):
                    nulled[i] = nulled[i] or value
                result[field.key] = value
        return [
            result if gone is None else gone for result, gone in zip(results, nulled, strict=True)
        ]


def _self_calls(resolver: StrawberryResolver[Any]) -> Any:
    """(read, load) of a resolver that takes only `self`."""
    function: Callable[[Any], Any] = resolver.wrapped_func  # type: ignore[assignment]
    if not resolver.is_async:
        return (lambda parents: [function(parent) for parent in parents]), None

    async def load(parents: list[Any], _: RequestContext) -> list[Any]:
        found = await asyncio.gather(
            *(function(parent) for parent in parents), return_exceptions=True
        )
        for value in found:
            if not isinstance(value, Exception) and isinstance(value, BaseException):
                raise value
        return [Failed(value) if isinstance(value, Exception) else value for value in found]

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
                    raise NoPlan("directive")
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
                        raise NoPlan("directive", "an unknown fragment, or directives")
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
            raise NoPlan("arguments", f"{parent.name}.{name} takes arguments, or has extensions")
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
        declared = f"{parent.name}.{name}" if metadata.get(SQL) is not None else None
        return Field(key, read, load, shape, projection, tuple(nodes), declared)

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
        raise NoPlan("resolver", f"{parent.name}.{field.python_name} has a resolver")

    def shape(self, type_: GraphQLOutputType, selection_sets: list[SelectionSetNode]) -> Shape:
        nullable = not isinstance(type_, GraphQLNonNull)
        inner = type_ if nullable else type_.of_type  # type: ignore[union-attr]
        if isinstance(inner, GraphQLList):
            return ListOf(self.shape(inner.of_type, selection_sets), nullable)
        if is_leaf_type(inner):
            return Leaf(inner.serialize, nullable)  # type: ignore[union-attr]
        if isinstance(inner, GraphQLObjectType):
            return Objects(self.selection(inner, selection_sets), nullable)
        raise NoPlan("abstract", f"{inner} is an abstract type")


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
    events: Lru[tuple[type, Any], tuple[float, asyncio.Future[ExecutionResult]]] = (
        dataclasses.field(default_factory=lambda: Lru(EVENTS_REMEMBERED), compare=False)
    )

    async def run(self, executor: StrawberryGraphQLCoreExecutionContext) -> ExecutionResult:
        """The operation's result: its data, and the errors its resolvers raised, each once.
        Raises NoPlan or Unlike where the plan cannot complete a value."""
        root_type = self.root_type
        data: dict[str, Any] = {}
        run = Run(executor.context_value)
        for root in self.root_fields:
            field_def = root_type.fields[root.nodes[0].name.value]
            resolve = field_def.resolve or executor.field_resolver
            path = (root.key,)
            try:
                info = executor.build_resolve_info(
                    field_def, root.nodes, root_type, Path(None, root.key, root_type.name)
                )
                arguments = get_argument_values(field_def, root.nodes[0], executor.variable_values)
                value = resolve(executor.root_value, info, **arguments)
                if isawaitable(value):
                    value = await value
            except Exception as error:  # the field's error, as graphql-core locates it
                value = Nulled(located_error(error, root.nodes, list(path)))
            else:
                (value,) = await complete(root.shape, [value], run, [path])
            if isinstance(value, Nulled):
                if not root.shape.nullable:  # the whole answer is null
                    run.land(value.error, ())
                    return ExecutionResult(None, run.errors)
                run.land(value.error, path)
                value = None
            data[root.key] = value
        return ExecutionResult(data, run.errors or None)


def compile_plan(
    schema: GraphQLSchema, operation: OperationDefinitionNode, fragments: dict[str, Any]
) -> Plan:
    root_type = PLANNED.get(operation.operation, lambda _: None)(schema)
    if root_type is None:
        raise NoPlan("mutation")
    if operation.directives:
        raise NoPlan("directive")
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


_plans: WeakKeyDictionary[GraphQLSchema, Lru[tuple[str, str | None], Plan | NoPlan]] = (
    WeakKeyDictionary()
)


def plan_for(executor: StrawberryGraphQLCoreExecutionContext) -> Plan | NoPlan:
    """The operation's plan (compiled on first use), or why it has none."""
    operation = executor.operation
    if operation.operation not in PLANNED:
        return NoPlan("mutation")
    if operation.loc is None:
        return NoPlan("unparsed")
    if executor.middleware_manager is not None and executor.middleware_manager.middlewares:
        return NoPlan("middleware")  # per-field middleware must see every field
    cache = per_schema(_plans, executor.schema, PLANS_PER_SCHEMA)
    key = (operation.loc.source.body, operation.name.value if operation.name else None)
    if key in cache:
        return cache.get(key)  # type: ignore[return-value]
    try:
        plan: Plan | NoPlan = compile_plan(
            executor.schema, operation, executor.fragment_definitions
        )
    except NoPlan as reason:
        log.debug("no plan for %s: %s", key[1], reason)
        plan = reason
    cache.put(key, plan)
    return plan


# Under test (Settings.plans_compare): each difference between a planned run's result and
# graphql-core's, newest last (a few kept: the suite's helper takes them after each request).
MISMATCHES: list[str] = []
MISMATCHES_KEPT = 20
NO_COMPARE = "x-plans-compare"  # a request with this header set to "off" is not compared


class PlannedExecutor(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's executor, running a query, or a subscription's event, on its plan when it
    has one.

    A live event goes to every subscriber of its organization whose feed wants it and who may
    read it (subscriptions/hub.py). When the subscription's plan gives the same result to every
    viewer, the first subscriber to run it computes the result and the others take it, so an
    event costs one execution per distinct subscription document, not one per websocket.
    """

    compare = False  # ComparingExecutor: run each planned operation on graphql-core too

    def execute_operation(self, serially: bool | None = None) -> Any:
        plan = plan_for(self)
        if isinstance(plan, NoPlan):
            OPERATION_PLANS.labels("unplanned", plan.reason).inc()
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
                result, path = await self._shared(plan)
            else:
                result = await plan.run(self)
        except (NoPlan, Unlike) as dropped:  # a value the plan cannot complete: graphql-core's
            reason = dropped.reason
            log.warning(
                "planned run of %s fell back on graphql-core: %s",
                self._name(),
                dropped,
                extra={"fields": {"plan_fallback": reason}},
            )
            return await self._fallback(serially, reason)
        except Exception:  # a fault of the plan's own (a resolver's error is in the result)
            log.warning("planned run of %s failed", self._name(), exc_info=True)
            return await self._fallback(serially, "fault")
        OPERATION_PLANS.labels(path, "").inc()
        if self.compare and self._comparing():
            await self._compare(result, serially)
        return result

    async def _fallback(self, serially: bool | None, reason: str) -> Any:
        OPERATION_PLANS.labels("fallback", reason).inc()
        result = super().execute_operation(serially)
        return await result if isawaitable(result) else result

    def _name(self) -> str:
        name = self.operation.name
        return name.value if name else "an anonymous operation"

    def _comparing(self) -> bool:
        headers = getattr(getattr(self.context_value, "request", None), "headers", None) or {}
        return headers.get(NO_COMPARE) != "off"

    async def _compare(self, planned: ExecutionResult, serially: bool | None) -> None:
        """Run the operation again on graphql-core, with loaders of its own (nothing cached by
        the planned run), and record any difference in data or errors."""
        forget = getattr(self.context_value, "forget_cached", None)
        if forget is not None:
            forget()
        reference = super().execute_operation(serially)
        if isawaitable(reference):
            reference = await reference
        ours, theirs = _answer(planned), _answer(reference)  # type: ignore[arg-type]
        if ours == theirs:
            return
        source = self.operation.loc.source.body if self.operation.loc else ""
        diff = "\n".join(
            difflib.unified_diff(
                theirs.splitlines(), ours.splitlines(), "graphql-core", "planned", lineterm=""
            )
        )
        text = f"planned run differs from graphql-core for\n{source}\n{diff}"
        log.error("%s", text)
        MISMATCHES.append(text)
        del MISMATCHES[:-MISMATCHES_KEPT]

    async def _shared(self, plan: Plan) -> tuple[ExecutionResult, str]:
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
            found = await asyncio.shield(result)
        except Exception:
            if (entry := plan.events.get(key)) is not None and entry[1] is result:
                plan.events.discard(key)  # each subscriber then falls back on its own
            raise
        # each subscriber's own result: the errors' formatting is per response
        return ExecutionResult(found.data, list(found.errors) if found.errors else None), path


class ComparingExecutor(PlannedExecutor):
    """Under test only (Settings.plans_compare): every planned run is checked against
    graphql-core's (`MISMATCHES`)."""

    compare = True


def _answer(result: ExecutionResult) -> str:
    """A result as JSON, its errors in a stable order (GraphQL does not order them)."""
    errors = sorted(
        json.dumps(error.formatted, sort_keys=True, default=str) for error in result.errors or ()
    )
    return json.dumps(
        {"data": result.data, "errors": [json.loads(error) for error in errors]},
        indent=1,
        default=str,
    )
