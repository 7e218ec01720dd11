"""Partners: API keys, and the change feed they sync from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from graphql import ExecutionResult, GraphQLError, OperationType
from graphql.language import (
    FieldNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionSetNode,
)
from strawberry import relay
from strawberry.extensions import SchemaExtension
from strawberry.scalars import JSON

from models import ApiKey as ApiKeyRow
from models import ApiKeyScope
from resolvers import api_key as api_keys
from resolvers import sync
from resolvers.context import RequestContext
from resolvers.errors import ErrorCode
from resolvers.events import global_id
from schema.base import Info, context, pk_of
from schema.engine.cost import fragments_of, operation_of
from schema.records import BY_MODEL, Declared, column, record
from schema.user import User, load_user


@record(ApiKeyRow, read=None, node=False)
@strawberry.type(description="A key a partner's integration signs in with (admins manage them).")
class ApiKey(relay.Node, Declared):
    id: relay.NodeID[int]
    name: str
    prefix: str = strawberry.field(description="The start of the secret, to recognize the key.")
    scopes: list[ApiKeyScope] = column(convert=lambda scopes: [ApiKeyScope(s) for s in scopes])
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = strawberry.field(description="To the minute.")
    revoked_at: datetime | None
    created_by_id: strawberry.Private[int]

    @strawberry.field(description="The admin it acts for.")
    async def created_by(self, info: Info) -> User:
        return await load_user(info, self.created_by_id)


@strawberry.type(description="A new key and its secret, which is shown this once.")
class CreatedApiKey:
    api_key: ApiKey
    secret: str = strawberry.field(
        description="Send it as `Authorization: Bearer <secret>`. Only its digest is kept."
    )


@strawberry.input(description="A new API key.")
class CreateApiKeyInput:
    name: str
    scopes: list[ApiKeyScope] = strawberry.field(
        default_factory=list,
        description="READ is always granted; WRITE opens every mutation a key may run, "
        "WRITE_<AREA> those of one area.",
    )
    expires_at: datetime | None = None


@strawberry.enum(description="UPSERT: the record exists now as `node`. DELETE: a tombstone.")
class ChangeOp(Enum):
    UPSERT = "UPSERT"
    DELETE = "DELETE"


@strawberry.type(description="One change of the feed.")
class Change:
    cursor: str = strawberry.field(description="Resume after this change with since: cursor.")
    op: ChangeOp
    record_type: str = strawberry.field(
        description="Account, Contact, Lead, Opportunity, Activity, LeadParticipant, "
        "OpportunityParticipant, LeadFollower or OpportunityFollower."
    )
    record_id: strawberry.ID = strawberry.field(description="The record's global id.")
    changed_at: datetime | None = strawberry.field(
        description="When it changed (in the snapshot phase: when the record last changed)."
    )
    node: relay.Node | None = strawberry.field(
        description="The record as it is now: null for a DELETE, for links, and for a record "
        "deleted since (its DELETE follows)."
    )
    link: JSON | None = strawberry.field(
        description="For participants and followers: {recordId, contactId | userId}."
    )


@strawberry.type(description="Whether more changes are ready, and where to resume.")
class ChangePageInfo:
    has_next_page: bool
    end_cursor: str = strawberry.field(
        description="Store it; pass it as `since` next time (also when the page is empty)."
    )


@strawberry.type(description="A page of the change feed, in commit order.")
class ChangeConnection:
    nodes: list[Change]
    page_info: ChangePageInfo


_LINK_ENDS = {"contact_id": ("contactId", "Contact"), "user_id": ("userId", "User")}


def _node(entry: sync.Entry) -> Any:
    """The record of an upsert, as the API shows it (links have none: their ends are `link`)."""
    found = None if entry.row is None else BY_MODEL.get(type(entry.row))
    return None if found is None or not found.by_id else found.make(entry.row)


def _link(entry: sync.Entry) -> Any:
    if entry.data is None:
        return None
    parent = "Lead" if entry.record_type.startswith("Lead") else "Opportunity"
    shown: dict[str, Any] = {"recordId": global_id(parent, entry.data["record_id"])}
    for end, (field, type_name) in _LINK_ENDS.items():
        if entry.data.get(end) is not None:
            shown[field] = global_id(type_name, entry.data[end])
    return JSON(shown)


@strawberry.type
class SyncQueries:
    @strawberry.field(
        description="Every upsert and deletion of accounts, contacts, leads, opportunities, "
        "activities, participants and followers, in commit order, exactly once from a cursor. "
        "Without `since`: every live record first, then the changes made meanwhile. A cursor "
        "older than the retention (SYNC_RETENTION_DAYS) answers RESYNC_REQUIRED. Admins and "
        "their API keys."
    )
    async def changes(
        self,
        info: Info,
        since: str | None = None,
        types: list[str] | None = None,
        first: int = 100,
    ) -> ChangeConnection:
        ctx = context(info)
        # A partner's key pulls pages as large as its lists; a signed-in admin, 100.
        limit = ctx.page_bounds.largest if ctx.api_key is not None else 100
        page = await sync.changes(ctx, since, types, first, limit)
        nodes = [
            Change(
                cursor=entry.cursor,
                op=ChangeOp(entry.op),
                record_type=entry.record_type,
                record_id=strawberry.ID(global_id(entry.record_type, entry.record_id) or ""),
                changed_at=entry.changed_at,
                node=_node(entry),
                link=_link(entry),
            )
            for entry in page.entries
        ]
        return ChangeConnection(
            nodes=nodes,
            page_info=ChangePageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
        )

    @strawberry.field(description="The organization's API keys, newest first (admins).")
    async def api_keys(self, info: Info) -> list[ApiKey]:
        return [ApiKey.from_row(row) for row in await api_keys.list_keys(context(info))]


@strawberry.type
class ApiKeyMutations:
    @strawberry.mutation(
        description="Create an API key (admins, signed in as themselves). The secret is in the "
        "answer only."
    )
    async def create_api_key(self, info: Info, input: CreateApiKeyInput) -> CreatedApiKey:
        values = {"name": input.name, "scopes": input.scopes, "expires_at": input.expires_at}
        row, secret = await api_keys.create_key(context(info), values)
        return CreatedApiKey(api_key=ApiKey.from_row(row), secret=secret)

    @strawberry.mutation(description="Revoke an API key: it stops working at once.")
    async def revoke_api_key(self, info: Info, id: strawberry.ID) -> ApiKey:
        row = await api_keys.revoke_key(context(info), pk_of(id, "id", "ApiKey"))
        return ApiKey.from_row(row)


class ApiKeyScopes(SchemaExtension):
    """A key runs the mutations its scopes open, and nothing else: refused before execution."""

    async def on_execute(self) -> AsyncIterator[None]:
        ctx = self.execution_context.context
        key = ctx.api_key if isinstance(ctx, RequestContext) else None
        document = self.execution_context.graphql_document
        name = self.execution_context.operation_name
        operation = operation_of(document, name) if document else None
        if key is not None and operation is not None:
            if operation.operation == OperationType.SUBSCRIPTION:
                self._refuse("API keys pull data over HTTP: subscriptions take a session token.")
            elif operation.operation == OperationType.MUTATION:
                for name in self._root_fields(operation.selection_set):
                    if not api_keys.allows(key.scopes, name):
                        self._refuse(f"This API key's scopes do not allow {name}.")
                        break
        yield

    def _root_fields(self, selections: SelectionSetNode) -> list[str]:
        document = self.execution_context.graphql_document
        fragments = fragments_of(document) if document else {}
        names: list[str] = []
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                names.append(selection.name.value)
            elif isinstance(selection, InlineFragmentNode):
                names += self._root_fields(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value in fragments:
                names += self._root_fields(fragments[selection.name.value].selection_set)
        return names

    def _refuse(self, message: str) -> None:
        error = GraphQLError(message, extensions={"code": ErrorCode.FORBIDDEN.value})
        self.execution_context.result = ExecutionResult(data=None, errors=[error])
