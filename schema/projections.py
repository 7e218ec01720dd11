"""SQL projections: on PostgreSQL, a relation's whole selection read as JSON where it is found.

A plan (schema/plans.py) resolves a relation with one batch call per level. Each call turns rows
into model instances and GraphQL objects, value by value, and the plan then reads each selected
field back off them: on the pipeline page that was most of the time left. When everything a
query selects below a relation is declared here, the plan asks PostgreSQL for that subtree as
the JSON the response will hold, in one statement for all the projected relations of a level:

    SELECT json_agg(json_build_array(<one expression per relation>) ORDER BY d.ord)
    FROM unnest($1::int[]) WITH ORDINALITY AS d(id, ord) JOIN "opportunity" AS t0 ON t0.id = d.id

What is declared:
- `table(Type, Row, columns=...)`: values of the GraphQL type are rows of Row's table, and each
  attribute named in `columns` is the row's column of that name, unconverted (a string, a
  32-bit integer, a boolean, or an enum whose values the column holds);
- `batched(load, sql=Join(...))` on a relation: where its rows are, as a FROM and a WHERE;
- `batched(load, sql="...")`, or `sql_field("...")` on a resolver of `self`: a value computed
  from the row (`{row}`), such as a full name.
Anything else selected below a relation (a date, a decimal, a field with arguments, an
undeclared relation) leaves that relation on its batch function.

The read rules are the loaders' (resolvers/loaders.py): each related table is scoped to the
organization (`scoped`), deleted rows are left out (`live`), and the order is the loaders'.
A null in a non-null field drops the planned run, as everywhere in a plan, and graphql-core
answers. Both paths are compared answer for answer, for every kind of viewer
(tests/test_plans.py). SQLite runs the batch functions.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from graphql import (
    FieldNode,
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    SelectionSetNode,
)
from strawberry import relay
from strawberry.types.field import StrawberryField
from tortoise.fields import BooleanField, CharField, IntField, SmallIntField, TextField
from tortoise.fields.data import CharEnumFieldInstance
from tortoise.models import Model

from resolvers.context import RequestContext

SQL = "crm.sql"  # the metadata key of a field's SQL: a Join, or an expression over {row}
DEFINITION = "strawberry-definition"  # where Strawberry keeps a GraphQL field's own definition
MAX_KEYS = 50  # json_build_object takes at most 100 arguments

# A column's model field, by the GraphQL scalar it can stand for unconverted.
VERBATIM: dict[str, tuple[type, ...]] = {
    "String": (CharField, TextField),
    "Int": (IntField, SmallIntField),  # 32-bit, as GraphQL's Int
    "Boolean": (BooleanField,),
}


@dataclass(frozen=True, slots=True)
class Join:
    """A relation's rows: `rows` is their FROM (`{row}` their alias; `{followers}` and the like,
    a table of the parent's, see `table`), `where` how they belong to the parent row
    (`{parent}`), `order` their order in a list."""

    rows: str
    where: str
    order: str = "{row}.id"
    live: bool = False  # deleted rows are left out
    scoped: bool = True  # only rows of the viewer's organization


@dataclass(frozen=True, slots=True)
class Table:
    model: type[Model]
    columns: frozenset[str]
    names: Mapping[str, str]  # tables its relations name: "{followers}" -> "opportunity_follower"
    by_id: bool  # its values are found by their `id` (a level of a plan can start from them)


TABLES: dict[type, Table] = {}


def table(
    cls: type,
    model: type[Model],
    *,
    columns: Sequence[str],
    names: Mapping[str, str] = {},
    by_id: bool = True,
) -> None:
    """Declare that the values of the GraphQL type `cls` are rows of `model`'s table."""
    unknown = [name for name in columns if name not in model._meta.fields_map]
    assert not unknown, f"{cls.__name__}: no such columns {unknown}"
    TABLES[cls] = Table(model, frozenset(columns), dict(names), by_id)


def sql_field(expression: str) -> dict[str, Any]:
    """Field metadata: the field's value in SQL, computed from its row (`{row}`)."""
    return {SQL: expression}


def table_of(type_: GraphQLObjectType) -> Table | None:
    definition = type_.extensions.get(DEFINITION)
    return None if definition is None else TABLES.get(definition.origin)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# What checks a projected value against its field's type: SQL does not know GraphQL's non-nulls.
Check = Callable[[Any], bool]


def _all(checks: list[tuple[str, Check]]) -> Check | None:
    if not checks:
        return None
    return lambda value: all(check(value[key]) for key, check in checks)


def _present(inner: Check | None) -> Check:
    return (
        (lambda value: value is not None)
        if inner is None
        else (lambda value: value is not None and inner(value))
    )


