"""Parsed and validated documents, kept by their text.

Validating the pipeline query takes about 4 ms on this machine (graphql-core compares the fields
of every selection pairwise), more than running it on its plan. A document that parsed and
passed every validation rule is kept, by query text, per schema: the next request with the same
text reuses it and skips parsing and validation. Only documents that passed are kept, so a text
that is refused is parsed and refused again each time, with the same errors. What depends on
the request rather than on the text (variables, cost, scopes, rate limits, the fragment budget)
runs for every request as before.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Any, Generic, TypeVar
from weakref import WeakKeyDictionary

from graphql import DocumentNode
from strawberry.extensions import SchemaExtension

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DOCUMENTS_PER_SCHEMA = 256
LONGEST_KEPT = 20_000  # characters: longer texts are parsed each time


class Lru(Generic[K, V]):
    """A dict that keeps its `size` most recently used entries."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[K, V] = OrderedDict()

    def __contains__(self, key: K) -> bool:
        return key in self._entries

    def get(self, key: K) -> V | None:
        if key not in self._entries:
            return None
        self._entries.move_to_end(key)
        return self._entries[key]

    def discard(self, key: K) -> None:
        self._entries.pop(key, None)

    def put(self, key: K, value: V) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)


def per_schema(caches: WeakKeyDictionary[Any, Lru[K, V]], schema: Any, size: int) -> Lru[K, V]:
    """A schema's own cache in `caches` (made on first use, gone with the schema)."""
    cache = caches.get(schema)
    if cache is None:
        cache = caches[schema] = Lru(size)
    return cache


_documents: WeakKeyDictionary[Any, Lru[str, DocumentNode]] = WeakKeyDictionary()


class DocumentCache(SchemaExtension):
    """Reuse the parsed document of a query text that validated before."""

    reused = False

    def _cache(self) -> Lru[str, DocumentNode]:
        return per_schema(_documents, self.execution_context.schema, DOCUMENTS_PER_SCHEMA)

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query and context.graphql_document is None:
            document = self._cache().get(context.query)
            if document is not None:
                context.graphql_document = document  # Strawberry then skips parsing
                self.reused = True
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if self.reused and context.pre_execution_errors is None:
            context.pre_execution_errors = []  # it passed validation when it was kept
        yield
        query = context.query
        if (
            not self.reused
            and query
            and len(query) <= LONGEST_KEPT
            and context.pre_execution_errors == []
            and context.graphql_document is not None
        ):
            self._cache().put(query, context.graphql_document)
