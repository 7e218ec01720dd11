"""node(id:) and nodes(ids:): any record by its global id, within the viewer's organization."""

from __future__ import annotations

import strawberry
from strawberry import relay

from resolvers.errors import bad_input, not_found, readable
from schema.base import Info, context, decode_id
from schema.records import RECORDS

MAX_NODES = 100


async def resolve_node(info: Info, value: str, field: str) -> relay.Node:
    """The record of a global id, found by its declaration's read rule (schema/records.py): a
    record out of the viewer's reach answers exactly like a missing one."""
    ctx = context(info)
    ctx.require_viewer()
    type_name, pk = decode_id(value, field)
    declared = RECORDS.get(type_name)
    if declared is None or not declared.by_id:
        raise bad_input(field, f"{type_name} is not a type of this API.")
    found = await declared.node(ctx, pk)
    if found is None:
        raise not_found(readable(type_name), field)
    return found  # type: ignore[no-any-return]


@strawberry.type
class NodeQueries:
    @strawberry.field(description="Any record by its global id (NOT_FOUND outside your reach).")
    async def node(self, info: Info, id: strawberry.ID) -> relay.Node:
        return await resolve_node(info, id, "id")

    @strawberry.field(
        description=f"Records by their global ids, in order (at most {MAX_NODES}); each one "
        "out of reach is null with a NOT_FOUND error at its index."
    )
    async def nodes(self, info: Info, ids: list[strawberry.ID]) -> list[relay.Node | None]:
        context(info).require_viewer()
        if len(ids) > MAX_NODES:
            raise bad_input("ids", f"At most {MAX_NODES} ids at a time.")
        return [resolve_node(info, value, f"ids.{index}") for index, value in enumerate(ids)]  # type: ignore[misc]
