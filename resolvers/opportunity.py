"""Opportunities: qualified needs with an amount, a stage, a probability and a close date."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from models import ForecastCategory, Opportunity, OpportunityStatus, PipelineStage
from resolvers import validation
from resolvers.access import OPPORTUNITIES
from resolvers.context import RequestContext
from resolvers.deal import (
    clean_common,
    create_deal,
    filter_deals,
    get_editable,
    save_versioned,
)
from resolvers.deal_kinds import OPPORTUNITY
from resolvers.errors import bad_input
from resolvers.pagination import (
    BY_DATE,
    BY_ID,
    BY_UPDATED_AT,
    Page,
    PageRequest,
    SortKey,
    integer_key,
    integer_related_key,
    paginate,
    related_key,
)
from resolvers.product import has_line_items
from resolvers.records import referenced

OPPORTUNITY_ORDER = {
    "CREATED_AT": BY_ID,
    "UPDATED_AT": BY_UPDATED_AT,
    "NAME": SortKey("NAME", "name"),
    "AMOUNT": integer_key("AMOUNT", "amount_cents"),
    "PROBABILITY": integer_key("PROBABILITY", "probability"),
    "STAGE": integer_related_key("STAGE", "stage__position"),
    "OWNER_NAME": related_key("OWNER_NAME", "owner__full_name"),
    **BY_DATE,
}


async def list_opportunities(
    ctx: RequestContext, page: PageRequest, filters: dict[str, Any], order: str, descending: bool
) -> Page[Opportunity]:
    query = await filtered_opportunities(ctx, filters)
    return await paginate(query, page, OPPORTUNITY_ORDER[order], descending=descending)


async def filtered_opportunities(
    ctx: RequestContext, filters: dict[str, Any]
) -> QuerySet[Opportunity]:
    """The opportunities the viewer may read that match the filters (the list's, the board's)."""
    query = filter_deals(ctx, OPPORTUNITY, await OPPORTUNITIES.query(ctx), filters)
    if filters.get("stage_ids"):
        query = query.filter(stage_id__in=filters["stage_ids"])
    if filters.get("forecast_categories"):
        query = query.filter(forecast_category__in=filters["forecast_categories"])
    if filters.get("amount_min") is not None:
        query = query.filter(
            amount_cents__gte=validation.amount_cents(filters["amount_min"], "filter.amountMin")
        )
    if filters.get("amount_max") is not None:
        query = query.filter(
            amount_cents__lte=validation.amount_cents(filters["amount_max"], "filter.amountMax")
        )
    if filters.get("close_date_from") is not None:
        query = query.filter(expected_close_date__gte=filters["close_date_from"])
    if filters.get("close_date_to") is not None:
        query = query.filter(expected_close_date__lte=filters["close_date_to"])
    return query


def _apply_stage(cleaned: dict[str, Any], stage: PipelineStage, row: Opportunity | None) -> None:
    """A stage sets the status, and the probability and forecast category unless the caller
    overrode them. A closed opportunity's category follows its status: CLOSED when won, OMITTED
    when lost."""
    cleaned["stage_id"] = stage.id
    overridden = cleaned.get("probability_overridden", row.probability_overridden if row else False)
    if not overridden:
        cleaned["probability"] = stage.probability
    status = (
        OpportunityStatus.WON
        if stage.is_won
        else OpportunityStatus.LOST
        if stage.is_lost
        else OpportunityStatus.OPEN
    )
    cleaned["status"] = status
    if row is None or status != row.status:
        cleaned["closed_at"] = None if status == OpportunityStatus.OPEN else datetime.now(UTC)
    if status != OpportunityStatus.OPEN:
        if cleaned.get("forecast_category_overridden"):
            raise bad_input(
                "forecastCategory",
                "A won opportunity is CLOSED and a lost one OMITTED: the category of a closed "
                "opportunity cannot be set.",
            )
        cleaned["forecast_category"] = (
            ForecastCategory.CLOSED if status == OpportunityStatus.WON else ForecastCategory.OMITTED
        )
        cleaned["forecast_category_overridden"] = False
        return
    category_overridden = cleaned.get(
        "forecast_category_overridden", row.forecast_category_overridden if row else False
    )
    if not category_overridden:
        cleaned["forecast_category"] = stage.forecast_category


def _forecast_category(value: ForecastCategory | None, cleaned: dict[str, Any]) -> None:
    if value is None:  # back to the stage's category
        cleaned["forecast_category_overridden"] = False
    elif value == ForecastCategory.CLOSED:
        raise bad_input(
            "forecastCategory", "CLOSED is for won opportunities: move it to a won stage instead."
        )
    else:
        cleaned["forecast_category"] = value
        cleaned["forecast_category_overridden"] = True


def _lost_reason(values: dict[str, Any], cleaned: dict[str, Any], row: Opportunity | None) -> None:
    """A lost opportunity says why; any other has no lost reason (reopening clears it)."""
    status = cleaned.get("status", row.status if row else OpportunityStatus.OPEN)
    given = validation.optional_text(values.get("lost_reason"), "lostReason", max_length=1000)
    if status != OpportunityStatus.LOST:
        if given is not None:
            raise bad_input("lostReason", "Only a lost opportunity has a lost reason.")
        if row is not None and row.lost_reason is not None:
            cleaned["lost_reason"] = None
        return
    if given is not None:
        cleaned["lost_reason"] = given
    elif "lost_reason" in values and row is not None and row.status == OpportunityStatus.LOST:
        raise bad_input("lostReason", "A lost opportunity keeps a reason: it cannot be cleared.")
    elif row is None or row.status != OpportunityStatus.LOST:
        raise bad_input(
            "lostReason", "Say why it was lost: lostReason is required to move it to a lost stage."
        )


async def _clean(
    ctx: RequestContext, values: dict[str, Any], row: Opportunity | None
) -> dict[str, Any]:
    cleaned = await clean_common(ctx, values, row)
    if "account_id" in cleaned and cleaned["account_id"] is None:
        raise bad_input("accountId", "An opportunity belongs to an account.")
    if "name" in values:
        cleaned["name"] = validation.text(values["name"] or "", "name")
    if "amount" in values:
        if values["amount"] is None:
            raise bad_input("amount", "amount must not be null.")
        cleaned["amount_cents"] = validation.amount_cents(values["amount"], "amount")
    repriced = "amount_cents" in cleaned or "currency" in cleaned
    if row is not None and repriced and await has_line_items(row.id):
        if cleaned.get("amount_cents", row.amount_cents) != row.amount_cents:
            raise bad_input("amount", "This opportunity's amount is its line items' total.")
        if cleaned.get("currency", row.currency) != row.currency:
            raise bad_input(
                "currency", "Its line items are priced in this currency: remove them first."
            )
    if "expected_close_date" in values:
        if values["expected_close_date"] is None:
            raise bad_input("expectedCloseDate", "An opportunity has an expected close date.")
        cleaned["expected_close_date"] = validation.close_date(values["expected_close_date"])
    if "probability" in values:
        if values["probability"] is None:  # back to the stage's probability
            cleaned["probability_overridden"] = False
        else:
            cleaned["probability"] = validation.probability(values["probability"])
            cleaned["probability_overridden"] = True
    if "forecast_category" in values:
        _forecast_category(values["forecast_category"], cleaned)
    overrides = {"probability_overridden", "forecast_category_overridden"} & cleaned.keys()
    stage_id = values.get("stage_id")
    if stage_id is not None or row is None or overrides:
        if stage_id is not None:
            stage = await referenced(ctx, PipelineStage, stage_id, "stageId", "pipeline stage")
        elif row is not None:
            stage = await PipelineStage.get(id=row.stage_id)
        else:
            stage = await _first_open_stage(ctx)
        if row is None or stage.id != row.stage_id or overrides:
            _apply_stage(cleaned, stage, row)
    _lost_reason(values, cleaned, row)
    return cleaned


async def _first_open_stage(ctx: RequestContext) -> PipelineStage:
    organization_id = ctx.require_viewer().organization_id
    stage = (
        await PipelineStage.filter(organization_id=organization_id, is_won=False, is_lost=False)
        .order_by("position", "id")
        .first()
    )
    if stage is None:
        raise bad_input("stageId", "This organization has no open pipeline stage: name one.")
    return stage


async def create_opportunity(ctx: RequestContext, values: dict[str, Any]) -> Opportunity:
    viewer = ctx.require_viewer()
    for name, field in (("name", "name"), ("account_id", "accountId")):
        if values.get(name) is None:
            raise bad_input(field, f"{field} is required.")
    if values.get("expected_close_date") is None:
        raise bad_input("expectedCloseDate", "expectedCloseDate is required.")
    cleaned = await _clean(ctx, {"amount": Decimal(0), **values}, None)
    cleaned.setdefault("owner_id", viewer.id)
    return await create_deal(ctx, OPPORTUNITY, cleaned)


async def update_opportunity(
    ctx: RequestContext, opportunity_id: int, values: dict[str, Any], expected_version: int | None
) -> Opportunity:
    async with in_transaction():
        row = await get_editable(ctx, OPPORTUNITY, opportunity_id, lock=True, field="id")
        cleaned = await _clean(ctx, values, row)
        if cleaned.get("contact_id") is not None:
            await OPPORTUNITY.participant.filter(
                record_id=row.id, contact_id=cleaned["contact_id"]
            ).delete()
        return await save_versioned(ctx, OPPORTUNITY, row, cleaned, expected_version)
