"""SQL projections: on PostgreSQL, a relation's whole selection read as JSON where it is found.

A plan (schema/engine/plans.py) resolves a relation with one batch call per level. Each call
turns rows into model instances and GraphQL objects, value by value, and the plan then reads each
selected field back off them: on the pipeline page that was most of the time left. When everything a
query selects below a relation is declared here, the plan asks PostgreSQL for that subtree as
the JSON the response will hold, in one statement for all the projected relations of a level:

    SELECT json_agg(json_build_array(<one expression per relation>) ORDER BY d.ord)
    FROM unnest($1::int[]) WITH ORDINALITY AS d(id, ord)
    CROSS JOIN LATERAL (SELECT ... FROM "opportunity" WHERE id = d.id ... LIMIT 1) AS t0
    LEFT JOIN LATERAL (<each to-one relation's row, by its key> LIMIT 1) ON true ...

with each list a subquery per parent row (`(SELECT json_agg(...) FROM ... WHERE record_id =
t0.id)`). Every row is reached from the page's ids through an index, one lookup at a time: the
plan has the same shape, and costs the same, for an organization of fifty rows and one of two
hundred thousand (the LATERAL ... LIMIT 1 keeps PostgreSQL from turning a lookup into a join
whose method would follow the tables' statistics: tests/test_query_plans.py).

What is declared:
- `table(Type, Row, columns=...)` (made by each record's declaration, schema/records.py): values
  of the GraphQL type are rows of Row's table, and each attribute named in `columns` is the
  row's column it names, unconverted (a string, a
  32-bit integer, a boolean, or an enum whose values the column holds);
- `batched(load, sql=to_one(...))` or `sql=to_many(...)` on a relation: where its rows are;
- `batched(load, sql="...")`, or `sql_field("...")` on a resolver of `self`: a value computed
  from the row (`{row}`), such as a full name.
Anything else selected below a relation (a date, a decimal, a field with arguments, an
undeclared relation) leaves that relation on its batch function.

The read rules are the loaders' (resolvers/loaders.py): each related table is scoped to the
organization (`scoped`), deleted rows are left out (`live`), and the order is the loaders'. The
statement finds a level's parents by id, in the viewer's organization, and follows their
foreign keys as the database holds them then: the parents must be rows the request read (as
every plan level is), not objects changed in memory.
A null in a non-null field drops the planned run, as everywhere in a plan, and graphql-core
answers. Both paths are compared answer for answer, for every kind of viewer
(tests/test_plans.py). SQLite runs the batch functions.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from graphql import (
    FieldNode,
    GraphQLEnumType,
    GraphQLField,
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

from resolvers.access import organizations
from resolvers.context import RequestContext

SQL = "crm.sql"  # the metadata key of a field's SQL: a Join, or an expression over {row}
DEFINITION = "strawberry-definition"  # where Strawberry keeps a GraphQL field's own definition
MAX_KEYS = 50  # json_build_object takes at most 100 arguments
# The fields declared in SQL ("Type.field") that have run in this process as SQL (COVERED), and
# on their batch functions in a plan (BATCHED): a few dozen names at most, the schema's
# declarations, for the test that every declaration is covered (tests/test_plans.py).
COVERED: set[str] = set()
BATCHED: set[str] = set()

# A column's model field, by the GraphQL scalar it can stand for unconverted.
VERBATIM: dict[str, tuple[type, ...]] = {
    "String": (CharField, TextField),
    "Int": (IntField, SmallIntField),  # 32-bit, as GraphQL's Int
    "Boolean": (BooleanField,),
}


@dataclass(frozen=True, slots=True)
class Join:
    """A relation's rows: `rows` is their FROM (`{row}` their alias; `{followers}` and the like,
    a table of the parent's, see `table`), `link` how one belongs to the parent row (`{parent}`),
    `also` what else they meet, `order` their order in a list. Made by `to_one` and `to_many`."""

    rows: str
    link: str
    also: str = ""  # what else its rows meet: the read rule of what they are
    order: str = "{row}.id"
    by: str | None = None  # a list's column holding its parent's id; None: one row, by its key

    def conditions(self, *, linked: bool = True) -> str:
        """What its rows meet: the link to their parent (unless not `linked`), the rest."""
        found = [self.link] if linked else []
        if self.also:
            found.append(self.also)
        return " AND ".join(found)


def to_one(model: type[Model], column: str) -> Join:
    """The row of `model` whose id is the parent's `column`, under the model's read rule (the
    organization's live rows, resolvers/access.py: as the loaders read them)."""
    rows = f'"{model._meta.db_table}" AS {{row}}'
    return Join(rows, f"{{row}}.id = {{parent}}.{column}", organizations(model).sql("{row}"))


def to_many(
    rows: str, by: str, *, rule: type[Model] | None = None, also: str = "", order: str = "{row}.id"
) -> Join:
    """The rows (`rows`, a FROM) whose column `by` holds the parent's id; `rule`: the model of
    the rows `{row}` names, whose read rule they meet (none for a link's own table)."""
    conditions = [organizations(rule).sql("{row}")] if rule is not None else []
    also = " AND ".join([*conditions, also] if also else conditions)
    return Join(rows, f"{by} = {{parent}}.id", also, order, by=by)


@dataclass(frozen=True, slots=True)
class Table:
    model: type[Model]
    columns: Mapping[str, str]  # attribute -> the model field it is read from as it is
    names: Mapping[str, str]  # tables its relations name: "{followers}" -> "opportunity_follower"
    by_id: bool  # its values are found by their `id` (a level of a plan can start from them)


TABLES: dict[type, Table] = {}


def table(
    cls: type,
    model: type[Model],
    *,
    columns: Mapping[str, str],
    names: Mapping[str, str] = {},
    by_id: bool = True,
) -> None:
    """Declare that the values of the GraphQL type `cls` are rows of `model`'s table."""
    unknown = [name for name in columns.values() if name not in model._meta.fields_map]
    assert not unknown, f"{cls.__name__}: no such columns {unknown}"
    TABLES[cls] = Table(model, dict(columns), dict(names), by_id)


def sql_field(expression: str) -> dict[str, Any]:
    """Field metadata: the field's value in SQL, computed from its row (`{row}`)."""
    return {SQL: expression}


def plain_field(
    parent: GraphQLObjectType, nodes: Sequence[FieldNode]
) -> tuple[GraphQLField, StrawberryField] | None:
    """The field the nodes select on `parent`, when a plan can resolve it itself: no arguments,
    no permission classes, no field extensions (else None)."""
    graphql_field = parent.fields.get(nodes[0].name.value)
    if graphql_field is None or any(node.arguments for node in nodes):
        return None
    definition = graphql_field.extensions.get(DEFINITION)
    if (
        not isinstance(definition, StrawberryField)
        or definition.permission_classes
        or definition.extensions
    ):
        return None
    return graphql_field, definition


def declared_name(parent: GraphQLObjectType, definition: StrawberryField) -> str:
    """ "Type.field", as the API names them."""
    for name, graphql_field in parent.fields.items():
        if graphql_field.extensions.get(DEFINITION) is definition:
            return f"{parent.name}.{name}"
    return f"{parent.name}.{definition.python_name}"


def sql_declarations(schema: Any) -> set[str]:
    """Every field of the schema declared in SQL ("Type.field") on a type read from a table."""
    return {
        f"{type_.name}.{name}"
        for type_ in schema.type_map.values()
        if isinstance(type_, GraphQLObjectType) and table_of(type_) is not None
        for name, graphql_field in type_.fields.items()
        if isinstance(definition := graphql_field.extensions.get(DEFINITION), StrawberryField)
        and dict(definition.metadata or {}).get(SQL) is not None
    }


def relay_id(parent: GraphQLObjectType, definition: StrawberryField) -> str | None:
    """The attribute a Node's global id is made of, when the field is relay's own `id` on a
    type that does not resolve its ids or type name itself (else None)."""
    resolver = definition.base_resolver
    if resolver is None:
        return None
    function = getattr(resolver.wrapped_func, "__func__", resolver.wrapped_func)
    origin = parent.extensions[DEFINITION].origin
    if function is not relay.Node._id.__func__:  # type: ignore[attr-defined]
        return None
    if _overrides(origin, "resolve_id") or _overrides(origin, "resolve_typename"):
        return None
    return str(origin.resolve_id_attr())


def table_of(type_: GraphQLObjectType) -> Table | None:
    definition = type_.extensions.get(DEFINITION)
    return None if definition is None else TABLES.get(definition.origin)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# SQL knows nothing of GraphQL's non-null types: where a value must not be null, a null becomes
# this JSON string instead. PostgreSQL text cannot hold a NUL character, so no stored string is
# ever written "\u0000" in JSON: finding the marker in a result is finding a null where its
# field forbids one, and the plan's run is dropped. A stored backslash is written "\\", so a
# stored string whose text is backslash-u0000 shows an odd run of backslashes before "u0000";
# the marker has an even one (none, after its quote).
MISSING = "\\u0000"
MISSING_SQL = """E'"\\\\u0000"'::json"""  # an E'' string: whatever standard_conforming_strings
MARKER = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _required(sql: str) -> str:
    return f"coalesce(to_json({sql}), {MISSING_SQL})"


@dataclass(frozen=True, slots=True)
class Projection:
    """A field's value in SQL, over the row it is a field of (`{parent}`), and the LEFT JOINs it
    needs beside that row in the FROM."""

    value: str
    joins: tuple[str, ...] = ()
    declared: frozenset[str] = frozenset()  # the fields declared in SQL it is made of

    def on(self, alias: str) -> Projection:
        """The same, for the row `alias`."""
        return Projection(
            self.value.replace("{parent}", alias),
            tuple(join.replace("{parent}", alias) for join in self.joins),
            self.declared,
        )


@dataclass
class Projector:
    """The SQL of the fields of a plan; `collect` is the plan compiler's field collection.
    SQL has `{org}` and `{viewer}` for the organization's and the viewer's ids, and `$1` for
    the ids of a level's parents.

    Relations are written set by set, as PostgreSQL runs them best (a third less time for the
    pipeline page than a subquery per parent and relation): a to-one relation is a LEFT JOIN
    beside its parent's row; a list of the level's parents is one grouped pass over all their
    rows, LEFT JOINed by parent id; a list further down is a subquery per parent."""

    collect: Callable[[GraphQLObjectType, Sequence[SelectionSetNode]], dict[str, list[FieldNode]]]
    aliases: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def field(
        self,
        parent: GraphQLObjectType,
        definition: StrawberryField,
        type_: GraphQLOutputType,
        selection_sets: Sequence[SelectionSetNode],
    ) -> Projection | None:
        """A field declared in SQL (`batched(sql=...)`, `sql_field`) of a row of the parent's
        table, or None when the field, or something selected below it, has no SQL."""
        metadata: Mapping[str, Any] = definition.metadata or {}
        declared = metadata.get(SQL)
        on = table_of(parent)
        if declared is None or on is None:
            return None
        name = frozenset({declared_name(parent, definition)})
        if isinstance(declared, str):  # an expression over the row
            sql = _names(declared, on).replace("{row}", "{parent}")
            value = _required(sql) if isinstance(type_, GraphQLNonNull) else sql
            return Projection(value, (), name)
        found = self._relation(declared, type_, selection_sets, on)
        return (
            None if found is None else Projection(found.value, found.joins, found.declared | name)
        )

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
        value, joins = built.value, " ".join(built.joins)

        def named(sql: str) -> str:
            return _names(sql, on).replace("{row}", alias)

        where = join.conditions()
        if many != (join.by is not None):
            return None  # a to_one declared on a list, or a to_many on a single value
        if not many:
            found = f"CASE WHEN {alias}.id IS NOT NULL THEN {value} END"
            own = named(f"LEFT JOIN {lookup(join.rows, where)} ON true")
            return Projection(
                _required(found) if required else found, (own, *built.joins), built.declared
            )
        rows = f"json_agg({value} ORDER BY {join.order})"
        return Projection(
            named(f"(SELECT coalesce({rows}, '[]') FROM {join.rows} {joins} WHERE {where})"),
            (),
            built.declared,
        )

    def _object(
        self,
        type_: GraphQLObjectType,
        on: Table,
        alias: str,
        selection_sets: Sequence[SelectionSetNode],
    ) -> Projection | None:
        """json_build_object of the selection on a row (`alias`) of the type, and the joins
        its values need beside that row."""
        pairs: list[str] = []
        joins: list[str] = []
        declared: set[str] = set()
        collected = self.collect(type_, selection_sets)
        if len(collected) > MAX_KEYS:
            return None
        for key, nodes in collected.items():
            if nodes[0].name.value == "__typename":
                pairs.append(f"{_quote(key)}, {_quote(type_.name)}")
                continue
            found = plain_field(type_, nodes)
            if found is None:
                return None
            graphql_field, definition = found
            sub = [node.selection_set for node in nodes if node.selection_set is not None]
            projected = self._value(type_, on, definition, graphql_field.type, sub)
            if projected is None:
                return None
            projected = projected.on(alias)
            pairs.append(f"{_quote(key)}, {projected.value}")
            joins.extend(projected.joins)
            declared |= projected.declared
        return Projection(
            f"json_build_object({', '.join(pairs)})", tuple(joins), frozenset(declared)
        )

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
        if definition.base_resolver is None:
            column = _column(on, definition.python_name, type_)
            return None if column is None else Projection(column)
        if relay_id(parent, definition) == "id":
            # relay's global id: base64 of "Type:id" (no line breaks: ids are short). The bytes
            # of the ASCII text through textsend: convert_to looks its encoding up by name for
            # every id (0.1 to 0.8 ms of the pipeline page's 2.7 to 4 ms statement, measured).
            prefix = _quote(parent.name + ":")
            return Projection(f"encode(textsend({prefix} || {{parent}}.id::text), 'base64')")
        return None


def lookup(rows: str, where: str) -> str:
    """One row found by its key, as a LATERAL subquery of that name: `"account" AS {row}` meeting
    `where` becomes `LATERAL (SELECT * FROM "account" AS {row} WHERE ... LIMIT 1) AS {row}`. The
    LIMIT keeps PostgreSQL from flattening it into a join it would plan by the statistics: the
    row is always looked up through its key's index, whatever the tables hold."""
    table, alias = rows.rsplit(" AS ", 1)
    return f"LATERAL (SELECT * FROM {table} AS {alias} WHERE {where} LIMIT 1) AS {alias}"


def _column(on: Table, name: str, type_: GraphQLOutputType) -> str | None:
    """A declared column standing for its field as it is, or None."""
    source = on.columns.get(name)
    if source is None:
        return None
    required = isinstance(type_, GraphQLNonNull)
    leaf = type_.of_type if required else type_  # type: ignore[union-attr]
    column = on.model._meta.fields_map[source]
    sql = f'{{parent}}."{column.source_field or source}"'
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
    return _required(sql) if required and (column.null or sql.startswith("CASE")) else sql


def _overrides(cls: type, method: str) -> bool:
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
    model: type[Model]
    organization: bool  # the statement reads the organization's id
    viewer: bool  # ... and the viewer's
    declared: frozenset[str] = frozenset()  # the fields declared in SQL it is made of

    @classmethod
    def of(cls, on: Table, projected: dict[str, Projection]) -> Statement:
        fields = [projection.on("t0") for projection in projected.values()]
        values = ", ".join(projection.value for projection in fields)
        joins = "".join(f" {join}" for projection in fields for join in projection.joins)
        parents = lookup(
            f'"{on.model._meta.db_table}" AS t0', "t0.id = d.id AND t0.organization_id = {org}"
        )
        sql = (
            f"SELECT json_agg(json_build_array({values}) ORDER BY d.ord)::text"
            f" FROM unnest($1::int[]) WITH ORDINALITY AS d(id, ord) CROSS JOIN {parents}{joins}"
        )
        organization, viewer = "{org}" in sql, "{viewer}" in sql
        sql = sql.replace("{org}", "$2").replace("{viewer}", "$3" if organization else "$2")
        declared = frozenset().union(*(projection.declared for projection in fields))
        return cls(sql, tuple(projected), on.model, organization, viewer, declared)

    def applies(self) -> bool:
        return self.model._meta.db.capabilities.dialect == "postgres"

    async def run(self, parents: list[Any], ctx: RequestContext) -> list[list[Any]]:
        """The JSON values of each projected field (in `keys` order), each a list in parents'
        order. Raises Unlike when one is null where its type says it cannot be, or a parent's
        row is gone."""
        arguments: list[Any] = [[parent.id for parent in parents]]
        if self.organization:
            arguments.append(ctx.loaders.organization_id)
        if self.viewer:
            arguments.append(ctx.require_viewer().id)
        _, rows = await self.model._meta.db.execute_query(self.sql, arguments)
        text = rows[0][0] if rows else None
        if text is None:
            raise Unlike("gone", "a parent's row is gone")
        if MISSING in text and MARKER.search(text):
            raise Unlike("null", "a null where its field forbids one")
        found = orjson.loads(text)
        if len(found) != len(parents):
            raise Unlike("gone", "a parent's row is gone")
        return [list(values) for values in zip(*found, strict=True)]


class Unlike(Exception):
    """Projected values unlike their fields' types: the plan's run is dropped. `reason`: "null"
    (a null in a non-null field) or "gone" (a parent's row)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
