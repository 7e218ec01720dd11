"""Accounts: the client companies."""

from __future__ import annotations

from datetime import date, datetime
from enum import Enum

import strawberry
from strawberry import UNSET, relay

from models import Account as AccountRow
from resolvers import access, timeline
from resolvers import account as accounts
from resolvers.deal_kinds import ACCOUNT
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
from schema.contact import Contact, ContactFilter, ContactOrder, contacts_connection
from schema.event import HISTORY_HELP, Event, history_of
from schema.follow import Followable
from schema.opportunity import (
    Opportunity,
    OpportunityFilter,
    OpportunityOrder,
    opportunities_connection,
)
from schema.product import BILLING_HELP, Billing, Product, billing_of, products_used_by
from schema.records import record, record_of
from schema.timeline import TimelineConnection, timeline_connection
from schema.user import OWNER, User

ACCOUNT_EXPORT = (
    "name",
    "industry",
    "website",
    "country",
    "region",
    "city",
    "created_at",
    "updated_at",
    "owner_id",
)


@record(
    AccountRow,
    read=access.ACCOUNTS,
    constants={"kind": ACCOUNT},
    export=("accounts", ACCOUNT_EXPORT),
)
@strawberry.type(description="A client company.")
class Account(Followable):
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

    @strawberry.field(description="The products on its won opportunities.")
    async def products_used(self, info: Info) -> list[Product]:
        return await products_used_by(info, "account_id", self.id)

    @strawberry.field(description=BILLING_HELP)
    async def billing(
        self, info: Info, since: date | None = None, until: date | None = None
    ) -> list[Billing]:
        return await billing_of(info, "account_id", self.id, since, until)

    @strawberry.field(description="The user responsible for the account.", metadata=OWNER.metadata)
    async def owner(self, info: Info) -> User:
        return await OWNER.one(self, info)  # type: ignore[no-any-return]

    @strawberry.field(description=HISTORY_HELP)
    async def history(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Event]:
        return await history_of(info, "Account", self.id, first, after, last, before)

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
    ) -> TimelineConnection:
        sources = await timeline.account_sources(context(info), self.id)
        page = page_request(info, first, after, None, None)
        return await timeline_connection(sources, page, include)

    @strawberry.field(description="The account's contacts.")
    async def contacts(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: ContactFilter | None = None,
        order_by: ContactOrder | None = None,
    ) -> Connection[Contact]:
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
        filter: OpportunityFilter | None = None,
        order_by: OpportunityOrder | None = None,
    ) -> Connection[Opportunity]:
        return await opportunities_connection(
            info, first, after, last, before, filter, order_by, account_id=self.id
        )


async def load_account(info: Info, account_id: int | None) -> Account | None:
    return await record_of(info, AccountRow, account_id)


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
            page_request(info, first, after, last, before),
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
