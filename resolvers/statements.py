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

The kept statements are the same for every organization: a shape holds no value of anyone's,
so `SHAPES_KEPT` bounds the cache for all of them, and a shape pushed out is rendered again
(the cost without the cache, never a wrong statement). Under test (`COMPARE`, the suite's
`plans_compare`), every statement taken from the cache is rendered by Tortoise as well, and a
difference is recorded (`MISMATCHES`, failing the test) and the rendered one used.
"""

from __future__ import annotations

import copy
import itertools
import logging
from collections import OrderedDict
from collections.abc import Hashable
from enum import Enum
from typing import Any

from tortoise.expressions import Q, Subquery
from tortoise.queryset import AwaitableQuery, QuerySet, ValuesListQuery, ValuesQuery

from observability import STATEMENT_SHAPES

log = logging.getLogger("crm.statements")
KEPT, LEARNT, UNFIT, RENDERED = (
    STATEMENT_SHAPES.labels(outcome) for outcome in ("kept", "learnt", "unfit", "rendered")
)

SHAPES_KEPT = 512
# Markers: integers far outside any id, amount or limit the API stores or accepts, each written
# once in a shape's copy, so that a parameter equal to one is the slot it marks.
_MARKER_BASE = -7_340_000_000_000_000
COMPARE = False  # under test: every cached statement is checked against Tortoise's
MISMATCHES: list[str] = []


class _Unshaped(Exception):
    """A queryset whose statement Tortoise renders each time."""


Template = tuple[str, tuple[int | None, ...], tuple[Any, ...]]  # sql, slot per param, constants


class Statements:
    """Statements by shape (least recently used dropped past SHAPES_KEPT); None for a shape
    found not to fit (rendered by Tortoise each time)."""

    def __init__(self, kept: int = SHAPES_KEPT) -> None:
        self.kept = kept
        self._shapes: OrderedDict[Hashable, Template | None] = OrderedDict()

    def sql(self, query: AwaitableQuery[Any]) -> tuple[str, list[Any]]:
        """The statement and parameters of `query` (a queryset not yet run)."""
        try:
            shape, values = _shape(query)
        except _Unshaped:
            RENDERED.inc()
            return _render(query)
        if shape not in self._shapes:
            LEARNT.inc()
            return self._learn(query, shape, values)
        self._shapes.move_to_end(shape)
        found = self._shapes[shape]
        if found is None:
            UNFIT.inc()
            return _render(query)
        KEPT.inc()
        sql, slots, constants = found
        params = [constants[i] if slot is None else values[slot] for i, slot in enumerate(slots)]
        if COMPARE:
            rendered = _render(query)
            if rendered != (sql, params):
                MISMATCHES.append(f"{shape!r}: {(sql, params)!r} != {rendered!r}")
                return rendered
        return sql, params

    def _learn(
        self, query: AwaitableQuery[Any], shape: Hashable, values: list[int]
    ) -> tuple[str, list[Any]]:
        rendered = _render(query)
        template: Template | None = None
        try:
            markers = [_MARKER_BASE - i for i in range(len(values))]
            sql, params = _render(_marked(query, iter(markers)))
            template = _template(sql, params, markers)
            if template is not None:
                slots, constants = template[1], template[2]
                mine = [constants[i] if s is None else values[s] for i, s in enumerate(slots)]
                if (sql, mine) != rendered:
                    template = None
        except _Unshaped:
            template = None
        if template is None:
            log.debug("statement shape not kept: %r", shape)
        self._shapes[shape] = template
        if len(self._shapes) > self.kept:
            self._shapes.popitem(last=False)
        return rendered


STATEMENTS = Statements()


def sql_of(query: AwaitableQuery[Any]) -> tuple[str, list[Any]]:
    """The statement of a queryset, from the shape cache when it fits (see the module)."""
    return STATEMENTS.sql(query)


def _render(query: AwaitableQuery[Any]) -> tuple[str, list[Any]]:
    query._choose_db_if_not_chosen()
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
    if query._annotations or query._custom_filters or query._joined_tables:
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
    if limit is None or limit == 0:
        return ("limit", limit)  # no LIMIT clause (Tortoise's tests differ by query class)
    if type(limit) is not int or limit < 0:
        raise _Unshaped
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
        if not all(type(item) is int for item in value):
            raise _Unshaped
        values.extend(value)
        return ("ints", len(value))
    if kind is Subquery:
        return ("sub", _query_shape(value.query, values))
    raise _Unshaped


# The copy of a queryset with markers for its integer values, walked in the same order.


def _marked(query: AwaitableQuery[Any], markers: itertools.chain[int] | Any) -> Any:
    copied: Any = query._clone() if type(query) is QuerySet else copy.copy(query)  # type: ignore[attr-defined]
    if type(query._limit) is int and query._limit > 0:  # type: ignore[attr-defined]
        copied._limit = next(markers)
    copied._q_objects = [_marked_q(q, markers) for q in query._q_objects]
    return copied


def _marked_q(q: Q, markers: Any) -> Q:
    filters = {key: _marked_value(key, value, markers) for key, value in q.filters.items()}
    marked = Q(*(_marked_q(child, markers) for child in q.children), join_type=q.join_type)
    marked.filters = filters
    marked._is_negated = q._is_negated
    return marked


def _marked_value(key: str, value: Any, markers: Any) -> Any:
    kind = type(value)
    if kind is int:
        return value if key.endswith("isnull") else next(markers)
    if kind is list or kind is tuple:
        return kind(next(markers) for _ in value)
    if kind is Subquery:
        return Subquery(_marked(value.query, markers))
    return value
