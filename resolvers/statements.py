"""The SQL of a plain queryset, built once per shape rather than by Tortoise on every request.

Tortoise turns a queryset into SQL through its query builder (resolving each Q, then pypika
rendering the tree) on every request: on the pipeline page that was about a seventh of the
server's CPU, for two statements (the page and its count) whose text is the same from one
request to the next; only their values change. So a queryset's statement is kept by its
*shape*: its model, ordering, selected fields and the structure of its filters, where each
integer value (ids, amounts, a limit) is a slot, and a value that changes the SQL itself (None,
a boolean, an enum member, the length of a list) is part of the shape.

A shape's statement is learnt by rendering a copy of the queryset whose integer values are
markers (distinct integers no row holds), through Tortoise itself, and reading where each marker
lands among the statement's parameters. It is kept only when every marker lands exactly once, no
marker is written into the SQL text, and the statement it gives for the request's own values is
the one Tortoise renders for them. A queryset with anything else (text, dates, expressions,
annotations, related rows, locks) is rendered by Tortoise as before.

A kept statement holds no value of anyone's and serves every organization whose request has
its shape. The cache holds at most `SHAPES_KEPT` shapes, least recently used dropped, and each
organization may have added at most `SHAPES_PER_ORGANIZATION` of those kept (`OWNER`, set from
the request's viewer; work outside a request counts as one owner): a client sending lists of
ever new lengths (each length is a shape) fills its own share, then its new shapes are rendered
by Tortoise, and it cannot push out the others' statements. A list longer than `LIST_SLOTS`
items is not shaped at all. A shape pushed out is learnt again (the cost without the cache,
never a wrong statement). Under test (`COMPARE`, the suite's `plans_compare`), every statement
taken from the cache is rendered by Tortoise as well, and a difference (of a value or of its
type) is recorded (`MISMATCHES`, failing the test) and the rendered one used.
"""

from __future__ import annotations

import copy
import logging
from collections import Counter, OrderedDict
from collections.abc import Hashable, Iterator
from contextvars import ContextVar
from enum import Enum
from typing import Any

from tortoise.expressions import Q, Subquery
from tortoise.queryset import AwaitableQuery, QuerySet, ValuesListQuery, ValuesQuery

from observability import STATEMENT_SHAPES

log = logging.getLogger("crm.statements")
KEPT, LEARNT, UNFIT, RENDERED, FULL = (
    STATEMENT_SHAPES.labels(outcome) for outcome in ("kept", "learnt", "unfit", "rendered", "full")
)

SHAPES_KEPT = 512
SHAPES_PER_ORGANIZATION = 64
LIST_SLOTS = 32  # a longer list is rendered by Tortoise (each length would be a shape)
# Who adds a shape: the request's organization (endpoint.py sets it with the viewer).
OWNER: ContextVar[int | None] = ContextVar("crm_statement_owner", default=None)
# Markers: integers far outside any id, amount or limit the API stores or accepts, each written
# once in a shape's copy, so that a parameter equal to one is the slot it marks.
_MARKER_BASE = -7_340_000_000_000_000
COMPARE = False  # under test: every cached statement is checked against Tortoise's
MISMATCHES: list[str] = []


class _Unshaped(Exception):
    """A queryset whose statement Tortoise renders each time."""


Template = tuple[str, tuple[int | None, ...], tuple[Any, ...]]  # sql, slot per param, constants