def _nullable(inner: Check) -> Check:
    return lambda value: value is None or inner(value)


def _each(inner: Check) -> Check:
    return lambda values: all(inner(value) for value in values)


@dataclass(slots=True)
class Projection:
    """A field's SQL (with `{parent}` for the row it is a field of) and the check of its value,
    or None when its values cannot be null where GraphQL says they must not be."""

    sql: str
    check: Check | None


@dataclass
class Projector:
    """Projections of the fields of a plan. `collect` is the plan compiler's field collection."""

    collect: Callable[[GraphQLObjectType, Sequence[SelectionSetNode]], dict[str, list[FieldNode]]]
    aliases: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def field(
        self,
        parent: GraphQLObjectType,
        definition: StrawberryField,
        type_: GraphQLOutputType,
        selection_sets: Sequence[SelectionSetNode],
    ) -> Projection | None:
        """A field of a row of the parent's table, or None when it has no SQL."""
        metadata: Mapping[str, Any] = definition.metadata or {}
        declared = metadata.get(SQL)
        on = table_of(parent)
        if declared is None or on is None:
            return None
        if isinstance(declared, str):
            return self._expression(declared, type_, on)
        return self._relation(declared, type_, selection_sets, on)

    def _expression(self, sql: str, type_: GraphQLOutputType, on: Table) -> Projection:
        text = _names(sql, on).replace("{row}", "{parent}")
        if isinstance(type_, GraphQLNonNull):
            return Projection(text, _present(None))
        return Projection(text, None)

    def _relation(
        self,
        join: Join,
        type_: GraphQLOutputType,
        selection_sets: Sequence[SelectionSetNode],
        on: Table,
    ) -> Projection | None:
        required = isinstance(type_, GraphQLNonNull)
        inner = type_.of_type if required else type_  # type: ignore[union-attr]
        many = isinstance(inner, GraphQLList)
        if many:
            item = inner.of_type  # type: ignore[union-attr]
            if not isinstance(item, GraphQLNonNull):
                return None  # the batch functions never give a null item: not worth a case
            inner = item.of_type
        if not isinstance(inner, GraphQLObjectType) or (related := table_of(inner)) is None:
            return None
        alias = f"t{next(self.aliases)}"
        built = self._object(inner, related, alias, selection_sets)
        if built is None:
            return None
        value, check = built
        conditions = [join.where]
        if join.scoped:
            conditions.append("{row}.organization_id = {org}")
        if join.live:
            conditions.append("{row}.deleted_at IS NULL")
        where = " AND ".join(conditions)
        if many:
            sql = (
                f"(SELECT coalesce(json_agg({value} ORDER BY {join.order}), '[]')"
                f" FROM {join.rows} WHERE {where})"
            )
            check = None if check is None else _each(check)
        else:
            sql = f"(SELECT {value} FROM {join.rows} WHERE {where})"
            check = _present(check) if required else check and _nullable(check)
        return Projection(_names(sql, on).replace("{row}", alias), check)

    def _object(
        self,
        type_: GraphQLObjectType,
        on: Table,
        alias: str,
        selection_sets: Sequence[SelectionSetNode],
    ) -> tuple[str, Check | None] | None:
        """json_build_object of the selection on a row (`alias`) of the type, and its check."""
        pairs: list[str] = []
        checks: list[tuple[str, Check]] = []
        collected = self.collect(type_, selection_sets)
        if len(collected) > MAX_KEYS:
            return None
        for key, nodes in collected.items():
            name = nodes[0].name.value
            if name == "__typename":
                pairs.append(f"{_quote(key)}, {_quote(type_.name)}")
                continue
            graphql_field = type_.fields.get(name)
            if graphql_field is None or any(node.arguments for node in nodes):
                return None
            definition = graphql_field.extensions.get(DEFINITION)
            if (
                not isinstance(definition, StrawberryField)
                or definition.permission_classes
                or definition.extensions
            ):
                return None
            sub = [node.selection_set for node in nodes if node.selection_set is not None]
            projected = self._value(type_, on, definition, graphql_field.type, sub)
            if projected is None:
                return None
            pairs.append(f"{_quote(key)}, {projected.sql.replace('{parent}', alias)}")
            if projected.check is not None:
                checks.append((key, projected.check))
        return f"json_build_object({', '.join(pairs)})", _all(checks)

    def _value(
        self,
        parent: GraphQLObjectType,
        on: Table,
        definition: StrawberryField,
        type_: GraphQLOutputType,
        selection_sets: Sequence[SelectionSetNode],
    ) -> Projection | None:
        metadata: Mapping[str, Any] = definition.metadata or {}
        if metadata.get(SQL) is not None:
            return self.field(parent, definition, type_, selection_sets)
        resolver = definition.base_resolver
        if resolver is None:
            return _column(on, definition.python_name, type_)
        function = getattr(resolver.wrapped_func, "__func__", resolver.wrapped_func)
        origin = parent.extensions[DEFINITION].origin
        if (
            function is relay.Node._id.__func__  # type: ignore[attr-defined]
            and not overrides(origin, "resolve_id")
            and not overrides(origin, "resolve_typename")
            and origin.resolve_id_attr() == "id"
        ):
            # relay's global id: base64 of "Type:id" (no line breaks: ids are short)
            prefix = _quote(parent.name + ":")
            sql = f"encode(convert_to({prefix} || {{parent}}.id, 'UTF8'), 'base64')"
            return Projection(sql, None)
        return None


