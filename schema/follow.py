"""What every followed record answers (leads, opportunities, accounts, contacts): its followers."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry import relay

from models import User as UserRow
from resolvers.context import RequestContext
from resolvers.deal_kinds import FOLLOWED, FollowedKind
from schema.base import Info, decode_id
from schema.engine.plans import batched, one
from schema.records import Declared, records_of
from schema.user import User

FOLLOWED_TYPES = tuple(FOLLOWED)


async def followers_of(records: list[Any], ctx: RequestContext) -> list[list[User]]:
    """The followers of records of one kind (a level of a plan is of one type)."""
    ids = await ctx.loaders.follower_ids(records[0].kind).load_many([row.id for row in records])
    users = iter(await records_of(ctx, UserRow, [user for of_record in ids for user in of_record]))
    return [
        [user for user in [next(users) for _ in of_record] if user is not None] for of_record in ids
    ]


async def followed_by_viewer(records: list[Any], ctx: RequestContext) -> list[bool]:
    viewer = ctx.require_viewer().id
    ids = await ctx.loaders.follower_ids(records[0].kind).load_many([row.id for row in records])
    return [viewer in of_record for of_record in ids]


@strawberry.interface(
    description="A record users follow: a lead, an opportunity, an account or a contact. Its "
    "followers are told of its changes and comments. Following a lead or an opportunity lets "
    "one read it; following an account or a contact grants nothing."
)
class Followable(relay.Node, Declared):
    id: relay.NodeID[int]
    kind: strawberry.Private[FollowedKind[Any]]

    @strawberry.field(
        description="Users told of every change, comment and development.",
        metadata=batched(followers_of, same_for_all=True),
    )
    async def followers(self, info: Info) -> list[User]:
        return await one(followers_of, self, info)

    @strawberry.field(
        description="Whether the viewer follows this record.",
        metadata=batched(followed_by_viewer),
    )
    async def is_followed_by_viewer(self, info: Info) -> bool:
        return await one(followed_by_viewer, self, info)


def followed_ref(value: strawberry.ID, field: str = "recordId") -> tuple[FollowedKind[Any], int]:
    """The kind and id of a followed record's global id."""
    type_name, pk = decode_id(value, field, *FOLLOWED_TYPES)
    return FOLLOWED[type_name], pk