class Statements:
    """Statements by shape (least recently used dropped past `kept`, at most `per_owner` added
    by one owner); None for a shape found not to fit (rendered by Tortoise each time)."""

    def __init__(self, kept: int = SHAPES_KEPT, per_owner: int = SHAPES_PER_ORGANIZATION) -> None:
        self.kept = kept
        self.per_owner = per_owner
        self._shapes: OrderedDict[Hashable, Template | None] = OrderedDict()
        self._owners: dict[Hashable, int | None] = {}  # who added each kept shape
        self._held: Counter[int | None] = Counter()  # how many each owner added

    def sql(self, query: AwaitableQuery[Any]) -> tuple[str, list[Any]]:
        """The statement and parameters of `query` (a queryset not yet run)."""
        try:
            shape, values = _shape(query)
        except _Unshaped:
            RENDERED.inc()
            return render(query)
        if shape not in self._shapes:
            owner = OWNER.get()
            if self._held[owner] >= self.per_owner:
                FULL.inc()
                return render(query)
            LEARNT.inc()
            return self._learn(query, shape, values, owner)
        self._shapes.move_to_end(shape)
        found = self._shapes[shape]
        if found is None:
            UNFIT.inc()
            return render(query)
        KEPT.inc()
        sql, slots, constants = found
        params = [constants[i] if slot is None else values[slot] for i, slot in enumerate(slots)]
        if COMPARE:
            rendered = render(query)
            if _typed(rendered) != _typed((sql, params)):
                MISMATCHES.append(f"{shape!r}: {(sql, params)!r} != {rendered!r}")
                return rendered
        return sql, params

    def _learn(
        self, query: AwaitableQuery[Any], shape: Hashable, values: list[int], owner: int | None
    ) -> tuple[str, list[Any]]:
        rendered = render(query)
        template: Template | None = None
        try:
            markers = [_MARKER_BASE - i for i in range(len(values))]
            sql, params = render(_marked(query, iter(markers)))
            template = _template(sql, params, markers)
            if template is not None:
                slots, constants = template[1], template[2]
                mine = [constants[i] if s is None else values[s] for i, s in enumerate(slots)]
                if _typed((sql, mine)) != _typed(rendered):
                    template = None
        except Exception:  # a marker a field refuses (a short text column given an integer)
            template = None
        if template is None:
            log.debug("statement shape not kept: %r", shape)
        self._shapes[shape] = template
        self._owners[shape] = owner
        self._held[owner] += 1
        if len(self._shapes) > self.kept:
            dropped, _ = self._shapes.popitem(last=False)
            added_by = self._owners.pop(dropped)
            self._held[added_by] -= 1
            if not self._held[added_by]:
                del self._held[added_by]
        return rendered


STATEMENTS = Statements()


def sql_of(query: AwaitableQuery[Any]) -> tuple[str, list[Any]]:
    """The statement of a queryset, from the shape cache when it fits (see the module)."""
    return STATEMENTS.sql(query)


def _typed(statement: tuple[str, list[Any]]) -> tuple[str, list[tuple[type, Any]]]:
    """A statement with each parameter's type beside it (0 == False, and 1 == 1.0)."""
    sql, params = statement
    return sql, [(type(param), param) for param in params]


def render(query: AwaitableQuery[Any], *, for_write: bool = False) -> tuple[str, list[Any]]:
    """The statement Tortoise would send for `query` (its own building steps, which its
    `__await__` runs), built now."""
    query._choose_db_if_not_chosen(for_write)
    query._make_query()
    sql, params = query.query.get_parameterized_sql()
    return sql, list(params)


def _template(sql: str, params: list[Any], markers: list[int]) -> Template | None:
    """Where each marker lands among the parameters (None when one is not exactly once there,
    or written into the text)."""
    index = {marker: slot for slot, marker in enumerate(markers)}
    slots: list[int | None] = []
    constants: list[Any] = []
    seen: set[int] = set()
    for param in params:
        slot = index.get(param) if type(param) is int else None
        if slot is not None:
            if slot in seen:
                return None
            seen.add(slot)
        elif type(param) is int and param <= _MARKER_BASE + 1:
            return None  # a marker changed on its way (an expression over it): not a slot
        slots.append(slot)
        constants.append(None if slot is not None else param)
    if len(seen) != len(markers) or any(str(marker) in sql for marker in markers):
        return None
    return sql, tuple(slots), tuple(constants)


# Shapes: what decides a statement's text, with the integer values beside it in walking order.


def _shape(query: AwaitableQuery[Any]) -> tuple[Hashable, list[int]]:
    values: list[int] = []
    return _query_shape(query, values), values


