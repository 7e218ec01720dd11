"""What a delivery carries: one entry of the `changes` query, rendered by the query itself.

The delivery loop runs `changes(since: <the endpoint's cursor>, types: <its types>)` through the
schema, as an admin of the endpoint's organization would, with the selection below: each
delivery's body is one of its `nodes`, exactly as a partner pulling the feed with this
selection gets it. The selection is every field of each record type that is a scalar or an enum,
takes no argument and does not depend on the reader (`isFollowedByViewer`), read from the schema
(`selection`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import strawberry
from graphql import GraphQLEnumType, GraphQLObjectType, GraphQLScalarType, get_named_type

from config import Settings
from models import Role, User
from resolvers.context import RequestContext
from resolvers.errors import ApiError, ErrorCode

RECORD_TYPES = ("Account", "Contact", "Lead", "Opportunity", "Activity")


def selection(schema: strawberry.Schema) -> str:
    """The `changes` document a delivery renders (the same for every endpoint).

    A field whose type differs from that of a same-named field of a type before it (Lead's
    `title: String!` after Contact's `title: String`) cannot share its response name (GraphQL's
    overlapping fields rule): it is aliased `<field><Type>` (`titleLead`)."""
    fragments = []
    seen: dict[str, str] = {}  # field name -> its type, as first selected
    for name in RECORD_TYPES:
        graphql_type = schema._schema.get_type(name)
        assert isinstance(graphql_type, GraphQLObjectType)
        selected = []
        for field_name, field in graphql_type.fields.items():
            if (
                field.args
                or "viewer" in field_name.lower()  # the same for every reader, or left out
                or not isinstance(get_named_type(field.type), GraphQLScalarType | GraphQLEnumType)
            ):
                continue
            shown = str(field.type)
            if seen.setdefault(field_name, shown) != shown:
                selected.append(f"{field_name}{name}: {field_name}")
            else:
                selected.append(field_name)
        fragments.append(f"... on {name} {{ {' '.join(selected)} }}")
    return (
        "query WebhookChanges($since: String, $types: [String!], $first: Int!) {"
        " changes(since: $since, types: $types, first: $first) {"
        " nodes { cursor op recordType recordId changedAt link"
        f" node {{ __typename id {' '.join(fragments)} }} }}"
        " pageInfo { hasNextPage endCursor } } }"
    )


@dataclass(frozen=True)
class Rendered:
    entries: list[dict[str, Any]]  # each one delivery's body
    end_cursor: str
    has_next_page: bool


class FeedError(Exception):
    """The feed refused the endpoint's cursor (`code`: RESYNC_REQUIRED, BAD_USER_INPUT...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Renderer:
    def __init__(self, schema: strawberry.Schema, settings: Settings) -> None:
        self.schema = schema
        self.settings = settings  # the app's (server.create_app), as its requests have
        self.document = selection(schema)

    async def render(
        self, organization_id: int, since: str, types: list[str], first: int
    ) -> Rendered:
        # The organization's admin, as the feed requires; made here, never saved, so that the
        # delivery does not depend on which admins the organization has now.
        viewer = User(id=0, organization_id=organization_id, role=Role.ADMIN, is_active=True)
        ctx = RequestContext(
            request_id=f"webhooks-{organization_id}", settings=self.settings, viewer=viewer
        )
        result = await self.schema.execute(
            self.document,
            variable_values={"since": since, "types": types or None, "first": first},
            context_value=ctx,
            operation_name="WebhookChanges",
        )
        if result.errors:
            error = result.errors[0]
            code = (error.extensions or {}).get("code", ErrorCode.INTERNAL_SERVER_ERROR.value)
            original = error.original_error
            if original is not None and not isinstance(original, ApiError):
                raise original
            raise FeedError(str(code), error.message)
        assert result.data is not None
        page = result.data["changes"]
        return Rendered(
            page["nodes"], page["pageInfo"]["endCursor"], page["pageInfo"]["hasNextPage"]
        )
