"""Leads: prospect deals, not yet qualified."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry import UNSET

from models import Lead as LeadRow
from models import LeadStatus, Visibility
from models import Opportunity as OpportunityRow
from models.base import from_cents
from resolvers import access
from resolvers import deal as deals
from resolvers import lead as leads
from resolvers.deal_kinds import LEAD
from schema.account import Account
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
from schema.contact import ACCOUNT
from schema.deal import Deal
from schema.records import column, declared, record

if TYPE_CHECKING:
    from schema.opportunity import Opportunity

OpportunityRef = Annotated["Opportunity", strawberry.lazy("schema.opportunity")]
LEAD_EXPORT = (
    "title",
    "source",
    "status",
    "estimated_amount_cents",
    "currency",
    "account_id",
    "contact_id",
    "visibility",
    "version",
    "created_at",
    "updated_at",
    "owner_id",
)


@record(
    LeadRow,
    read=access.LEADS,
    constants={"kind": LEAD},
    export=("leads", LEAD_EXPORT),
    names={
        "participants": LEAD.participant._meta.db_table,
        "followers": LEAD.follower._meta.db_table,
    },
)
@strawberry.type(description="A prospect deal, not yet qualified into an opportunity.")
class Lead(Deal):
    title: str
    source: str | None = strawberry.field(description='Where the lead came from, e.g. "Website".')
    status: LeadStatus
    estimated_amount: Decimal | None = column(source="estimated_amount_cents", convert=from_cents)
    currency: str = strawberry.field(description="ISO 4217 code of estimatedAmount.")
    converted_at: datetime | None = strawberry.field(
        description="When convertLead turned this lead into an opportunity."
    )
    converted_opportunity_id: strawberry.Private[int | None]

    @strawberry.field(
        description="The client company, when known.",
        metadata=ACCOUNT.metadata,
    )
    async def account(self, info: Info) -> Account | None:
        return await ACCOUNT.one(self, info)

    @strawberry.field(
        description="The opportunity this lead became, unless it is deleted or out of reach."
    )
    async def converted_opportunity(self, info: Info) -> OpportunityRef | None:
        if self.converted_opportunity_id is None:
            return None
        row = await access.OPPORTUNITIES.get(context(info), self.converted_opportunity_id)
        return None if row is None else declared(OpportunityRow).make(row)


@strawberry.enum(description="What leads can be sorted by.")
class LeadOrderField(Enum):
    CREATED_AT = "CREATED_AT"
    UPDATED_AT = "UPDATED_AT"
    TITLE = "TITLE"
    OWNER_NAME = strawberry.enum_value("OWNER_NAME", description="The owner's full name.")


@strawberry.input(description="Sort order of a lead list.")
class LeadOrder:
    field: LeadOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input(description="Filters on leads; all given ones must match.")
class LeadFilter:
    search: str | None = strawberry.field(
        default=None,
        description="Words each in the title, the account's name or the primary contact's name.",
    )
    owner_ids: list[strawberry.ID] | None = None
    account_id: strawberry.ID | None = None
    campaign_id: strawberry.ID | None = strawberry.field(
        default=None, description="Sourced by this campaign."
    )
    contact_id: strawberry.ID | None = strawberry.field(
        default=None, description="Primary contact."
    )
    statuses: list[LeadStatus] | None = None
    sources: list[str] | None = None
    visibility: Visibility | None = None
    followed_by_viewer: bool | None = None
    updated_since: datetime | None = None
    converted: bool | None = strawberry.field(
        default=None,
        description="true: only the leads converted into an opportunity; false: only the others.",
    )


@strawberry.input(description="A new lead. The owner defaults to the viewer.")
class CreateLeadInput:
    title: str
    source: str | None = None
    status: LeadStatus | None = None
    estimated_amount: Decimal | None = None
    currency: str = "USD"
    account_id: strawberry.ID | None = None
    contact_id: strawberry.ID | None = strawberry.field(
        default=None, description="Primary contact."
    )
    owner_id: strawberry.ID | None = None
    visibility: Visibility | None = None
    campaign_id: strawberry.ID | None = strawberry.field(
        default=None, description="The campaign that sourced it."
    )


@strawberry.input(description="Changes to a lead; omitted fields stay as they are.")
class UpdateLeadInput:
    id: strawberry.ID
    expected_version: int | None = strawberry.field(
        default=None, description="When given and stale, the update fails with CONFLICT."
    )
    title: str | None = UNSET
    source: str | None = UNSET
    status: LeadStatus | None = UNSET
    estimated_amount: Decimal | None = UNSET
    currency: str | None = UNSET
    account_id: strawberry.ID | None = UNSET
    contact_id: strawberry.ID | None = UNSET
    owner_id: strawberry.ID | None = UNSET
    visibility: Visibility | None = UNSET
    campaign_id: strawberry.ID | None = UNSET


@strawberry.input(
    description="Turn a lead into an opportunity. The account is `accountId`, else the lead's "
    "account, else a new one named `accountName` (default: the lead's title); the primary "
    "contact, participants and followers carry over; the owner defaults to the lead's."
)
class ConvertLeadInput:
    lead_id: strawberry.ID
    expected_close_date: date = strawberry.field(
        description="The opportunity's expected close date."
    )
    expected_version: int | None = strawberry.field(
        default=None, description="The lead's version: when given and stale, CONFLICT."
    )
    account_id: strawberry.ID | None = None
    account_name: str | None = None
    opportunity_name: str | None = strawberry.field(
        default=None, description="Default: the lead's title."
    )
    amount: Decimal | None = strawberry.field(
        default=None, description="Default: the lead's estimated amount, else 0."
    )
    currency: str | None = strawberry.field(default=None, description="Default: the lead's.")
    stage_id: strawberry.ID | None = strawberry.field(
        default=None, description="Default: the first open pipeline stage."
    )
    owner_id: strawberry.ID | None = None


@strawberry.type(description="What convertLead made: the converted lead, its opportunity.")
class ConvertLeadPayload:
    lead: Lead
    opportunity: OpportunityRef
    account: Account


LEAD_IDS = {
    "account_id": ("accountId", "Account"),
    "contact_id": ("contactId", "Contact"),
    "owner_id": ("ownerId", "User"),
    "campaign_id": ("campaignId", "Campaign"),
}
CONVERT_IDS = {
    "account_id": ("accountId", "Account"),
    "stage_id": ("stageId", "PipelineStage"),
    "owner_id": ("ownerId", "User"),
}
FILTER_IDS = {
    "owner_ids": ("filter.ownerIds", "User"),
    "account_id": ("filter.accountId", "Account"),
    "campaign_id": ("filter.campaignId", "Campaign"),
    "contact_id": ("filter.contactId", "Contact"),
}


@strawberry.type
class LeadQueries:
    @strawberry.field(description="The leads the viewer may read.")
    async def leads(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: LeadFilter | None = None,
        order_by: LeadOrder | None = None,
    ) -> Connection[Lead]:
        order, descending = ordering(order_by, "CREATED_AT")
        page = await leads.list_leads(
            context(info),
            page_request(info, first, after, last, before),
            filter_values(filter, FILTER_IDS),
            order,
            descending,
        )
        return connection(page, Lead.from_row)


@strawberry.type
class LeadMutations:
    @strawberry.mutation(description="Create a lead.")
    async def create_lead(self, info: Info, input: CreateLeadInput) -> Lead:
        return Lead.from_row(await leads.create_lead(context(info), values_of(input, LEAD_IDS)))

    @strawberry.mutation(description="Change a lead (admins, its owner, the owner's managers).")
    async def update_lead(self, info: Info, input: UpdateLeadInput) -> Lead:
        values = values_of(input, LEAD_IDS)
        lead_id = pk_of(values.pop("id"), "id", "Lead")
        expected = values.pop("expected_version", None)
        return Lead.from_row(await leads.update_lead(context(info), lead_id, values, expected))

    @strawberry.mutation(
        description="Turn a lead into an opportunity in one transaction (editors of the lead). "
        "A converted or disqualified lead cannot be converted (CONFLICT)."
    )
    async def convert_lead(self, info: Info, input: ConvertLeadInput) -> ConvertLeadPayload:
        values = values_of(input, CONVERT_IDS)
        lead_id = pk_of(values.pop("lead_id"), "leadId", "Lead")
        expected = values.pop("expected_version", None)
        done = await leads.convert_lead(context(info), lead_id, values, expected)
        return ConvertLeadPayload(
            lead=Lead.from_row(done.lead),
            opportunity=declared(OpportunityRow).make(done.opportunity),
            account=Account.from_row(done.account),
        )

    @strawberry.mutation(
        description="Delete a lead (editors). It is kept with a deletion time for syncing partners."
    )
    async def delete_lead(self, info: Info, id: strawberry.ID) -> Lead:
        return Lead.from_row(await deals.delete_deal(context(info), LEAD, pk_of(id, "id", "Lead")))