def _query_shape(query: AwaitableQuery[Any], values: list[int]) -> Hashable:
    kind = type(query)
    db = query._db or query.model._meta.db
    common = (
        kind,
        query.model,
        db.connection_name,
        tuple(query._orderings),  # type: ignore[attr-defined]
        _limit(query._limit, values),  # type: ignore[attr-defined]
    )
    if query._annotations or query._custom_filters:
        raise _Unshaped
    if kind is QuerySet:
        plain: QuerySet[Any] = query  # type: ignore[assignment]
        if (
            plain._select_related
            or plain._prefetch_map
            or plain._prefetch_queries
            or plain._fields_for_select
            or plain._single
            or plain._group_bys
            or plain._select_for_update
            or plain._distinct
            or plain._having
            or plain._filter_kwargs
            or plain._offset is not None
            or plain._force_indexes
            or plain._use_indexes
            or plain.fields is not plain.model._meta.db_fields
        ):
            raise _Unshaped
        extra: Hashable = ()
    elif kind is ValuesListQuery or kind is ValuesQuery:
        values_query: Any = query
        if (
            values_query._single
            or values_query._distinct
            or values_query._group_bys
            or values_query._offset is not None
            or values_query._force_indexes
            or values_query._use_indexes
        ):
            raise _Unshaped
        extra = (
            (tuple(values_query._fields_for_select_list), values_query._flat)
            if kind is ValuesListQuery
            else tuple(values_query._fields_for_select.items())
        )
    else:
        raise _Unshaped
    return (*common, extra, tuple(_q_shape(q, values) for q in query._q_objects))


def _limit(limit: Any, values: list[int]) -> Hashable:
    if limit is None:
        return ("limit", None)
    if type(limit) is not int or limit < 0:
        raise _Unshaped  # a boolean or a float limit: as Tortoise renders it
    if limit == 0:
        return ("limit", 0)  # LIMIT 0 or none at all: Tortoise's tests differ by query class
    values.append(limit)
    return "limit"


def _q_shape(q: Q, values: list[int]) -> Hashable:
    filters = tuple((key, _value_shape(key, value, values)) for key, value in q.filters.items())
    children = tuple(_q_shape(child, values) for child in q.children)
    return (q.join_type, q._is_negated, filters, children)


def _value_shape(key: str, value: Any, values: list[int]) -> Hashable:
    kind = type(value)
    if kind is int:
        if key.endswith("isnull"):  # its truth decides the text
            return ("const", bool(value))
        values.append(value)
        return "int"
    if value is None or kind is bool or isinstance(value, Enum):
        return ("const", kind, value)
    if kind is list or kind is tuple:
        if len(value) > LIST_SLOTS or not all(type(item) is int for item in value):
            raise _Unshaped
        values.extend(value)
        return ("ints", len(value))
    if kind is Subquery:
        return ("sub", _query_shape(value.query, values))
    raise _Unshaped


# The copy of a queryset with markers for its integer values, walked in the same order.


def _marked(query: AwaitableQuery[Any], markers: Iterator[int]) -> Any:
    copied: Any = query._clone() if type(query) is QuerySet else copy.copy(query)  # type: ignore[attr-defined]
    if type(query._limit) is int and query._limit > 0:  # type: ignore[attr-defined]
        copied._limit = next(markers)
    copied._q_objects = [_marked_q(q, markers) for q in query._q_objects]
    return copied


def _marked_q(q: Q, markers: Iterator[int]) -> Q:
    filters = {key: _marked_value(key, value, markers) for key, value in q.filters.items()}
    marked = Q(*(_marked_q(child, markers) for child in q.children), join_type=q.join_type)
    marked.filters = filters
    marked._is_negated = q._is_negated
    return marked


def _marked_value(key: str, value: Any, markers: Iterator[int]) -> Any:
    kind = type(value)
    if kind is int:
        return value if key.endswith("isnull") else next(markers)
    if kind is list or kind is tuple:
        return kind(next(markers) for _ in value)
    if kind is Subquery:
        return Subquery(_marked(value.query, markers))
    return value
