"""Opportunities: qualified needs with an amount, a stage, a probability and a close date."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry import UNSET

from models import ForecastCategory, OpportunityStatus, Visibility
from models import Lead as LeadRow
from models import LineItem as LineItemRow
from models import Opportunity as OpportunityRow
from models import PipelineStage as PipelineStageRow
from models.base import from_cents
from resolvers import access
from resolvers import deal as deals
from resolvers import lead as leads
from resolvers import opportunity as opportunities
from resolvers.context import RequestContext
from resolvers.deal_kinds import OPPORTUNITY
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
from schema.engine.plans import batched, one
from schema.organization import PipelineStage
from schema.records import Link, column, declared, record

if TYPE_CHECKING:
    from schema.account import Account
    from schema.lead import Lead
    from schema.product import LineItem

AccountRef = Annotated["Account", strawberry.lazy("schema.account")]
LineItemRef = Annotated["LineItem", strawberry.lazy("schema.product")]
LeadRef = Annotated["Lead", strawberry.lazy("schema.lead")]
STAGE = Link(PipelineStageRow, "stage_id")
OPPORTUNITY_EXPORT = (
    "name",
    "amount_cents",
    "currency",
    "stage_id",
    "probability",
    "status",
    "expected_close_date",
    "closed_at",
    "account_id",
    "contact_id",
    "visibility",
    "version",
    "created_at",
    "updated_at",
    "owner_id",
)


async def _converted_from(deals: list[Opportunity], ctx: RequestContext) -> list[LeadRef | None]:
    found = await leads.converted_into(ctx, [deal.id for deal in deals])
    make = declared(LeadRow).make
    return [make(found[deal.id]) if deal.id in found else None for deal in deals]


@record(
    OpportunityRow,
    read=access.OPPORTUNITIES,
    constants={"kind": OPPORTUNITY},
    export=("opportunities", OPPORTUNITY_EXPORT),
    names={
        "participants": OPPORTUNITY.participant._meta.db_table,
        "followers": OPPORTUNITY.follower._meta.db_table,
    },
)
@strawberry.type(description="A qualified need with an amount, a pipeline stage and a close date.")
class Opportunity(Deal):
    name: str
    amount: Decimal = column(
        source="amount_cents",
        convert=from_cents,
        description="Decimal amount, as a string, in `currency`.",
    )
    currency: str = strawberry.field(description="ISO 4217 currency code.")
    probability: int = strawberry.field(
        description="Percent; the stage's probability unless overridden."
    )
    probability_overridden: bool
    expected_close_date: date
    status: OpportunityStatus
    closed_at: datetime | None = strawberry.field(description="When it was won or lost.")
    lost_reason: str | None = strawberry.field(description="Why it was lost (only when LOST).")
    forecast_category: ForecastCategory = strawberry.field(
        description="Where it counts in the forecast: the stage's category unless overridden; "
        "CLOSED once won, OMITTED once lost."
    )
    forecast_category_overridden: bool
    stage_id: strawberry.Private[int]

    @strawberry.field(
        description="The client company.",
        metadata=ACCOUNT.metadata,
    )
    async def account(self, info: Info) -> AccountRef:
        # Non-null: an account with live opportunities cannot be deleted.
        return await ACCOUNT.one(self, info)  # type: ignore[no-any-return]

    @strawberry.field(
        description="The lead convertLead made it from: null when it was created as an "
        "opportunity, or when the viewer may not read the lead.",
        metadata=batched(_converted_from),
    )
    async def converted_from(self, info: Info) -> LeadRef | None:
        return await one(_converted_from, self, info)  # type: ignore[no-any-return]

    @strawberry.field(description="Its products, oldest first.")
    async def line_items(self, info: Info) -> list[LineItemRef]:
        make = declared(LineItemRow).make
        return [make(row) for row in await context(info).loaders.line_items.load(self.id)]

    @strawberry.field(
        description="The pipeline stage.",
        metadata=STAGE.metadata,
    )
    async def stage(self, info: Info) -> PipelineStage:
        return await STAGE.one(self, info)  # type: ignore[no-any-return]


@strawberry.enum(description="What opportunities can be sorted by.")
class OpportunityOrderField(Enum):
    CREATED_AT = "CREATED_AT"
    UPDATED_AT = "UPDATED_AT"
    NAME = "NAME"
    AMOUNT = "AMOUNT"
    EXPECTED_CLOSE_DATE = "EXPECTED_CLOSE_DATE"
    PROBABILITY = "PROBABILITY"
    STAGE = strawberry.enum_value("STAGE", description="The stage's position in the pipeline.")
    OWNER_NAME = strawberry.enum_value("OWNER_NAME", description="The owner's full name.")


@strawberry.input(description="Sort order of an opportunity list.")
class OpportunityOrder:
    field: OpportunityOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input(description="Filters on opportunities; all given ones must match.")
class OpportunityFilter:
    search: str | None = strawberry.field(
        default=None,
        description="Words each in the name, the account's name or the primary contact's name.",
    )
    owner_ids: list[strawberry.ID] | None = None
    account_id: strawberry.ID | None = None
    campaign_id: strawberry.ID | None = strawberry.field(
        default=None, description="Sourced by this campaign."
    )
    contact_id: strawberry.ID | None = strawberry.field(
        default=None, description="Primary contact."
    )
    stage_ids: list[strawberry.ID] | None = None
    statuses: list[OpportunityStatus] | None = None
    forecast_categories: list[ForecastCategory] | None = None
    amount_min: Decimal | None = None
    amount_max: Decimal | None = None
    close_date_from: date | None = None
    close_date_to: date | None = None
    visibility: Visibility | None = None
    followed_by_viewer: bool | None = None
    updated_since: datetime | None = None


@strawberry.input(
    description="A new opportunity. The owner defaults to the viewer, the stage to "
    "the first open stage, the probability to the stage's."
)
class CreateOpportunityInput:
    name: str
    account_id: strawberry.ID
    expected_close_date: date
    amount: Decimal = Decimal(0)
    currency: str = "USD"
    stage_id: strawberry.ID | None = None
    probability: int | None = None
    forecast_category: ForecastCategory | None = strawberry.field(
        default=None, description="Overrides the stage's category (not CLOSED)."
    )
    lost_reason: str | None = strawberry.field(
        default=None, description="Required when the stage is a lost one."
    )
    contact_id: strawberry.ID | None = strawberry.field(
        default=None, description="Primary contact."
    )
    owner_id: strawberry.ID | None = None
    visibility: Visibility | None = None
    campaign_id: strawberry.ID | None = strawberry.field(
        default=None, description="The campaign that sourced it."
    )


@strawberry.input(description="Changes to an opportunity; omitted fields stay as they are.")
class UpdateOpportunityInput:
    id: strawberry.ID
    expected_version: int | None = strawberry.field(
        default=None, description="When given and stale, the update fails with CONFLICT."
    )
    name: str | None = UNSET
    account_id: strawberry.ID | None = UNSET
    amount: Decimal | None = UNSET
    currency: str | None = UNSET
    stage_id: strawberry.ID | None = UNSET
    probability: int | None = strawberry.field(
        default=UNSET, description="null goes back to the stage's probability."
    )
    forecast_category: ForecastCategory | None = strawberry.field(
        default=UNSET,
        description="Override the stage's category of an open opportunity (not CLOSED); null "
        "goes back to the stage's.",
    )
    lost_reason: str | None = strawberry.field(
        default=UNSET,
        description="Why it was lost: required when moving it to a lost stage; only a lost "
        "opportunity has one.",
    )
    expected_close_date: date | None = UNSET
    contact_id: strawberry.ID | None = UNSET
    owner_id: strawberry.ID | None = UNSET
    visibility: Visibility | None = UNSET
    campaign_id: strawberry.ID | None = UNSET


OPPORTUNITY_IDS = {
    "account_id": ("accountId", "Account"),
    "contact_id": ("contactId", "Contact"),
    "owner_id": ("ownerId", "User"),
    "campaign_id": ("campaignId", "Campaign"),
    "stage_id": ("stageId", "PipelineStage"),
}
FILTER_IDS = {
    "owner_ids": ("filter.ownerIds", "User"),
    "account_id": ("filter.accountId", "Account"),
    "campaign_id": ("filter.campaignId", "Campaign"),
    "contact_id": ("filter.contactId", "Contact"),
    "stage_ids": ("filter.stageIds", "PipelineStage"),
}


async def opportunities_connection(
    info: Info,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    filter: OpportunityFilter | None,
    order_by: OpportunityOrder | None,
    *,
    account_id: int | None = None,
) -> Connection[Opportunity]:
    order, descending = ordering(order_by, "CREATED_AT")
    filters = filter_values(filter, FILTER_IDS)
    if account_id is not None:
        filters["account_id"] = account_id
    page = await opportunities.list_opportunities(
        context(info), page_request(info, first, after, last, before), filters, order, descending
    )
    return connection(page, Opportunity.from_row)


@strawberry.type
class OpportunityQueries:
    @strawberry.field(description="The opportunities the viewer may read: the pipeline.")
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
        return await opportunities_connection(info, first, after, last, before, filter, order_by)


@strawberry.type
class OpportunityMutations:
    @strawberry.mutation(description="Create an opportunity.")
    async def create_opportunity(self, info: Info, input: CreateOpportunityInput) -> Opportunity:
        values = values_of(input, OPPORTUNITY_IDS)
        if values.get("probability") is None:
            values.pop("probability", None)
        for name in ("stage_id", "forecast_category", "lost_reason"):
            if values.get(name) is None:
                values.pop(name, None)
        row = await opportunities.create_opportunity(context(info), values)
        return Opportunity.from_row(row)

    @strawberry.mutation(
        description="Change an opportunity (admins, its owner, the owner's managers). Moving it "
        "to a stage sets its status and, unless overridden, its probability."
    )
    async def update_opportunity(self, info: Info, input: UpdateOpportunityInput) -> Opportunity:
        values = values_of(input, OPPORTUNITY_IDS)
        opportunity_id = pk_of(values.pop("id"), "id", "Opportunity")
        expected = values.pop("expected_version", None)
        row = await opportunities.update_opportunity(
            context(info), opportunity_id, values, expected
        )
        return Opportunity.from_row(row)

    @strawberry.mutation(
        description="Delete an opportunity (editors). It is kept with a deletion time for "
        "syncing partners."
    )
    async def delete_opportunity(self, info: Info, id: strawberry.ID) -> Opportunity:
        row = await deals.delete_deal(context(info), OPPORTUNITY, pk_of(id, "id", "Opportunity"))
        return Opportunity.from_row(row)
