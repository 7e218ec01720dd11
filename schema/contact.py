"""Contacts: people at the accounts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry import UNSET, relay

from models import Account as AccountRow
from models import Contact as ContactRow
from models import LifecycleStage
from resolvers import access, timeline
from resolvers import contact as contacts
from resolvers.context import RequestContext
from resolvers.deal_kinds import CONTACT
from resolvers.lifecycle import list_changes
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
from schema.engine.plans import batched, one
from schema.engine.projections import sql_field
from schema.event import HISTORY_HELP, Event, history_of
from schema.follow import Followable
from schema.lifecycle import LifecycleChange
from schema.product import BILLING_HELP, Billing, Product, billing_of, products_used_by
from schema.records import Link, record, record_of, records_of
from schema.timeline import TimelineConnection, timeline_connection
from schema.user import OWNER, User

if TYPE_CHECKING:
    from schema.account import Account

AccountRef = Annotated["Account", strawberry.lazy("schema.account")]


ACCOUNT = Link(AccountRow, "account_id")


async def _tags(people: list[Contact], ctx: RequestContext) -> list[list[str]]:
    return await ctx.loaders.tags.load_many([contact.id for contact in people])


CONTACT_EXPORT = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "title",
    "account_id",
    "lifecycle_stage",
    "do_not_contact",
    "created_at",
    "updated_at",
    "owner_id",
)


@record(
    ContactRow,
    read=access.CONTACTS,
    constants={"kind": CONTACT},
    export=("contacts", CONTACT_EXPORT),
)
@strawberry.type(description="A person at an account.")
class Contact(Followable):
    id: relay.NodeID[int]
    first_name: str
    last_name: str
    email: str | None
    phone: str | None
    title: str | None = strawberry.field(description="Job title, such as CFO.")
    lifecycle_stage: LifecycleStage
    do_not_contact: bool = strawberry.field(
        description="Asked not to be contacted: sendMessage refuses to write to them."
    )
    lifecycle_pinned: bool = strawberry.field(
        description="A manager set the lifecycle stage by hand: the facts do not move it."
    )
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    account_id: strawberry.Private[int | None]
    owner_id: strawberry.Private[int]

    @strawberry.field(
        description="Its labels, in lower case, alphabetically.", metadata=batched(_tags)
    )
    async def tags(self, info: Info) -> list[str]:
        return await one(_tags, self, info)

    @strawberry.field(
        description="First and last name.",
        metadata=sql_field("{row}.first_name || ' ' || {row}.last_name"),
    )
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    @strawberry.field(description="How the contact moved through the lifecycle, newest first.")
    async def lifecycle_history(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[LifecycleChange]:
        page = await list_changes(
            context(info), self.id, page_request(info, first, after, last, before)
        )
        return connection(page, LifecycleChange.from_row)

    @strawberry.field(description=HISTORY_HELP)
    async def history(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Event]:
        return await history_of(info, "Contact", self.id, first, after, last, before)

    @strawberry.field(
        description="Its activities (linked to it or attended) and lifecycle moves, newest first."
    )
    async def timeline(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        include: list[EntryKind] | None = None,
    ) -> TimelineConnection:
        sources = await timeline.contact_sources(context(info), self.id)
        page = page_request(info, first, after, None, None)
        return await timeline_connection(sources, page, include)

    @strawberry.field(
        description="The products on the won opportunities it is the primary contact of."
    )
    async def products_used(self, info: Info) -> list[Product]:
        return await products_used_by(info, "contact_id", self.id)

    @strawberry.field(description=BILLING_HELP)
    async def billing(
        self, info: Info, since: date | None = None, until: date | None = None
    ) -> list[Billing]:
        return await billing_of(info, "contact_id", self.id, since, until)

    @strawberry.field(
        description="The account the contact works at.",
        metadata=ACCOUNT.metadata,
    )
    async def account(self, info: Info) -> AccountRef | None:
        return await ACCOUNT.one(self, info)

    @strawberry.field(description="The user responsible for the contact.", metadata=OWNER.metadata)
    async def owner(self, info: Info) -> User:
        return await OWNER.one(self, info)  # type: ignore[no-any-return]


async def contacts_of(ctx: RequestContext, ids: Sequence[int | None]) -> list[Contact | None]:
    """The live contacts of `ids`, in order (None for a None id or a deleted contact)."""
    return await records_of(ctx, ContactRow, ids)


async def load_contact(info: Info, contact_id: int | None) -> Contact | None:
    return await record_of(info, ContactRow, contact_id)


@strawberry.enum(description="What contacts can be sorted by.")
class ContactOrderField(Enum):
    CREATED_AT = "CREATED_AT"
    UPDATED_AT = "UPDATED_AT"
    LAST_NAME = "LAST_NAME"


@strawberry.input(description="Sort order of a contact list.")
class ContactOrder:
    field: ContactOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input(description="Filters on contacts; all given ones must match.")
class ContactFilter:
    search: str | None = strawberry.field(default=None, description="Words in names or email.")
    owner_ids: list[strawberry.ID] | None = None
    account_id: strawberry.ID | None = None
    lifecycle_stages: list[LifecycleStage] | None = None
    tags: list[str] | None = strawberry.field(default=None, description="Any of these tags.")
    updated_since: datetime | None = None


LIFECYCLE_DEPRECATION = (
    "The stage follows the facts, or a manager's setContactLifecycle (with a reason): a value "
    "here is refused."
)


@strawberry.input(description="A new contact. The owner defaults to the viewer.")
class CreateContactInput:
    first_name: str
    last_name: str
    email: str | None = None
    phone: str | None = None
    title: str | None = None
    account_id: strawberry.ID | None = None
    owner_id: strawberry.ID | None = None
    lifecycle_stage: LifecycleStage | None = strawberry.field(
        default=None,
        deprecation_reason=LIFECYCLE_DEPRECATION,
        description="Refused when given (BAD_USER_INPUT): use setContactLifecycle.",
    )
    do_not_contact: bool | None = None
    tags: list[str] | None = strawberry.field(
        default=None, description="Labels for segments (kept in lower case, at most 20)."
    )


@strawberry.input(description="Changes to a contact; omitted fields stay as they are.")
class UpdateContactInput:
    id: strawberry.ID
    first_name: str | None = UNSET
    last_name: str | None = UNSET
    email: str | None = UNSET
    phone: str | None = UNSET
    title: str | None = UNSET
    account_id: strawberry.ID | None = UNSET
    owner_id: strawberry.ID | None = UNSET
    lifecycle_stage: LifecycleStage | None = strawberry.field(
        default=UNSET,
        deprecation_reason=LIFECYCLE_DEPRECATION,
        description="Refused when given (BAD_USER_INPUT): use setContactLifecycle.",
    )
    do_not_contact: bool | None = UNSET
    tags: list[str] | None = strawberry.field(
        default=UNSET, description="Replaces the contact's tags."
    )


CONTACT_IDS = {"account_id": ("accountId", "Account"), "owner_id": ("ownerId", "User")}
FILTER_IDS = {
    "owner_ids": ("filter.ownerIds", "User"),
    "account_id": ("filter.accountId", "Account"),
}


async def contacts_connection(
    info: Info,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    filter: ContactFilter | None,
    order_by: ContactOrder | None,
    *,
    account_id: int | None = None,
) -> Connection[Contact]:
    order, descending = ordering(order_by, "CREATED_AT")
    filters = filter_values(filter, FILTER_IDS)
    if account_id is not None:
        filters["account_id"] = account_id
    page = await contacts.list_contacts(
        context(info), page_request(info, first, after, last, before), filters, order, descending
    )
    return connection(page, Contact.from_row)


@strawberry.type
class ContactQueries:
    @strawberry.field(description="The organization's contacts (everyone in it reads them).")
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
        return await contacts_connection(info, first, after, last, before, filter, order_by)


@strawberry.type
class ContactMutations:
    @strawberry.mutation(description="Create a contact.")
    async def create_contact(self, info: Info, input: CreateContactInput) -> Contact:
        row = await contacts.create_contact(context(info), values_of(input, CONTACT_IDS))
        return Contact.from_row(row)

    @strawberry.mutation(description="Change a contact (admins, its owner, the owner's managers).")
    async def update_contact(self, info: Info, input: UpdateContactInput) -> Contact:
        values = values_of(input, CONTACT_IDS)
        contact_id = pk_of(values.pop("id"), "id", "Contact")
        return Contact.from_row(await contacts.update_contact(context(info), contact_id, values))

    @strawberry.mutation(
        description="Delete a contact. It stops being the primary contact or a participant of "
        "leads and opportunities, and is kept with a deletion time for syncing partners."
    )
    async def delete_contact(self, info: Info, id: strawberry.ID) -> Contact:
        row = await contacts.delete_contact(context(info), pk_of(id, "id", "Contact"))
        return Contact.from_row(row)
