"""Users, the viewer, and the admin's user management."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import Enum

import strawberry
from strawberry import UNSET, relay

from models import Role
from models import User as UserRow
from resolvers import access
from resolvers import user as users
from resolvers.context import RequestContext
from schema.base import (
    Connection,
    Info,
    OrderDirection,
    connection,
    context,
    filter_values,
    ordering,
    page_request,
    pk_of,
    values_of,
)
from schema.records import Declared, Link, existing, record, record_of, records_of


async def users_of(ctx: RequestContext, ids: Sequence[int | None]) -> list[User | None]:
    """The users of `ids`, in order (None for a None id)."""
    return await records_of(ctx, UserRow, ids)


# Users every member of the organization reads alike: a live event's result can be shared.
OWNER = Link(UserRow, "owner_id", same_for_all=True)  # of accounts, contacts, deals
MANAGER = Link(UserRow, "manager_id", same_for_all=True)


@record(UserRow, read=access.USERS)
@strawberry.type(description="A person of the organization who uses the CRM.")
class User(relay.Node, Declared):
    id: relay.NodeID[int]
    email: str
    full_name: str
    role: Role
    is_active: bool = strawberry.field(description="Deactivated users cannot sign in.")
    created_at: datetime
    updated_at: datetime
    manager_id: strawberry.Private[int | None]

    @strawberry.field(
        description="The sales manager (or admin) this user reports to.",
        metadata=MANAGER.metadata,
    )
    async def manager(self, info: Info) -> User | None:
        return await MANAGER.one(self, info)


async def load_optional_user(info: Info, user_id: int | None) -> User | None:
    return await record_of(info, UserRow, user_id)


async def load_user(info: Info, user_id: int) -> User:
    return await existing(info, UserRow, user_id)  # type: ignore[no-any-return]


@strawberry.enum(description="What users can be sorted by.")
class UserOrderField(Enum):
    CREATED_AT = "CREATED_AT"
    NAME = "NAME"
    EMAIL = "EMAIL"


@strawberry.input(description="Sort order of a user list.")
class UserOrder:
    field: UserOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input(description="Filters on users; all given ones must match.")
class UserFilter:
    search: str | None = strawberry.field(default=None, description="Words in name or email.")
    roles: list[Role] | None = None
    is_active: bool | None = None
    manager_id: strawberry.ID | None = None
    updated_since: datetime | None = None


@strawberry.input(description="A new user of the viewer's organization (admins only).")
class CreateUserInput:
    email: str
    full_name: str
    password: str = strawberry.field(description="At least 10 characters.")
    role: Role = Role.SELLER
    manager_id: strawberry.ID | None = None


@strawberry.input(description="Changes to a user (admins only); omitted fields stay as they are.")
class UpdateUserInput:
    id: strawberry.ID
    email: str | None = UNSET
    full_name: str | None = UNSET
    role: Role | None = UNSET
    manager_id: strawberry.ID | None = UNSET
    is_active: bool | None = strawberry.field(
        default=UNSET, description="false deactivates the user and revokes their tokens."
    )


@strawberry.type
class UserQueries:
    @strawberry.field(description="The signed-in user.")
    async def viewer(self, info: Info) -> User:
        return User.from_row(context(info).require_viewer())

    @strawberry.field(description="The users of the viewer's organization.")
    async def users(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: UserFilter | None = None,
        order_by: UserOrder | None = None,
    ) -> Connection[User]:
        order, descending = ordering(order_by, "CREATED_AT")
        if order_by is None:
            descending = False
        page = await users.list_users(
            context(info),
            page_request(info, first, after, last, before),
            filter_values(filter, {"manager_id": ("filter.managerId", "User")}),
            order,
            descending,
        )
        return connection(page, User.from_row)


@strawberry.type
class UserMutations:
    @strawberry.mutation(description="Add a user to the viewer's organization (admins only).")
    async def create_user(self, info: Info, input: CreateUserInput) -> User:
        manager_id = (
            None if input.manager_id is None else pk_of(input.manager_id, "managerId", "User")
        )
        row = await users.create_user(
            context(info),
            email=input.email,
            full_name=input.full_name,
            password=input.password,
            role=input.role,
            manager_id=manager_id,
        )
        return User.from_row(row)

    @strawberry.mutation(
        description="Change a user's name, email, role, manager or active state (admins only)."
    )
    async def update_user(self, info: Info, input: UpdateUserInput) -> User:
        values = values_of(input, {"manager_id": ("managerId", "User")})
        user_id = pk_of(values.pop("id"), "id", "User")
        return User.from_row(await users.update_user(context(info), user_id, values))

    @strawberry.mutation(description="Change the viewer's own password.")
    async def change_password(self, info: Info, current_password: str, new_password: str) -> User:
        ctx = context(info)
        await users.change_password(ctx, current_password, new_password)
        return User.from_row(ctx.require_viewer())
