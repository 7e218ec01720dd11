"""One declaration per record: a GraphQL type bound to its model and its read rule.

    @record(OpportunityRow, read=access.OPPORTUNITIES, constants={"kind": OPPORTUNITY},
            export=("name", "amount_cents", ...))
    @strawberry.type(description="...")
    class Opportunity(Deal):
        name: str
        amount: Decimal = column(source="amount_cents", convert=from_cents, description="...")
        stage_id: strawberry.Private[int]

From that one declaration the rest is derived:
- `from_row`: each field of the type (its API fields and its private ones) is read off the row,
  from the model attribute of its own name unless `column(source=...)` names another, converted
  where `convert` says so, computed from the whole row where `derived(...)` says so, or given
  by the caller where `given()` says so;
- the node lookup (`node(id:)`, `nodes(ids:)`): the read rule finds the row the viewer may read;
- the projection's columns (schema/engine/projections.py): the fields read straight off a column;
- the export's columns (`GET /export/<name>.ndjson`): the model fields it lists, named as the
  API names them (camelCase, `amount_cents` as `amount`, foreign keys as global ids);
- the change feed (resolvers/sync.py) lists the records it syncs by their type's name.

A type's relations and computed fields stay resolvers on the type, as Strawberry writes them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, TypeVar

import strawberry
from tortoise.fields import BooleanField
from tortoise.fields.relational import ForeignKeyFieldInstance
from tortoise.models import Model

from resolvers.access import Organizations, ReadRule
from resolvers.context import RequestContext
from resolvers.export import Export, money, reference
from schema.engine.plans import batched, one, related
from schema.engine.projections import table, to_one

T = TypeVar("T")
SOURCE = "crm.source"  # the model attribute a field is read from
CONVERT = "crm.convert"  # ... and how its value becomes the field's
DERIVED = "crm.derived"  # a field computed from the whole row
GIVEN = "crm.given"  # a field the caller gives from_row
_ROW = object()  # derived(ROW): the row itself (a private field keeping it)


def column(
    *,
    source: str | None = None,
    convert: Callable[[Any], Any] | None = None,
    description: str | None = None,
    name: str | None = None,
    deprecation_reason: str | None = None,
) -> Any:
    """A field of a record read from its row's `source` attribute (default: the field's own
    name), converted by `convert` when given."""
    metadata: dict[str, Any] = {}
    if source is not None:
        metadata[SOURCE] = source
    if convert is not None:
        metadata[CONVERT] = convert
    return strawberry.field(
        description=description,
        name=name,
        deprecation_reason=deprecation_reason,
        metadata=metadata,
    )


def derived(compute: Callable[[Any], Any], *, description: str | None = None) -> Any:
    """A field of a record computed from its whole row (several columns, or a value of its
    own), such as a global id made of two columns."""
    return strawberry.field(description=description, metadata={DERIVED: compute})


def private_row() -> Any:
    """A private field holding the row itself, for resolvers that read more of it."""
    return dataclasses.field(metadata={DERIVED: _ROW})


def given(*, description: str | None = None) -> Any:
    """A field of a record whose value is not the row's: `from_row(row, name=value)` gives it
    (a quota's currency, the organization's)."""
    return strawberry.field(description=description, metadata={GIVEN: True})


def private_derived(compute: Callable[[Any], Any]) -> Any:
    """A private field computed from the row."""
    return dataclasses.field(metadata={DERIVED: compute})


@dataclass
class Record:
    """What one declaration binds (see the module's docstring)."""

    type_: type
    model: type[Model]
    read: ReadRule | None  # None: reached only from the record it belongs to, under its rule
    make: Callable[[Any], Any]  # the type's value of a row
    export: tuple[str, Export] | None = None  # its path name and columns
    by_id: bool = True  # a node: found by its global id
    sources: Mapping[str, str] = field(default_factory=dict)  # plain field -> model column

    @property
    def name(self) -> str:
        return str(self.type_.__strawberry_definition__.name)  # type: ignore[attr-defined]

    async def of_ids(self, ctx: RequestContext, ids: Sequence[int | None]) -> list[Any | None]:
        """The records of `ids` the viewer reads, in order (None for a None id or one out of
        reach): through the request's loader for the organization's records (one statement a
        tick), by the rule for the others."""
        if isinstance(self.read, Organizations):
            loader = ctx.loaders.rows(self.model, live=self.read.live)
            return await related(loader, ids, self.make)
        assert self.read is not None, f"{self.name} is read through another record"
        read = self.read
        return [None if pk is None else await self._found(ctx, read, pk) for pk in ids]

    async def _found(self, ctx: RequestContext, read: ReadRule, pk: int) -> Any | None:
        row = await read.get(ctx, pk)
        return None if row is None else self.make(row)

    async def node(self, ctx: RequestContext, pk: int) -> Any | None:
        """The record of this id, when the viewer may read it (None otherwise: NOT_FOUND)."""
        if self.read is None:
            return None
        row = await self.read.get(ctx, pk)
        return None if row is None else self.make(row)


class Declared:
    """The base of a declared record's type, for its derived constructor's sake (type checkers
    see `from_row` here; `record` sets the real one)."""

    @classmethod
    def from_row(cls: type[T], row: Any, **given: Any) -> T:
        raise TypeError(f"{cls.__name__} is not declared with @record")


RECORDS: dict[str, Record] = {}  # by GraphQL type name
BY_MODEL: dict[type[Model], Record] = {}


def record(
    model: type[Model],
    *,
    read: ReadRule | None,
    constants: Mapping[str, Any] | None = None,
    export: tuple[str, Sequence[str]] | None = None,
    names: Mapping[str, str] | None = None,
    node: bool = True,
) -> Callable[[type[T]], type[T]]:
    """Declare a Strawberry type (applied above `@strawberry.type`) as the API's view of
    `model`'s rows, read under `read`. `constants`: private fields with the same value for
    every row (a deal's kind). `export`: (its path name, the model fields exported, in order).
    `names`: tables its relations' SQL names (projections). `node`: found by its global id.
    `read` is None only for what is reached from another record alone (a deal's participants,
    a campaign's members), under that record's rule."""

    def declare(cls: type[T]) -> type[T]:
        assert issubclass(cls, Declared), f"{cls.__name__} must derive from Declared"
        make, sources = _maker(cls, model, dict(constants or {}))
        setattr(cls, "from_row", staticmethod(make))  # noqa: B010 (a method the base declares)
        declared = Record(cls, model, read, make, by_id=node, sources=sources)
        if export is not None:
            declared.export = (export[0], _export(declared, export[1]))
        name = declared.name
        assert name not in RECORDS, f"{name} is declared twice"
        RECORDS[name] = declared
        BY_MODEL.setdefault(model, declared)
        table(cls, model, columns=sources, names=names or {}, by_id=node)
        return cls

    return declare


def declared(model: type[Model]) -> Record:
    """The record declared for a model's rows."""
    return BY_MODEL[model]


async def record_of(info: Any, model: type[Model], pk: int | None) -> Any | None:
    """The record of a model's id (None for no id, or one out of the viewer's reach)."""
    return (await declared(model).of_ids(info.context, [pk]))[0]


async def existing(info: Any, model: type[Model], pk: int) -> Any:
    """The record a row names where it must exist (a record's owner, a comment's author)."""
    found = await record_of(info, model, pk)
    assert found is not None, f"{model.__name__} {pk} referenced but missing"
    return found


async def records_of(
    ctx: RequestContext, model: type[Model], ids: Sequence[int | None]
) -> list[Any | None]:
    """The records of a model's ids, in order (None where there is none to read)."""
    return await declared(model).of_ids(ctx, ids)


class Link:
    """A relation to one declared record, by a column of the parent (`account_id`): read through
    the request's loader, under the record's read rule, for all the parents of a plan's level at
    once, or as SQL on PostgreSQL (`to_one`). On the type:

        ACCOUNT = Link(AccountRow, "account_id")

        @strawberry.field(metadata=ACCOUNT.metadata)
        async def account(self, info: Info) -> AccountRef:
            return await ACCOUNT.one(self, info)
    """

    def __init__(self, model: type[Model], column: str, *, same_for_all: bool = False) -> None:
        async def load(parents: list[Any], ctx: RequestContext) -> list[Any | None]:
            return await records_of(ctx, model, [getattr(parent, column) for parent in parents])

        self.load = load
        # same_for_all: every member of the organization reads it alike (its users)
        self.metadata = batched(load, same_for_all=same_for_all, sql=to_one(model, column))

    async def one(self, parent: Any, info: Any) -> Any:
        return await one(self.load, parent, info)


def _maker(
    cls: type, model: type[Model], constants: dict[str, Any]
) -> tuple[Callable[[Any], Any], dict[str, str]]:
    """The function making the type's value of a row, and its plain fields' columns."""
    model_fields = model._meta.fields_map
    plain: list[tuple[str, str]] = []  # (attribute, row attribute), read in one attrgetter
    converted: list[tuple[str, str, Callable[[Any], Any]]] = []
    computed: list[tuple[str, Callable[[Any], Any]]] = []
    given_names: list[str] = []
    sources: dict[str, str] = {}
    for item in dataclasses.fields(cls):
        if not item.init:
            continue
        name, metadata = item.name, dict(item.metadata or {})
        if name in constants:
            continue
        if metadata.get(GIVEN):
            given_names.append(name)
            continue
        compute = metadata.get(DERIVED)
        if compute is not None:
            computed.append((name, (lambda row: row) if compute is _ROW else compute))
            continue
        source = metadata.get(SOURCE, name)
        if source not in model_fields and not _is_key(model, source):
            raise TypeError(f"{cls.__name__}.{name}: {model.__name__} has no {source!r}")
        convert = metadata.get(CONVERT)
        if convert is None:
            plain.append((name, source))
            if source in model_fields and not isinstance(
                model_fields[source], ForeignKeyFieldInstance
            ):
                sources[name] = source
        else:
            converted.append((name, source, convert))
    names = tuple(name for name, _ in plain)
    read = attrgetter(*(source for _, source in plain)) if plain else (lambda row: ())
    single = len(plain) == 1
    fixed = dict(constants)

    new = object.__new__

    def make(row: Any, **given: Any) -> Any:
        made: Any = new(cls)
        values = read(row)
        attributes = made.__dict__
        attributes.update(zip(names, (values,) if single else values, strict=True))
        for name, source, convert in converted:
            value = getattr(row, source)
            attributes[name] = None if value is None else convert(value)
        for name, compute in computed:
            attributes[name] = compute(row)
        attributes.update(fixed)
        if given_names:
            if set(given) != set(given_names):
                raise TypeError(f"{cls.__name__}.from_row takes {given_names}, not {list(given)}")
            attributes.update(given)
        return made

    return make, sources


def _is_key(model: type[Model], name: str) -> bool:
    """A foreign key's column (`account_id` of `account`)."""
    return name.endswith("_id") and name[:-3] in model._meta.fk_fields


def _export(declared: Record, columns: Sequence[str]) -> Export:
    """The export of a record: each model field named as the API names it (`amount_cents` as
    `amount`, a decimal string; a foreign key's column as a global id; booleans as booleans,
    whatever the database hands back)."""
    meta = declared.model._meta
    described: dict[str, tuple[str, Callable[[Any], Any] | None]] = {}
    for name in columns:
        convert: Callable[[Any], Any] | None = None
        api_name = _camel(name)
        if name.endswith("_cents"):
            convert, api_name = money, _camel(name[: -len("_cents")])
        elif _is_key(declared.model, name):
            # "models.Account": the type the API names it by (each model's type has its name)
            related = meta.fields_map[name[:-3]].model_name  # type: ignore[attr-defined]
            convert = reference(related.rsplit(".", 1)[-1])
        elif isinstance(meta.fields_map[name], BooleanField):
            convert = bool
        described[name] = (api_name, convert)
    return Export(declared.name, meta.db_table, described)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def exports() -> dict[str, Export]:
    """Every record's export, by its path name (`GET /export/<name>.ndjson`)."""
    return dict(item.export for item in RECORDS.values() if item.export)