def _column(on: Table, name: str, type_: GraphQLOutputType) -> Projection | None:
    """A declared column standing for its field as it is, or None."""
    if name not in on.columns:
        return None
    required = isinstance(type_, GraphQLNonNull)
    leaf = type_.of_type if required else type_  # type: ignore[union-attr]
    column = on.model._meta.fields_map[name]
    sql = f'{{parent}}."{column.source_field or name}"'
    if isinstance(leaf, GraphQLEnumType) and isinstance(column, CharEnumFieldInstance):
        # GraphQL names the enum's values: each column value becomes its name (none: null)
        cases = " ".join(
            f"WHEN {_quote(member.value)} THEN {_quote(leaf.serialize(member))}"
            for member in column.enum_type
        )
        sql = f"CASE {sql} {cases} END"
    elif not isinstance(column, VERBATIM.get(getattr(leaf, "name", ""), ())) or isinstance(
        column, CharEnumFieldInstance
    ):
        return None
    check = _present(None) if required and (column.null or sql.startswith("CASE")) else None
    return Projection(sql, check)


def overrides(cls: type, method: str) -> bool:
    """Whether a Node class replaces relay.Node's classmethod `method`."""
    return getattr(cls, method).__func__ is not getattr(relay.Node, method).__func__


def _names(sql: str, on: Table) -> str:
    for name, value in on.names.items():
        sql = sql.replace("{" + name + "}", f'"{value}"')
    return sql


@dataclass(frozen=True, slots=True)
class Statement:
    """The projected fields of a level: one statement for all its parents."""

    sql: str
    keys: tuple[str, ...]
    checks: tuple[Check | None, ...]
    model: type[Model]
    organization: bool  # the statement reads the organization's id
    viewer: bool  # ... and the viewer's

    @classmethod
    def of(cls, on: Table, projected: dict[str, Projection]) -> Statement:
        values = ", ".join(
            projection.sql.replace("{parent}", "t0") for projection in projected.values()
        )
        sql = (
            f"SELECT json_agg(json_build_array({values}) ORDER BY d.ord)::text"
            " FROM unnest($1::int[]) WITH ORDINALITY AS d(id, ord)"
            f' JOIN "{on.model._meta.db_table}" AS t0 ON t0.id = d.id'
        )
        organization, viewer = "{org}" in sql, "{viewer}" in sql
        sql = sql.replace("{org}", "$2").replace("{viewer}", "$3" if organization else "$2")
        checks = tuple(projection.check for projection in projected.values())
        return cls(sql, tuple(projected), checks, on.model, organization, viewer)

    def applies(self) -> bool:
        return self.model._meta.db.capabilities.dialect == "postgres"

    async def run(self, parents: list[Any], ctx: RequestContext) -> list[list[Any]]:
        """The values of each projected field (in `keys` order), each a list in parents' order.
        Raises Unlike when they are not what the field's type says (a null where it cannot
        be), or a parent's row is gone."""
        arguments: list[Any] = [[parent.id for parent in parents]]
        if self.organization:
            arguments.append(ctx.loaders.organization_id)
        if self.viewer:
            arguments.append(ctx.require_viewer().id)
        _, rows = await self.model._meta.db.execute_query(self.sql, arguments)
        found = orjson.loads(rows[0][0]) if rows and rows[0][0] is not None else []
        if len(found) != len(parents):
            raise Unlike("a parent's row is gone")
        columns = [list(values) for values in zip(*found, strict=True)]
        for key, values, check in zip(self.keys, columns, self.checks, strict=True):
            if check is not None and not all(check(value) for value in values):
                raise Unlike(f"a null in non-null {key}")
        return columns


class Unlike(Exception):
    """Projected values unlike their fields' types: the plan's run is dropped."""


def to_one(table_name: str, column: str, *, live: bool = False) -> Join:
    """The row of `table_name` whose id is the parent's `column`."""
    return Join(f'"{table_name}" AS {{row}}', f"{{row}}.id = {{parent}}.{column}", live=live)
