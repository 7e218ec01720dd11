"""Accounts: the client companies."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry import UNSET, relay

from models import Account as AccountRow
from models import User as UserRow
from resolvers import account as accounts
from resolvers.context import RequestContext
from resolvers.timeline import EntryKind
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
from schema.plans import batched, one, related
from schema.product import BILLING_HELP
from schema.projections import table, to_one
from schema.user import User, owners_of

if TYPE_CHECKING:
    from schema.contact import Contact, ContactFilter, ContactOrder
    from schema.opportunity import Opportunity, OpportunityFilter, OpportunityOrder
    from schema.product import Billing, Product
    from schema.timeline import TimelineConnection


@strawberry.type(description="A client company.")
class Account(relay.Node):
    id: relay.NodeID[int]
    name: str
    industry: str | None
    website: str | None
    country: str | None
    region: str | None
    city: str | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = strawberry.field(
        description="Set once the account is deleted (deleted accounts are not listed)."
    )
    owner_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: AccountRow) -> Account:
        return cls(
            id=row.id,
            name=row.name,
            industry=row.industry,
            website=row.website,
            country=row.country,
            region=row.region,
            city=row.city,
            created_at=row.created_at,
            updated_at=row.updated_at,
            deleted_at=row.deleted_at,
            owner_id=row.owner_id,
        )

    @strawberry.field(description="The products on its won opportunities.")
    async def products_used(
        self, info: Info
    ) -> list[Annotated[Product, strawberry.lazy("schema.product")]]:
        from schema.product import products_used_by

        return await products_used_by(info, "account_id", self.id)

    @strawberry.field(description=BILLING_HELP)
    async def billing(
        self, info: Info, since: date | None = None, until: date | None = None
    ) -> list[Annotated[Billing, strawberry.lazy("schema.product")]]:
        from schema.product import billing_of

        return await billing_of(info, "account_id", self.id, since, until)

    @strawberry.field(
        description="The user responsible for the account.",
        metadata=batched(owners_of, same_for_all=True, sql=to_one(UserRow, "owner_id")),
    )
    async def owner(self, info: Info) -> User:
        return await one(owners_of, self, info)

    @strawberry.field(
        description="Its activities (its own, its contacts' and its deals'), and the comments and "
        "changes of its leads and opportunities the viewer may read, newest first."
    )
    async def timeline(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        include: list[EntryKind] | None = None,
    ) -> Annotated[TimelineConnection, strawberry.lazy("schema.timeline")]:
        from resolvers import timeline
        from schema.timeline import timeline_connection

        sources = await timeline.account_sources(context(info), self.id)
        return await timeline_connection(sources, first, after, include)

    @strawberry.field(description="The account's contacts.")
    async def contacts(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: Annotated[ContactFilter, strawberry.lazy("schema.contact")] | None = None,
        order_by: Annotated[ContactOrder, strawberry.lazy("schema.contact")] | None = None,
    ) -> Connection[Annotated[Contact, strawberry.lazy("schema.contact")]]:
        from schema.contact import contacts_connection

        return await contacts_connection(
            info, first, after, last, before, filter, order_by, account_id=self.id
        )

    @strawberry.field(description="The account's opportunities that the viewer may read.")
    async def opportunities(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: Annotated[OpportunityFilter, strawberry.lazy("schema.opportunity")] | None = None,
        order_by: Annotated[OpportunityOrder, strawberry.lazy("schema.opportunity")] | None = None,
    ) -> Connection[Annotated[Opportunity, strawberry.lazy("schema.opportunity")]]:
        from schema.opportunity import opportunities_connection

        return await opportunities_connection(
            info, first, after, last, before, filter, order_by, account_id=self.id
        )


table(Account, AccountRow, columns=("name", "industry", "website", "country", "region", "city"))


async def accounts_of(ctx: RequestContext, ids: Sequence[int | None]) -> list[Account | None]:
    """The live accounts of `ids`, in order (None for a None id or a deleted account)."""
    return await related(ctx.loaders.account, ids, Account.from_row)


async def accounts_of_records(records: list[Any], ctx: RequestContext) -> list[Account | None]:
    """The accounts of records with an account_id (contacts, leads, opportunities)."""
    return await accounts_of(ctx, [record.account_id for record in records])


async def load_account(info: Info, account_id: int | None) -> Account | None:
    return (await accounts_of(context(info), [account_id]))[0]


@strawberry.enum(description="What accounts can be sorted by.")
class AccountOrderField(Enum):
    CREATED_AT = "CREATED_AT"
    UPDATED_AT = "UPDATED_AT"
    NAME = "NAME"


@strawberry.input(description="Sort order of an account list.")
class AccountOrder:
    field: AccountOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input(description="Filters on accounts; all given ones must match.")
class AccountFilter:
    search: str | None = strawberry.field(default=None, description="Words in name or website.")
    owner_ids: list[strawberry.ID] | None = None
    industry: str | None = None
    country: str | None = None
    region: str | None = None
    city: str | None = None
    updated_since: datetime | None = strawberry.field(
        default=None, description="Only accounts changed at or after this time."
    )


@strawberry.input(description="A new account. The owner defaults to the viewer.")
class CreateAccountInput:
    name: str
    industry: str | None = None
    website: str | None = None
    country: str | None = None
    region: str | None = None
    city: str | None = None
    owner_id: strawberry.ID | None = None


@strawberry.input(description="Changes to an account; omitted fields stay as they are.")
class UpdateAccountInput:
    id: strawberry.ID
    name: str | None = UNSET
    industry: str | None = UNSET
    website: str | None = UNSET
    country: str | None = UNSET
    region: str | None = UNSET
    city: str | None = UNSET
    owner_id: strawberry.ID | None = UNSET


OWNER_IDS = {"owner_id": ("ownerId", "User")}


@strawberry.type
class AccountQueries:
    @strawberry.field(description="The organization's accounts (everyone in it reads them).")
    async def accounts(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: AccountFilter | None = None,
        order_by: AccountOrder | None = None,
    ) -> Connection[Account]:
        order, descending = ordering(order_by, "CREATED_AT")
        page = await accounts.list_accounts(
            context(info),
            page_request(first, after, last, before),
            filter_values(filter, {"owner_ids": ("filter.ownerIds", "User")}),
            order,
            descending,
        )
        return connection(page, Account.from_row)


@strawberry.type
class AccountMutations:
    @strawberry.mutation(description="Create an account.")
    async def create_account(self, info: Info, input: CreateAccountInput) -> Account:
        row = await accounts.create_account(context(info), values_of(input, OWNER_IDS))
        return Account.from_row(row)

    @strawberry.mutation(description="Change an account (admins, its owner, the owner's managers).")
    async def update_account(self, info: Info, input: UpdateAccountInput) -> Account:
        values = values_of(input, OWNER_IDS)
        account_id = pk_of(values.pop("id"), "id", "Account")
        return Account.from_row(await accounts.update_account(context(info), account_id, values))

    @strawberry.mutation(
        description="Delete an account that has no live contacts, leads or opportunities. "
        "It is kept with a deletion time so that syncing partners learn of it."
    )
    async def delete_account(self, info: Info, id: strawberry.ID) -> Account:
        row = await accounts.delete_account(context(info), pk_of(id, "id", "Account"))
        return Account.from_row(row)
