"""Leads: prospect deals, not yet qualified."""

from __future__ import annotations

from typing import Any

from tortoise.transactions import in_transaction

from models import Lead, LeadStatus
from resolvers import validation
from resolvers.context import RequestContext
from resolvers.deal import (
    clean_common,
    create_deal,
    filter_deals,
    get_editable,
    readable_deals,
    save_versioned,
)
from resolvers.deal_kinds import LEAD
from resolvers.errors import bad_input
from resolvers.pagination import BY_ID, BY_UPDATED_AT, Page, PageRequest, SortKey, paginate

LEAD_ORDER = {"CREATED_AT": BY_ID, "UPDATED_AT": BY_UPDATED_AT, "TITLE": SortKey("TITLE", "title")}


async def list_leads(
    ctx: RequestContext, page: PageRequest, filters: dict[str, Any], order: str, descending: bool
) -> Page[Lead]:
    query = filter_deals(ctx, LEAD, await readable_deals(ctx, LEAD), filters)
    if filters.get("sources"):
        query = query.filter(source__in=filters["sources"])
    return await paginate(query, page, LEAD_ORDER[order], descending=descending)


async def _clean(ctx: RequestContext, values: dict[str, Any], row: Lead | None) -> dict[str, Any]:
    cleaned = await clean_common(ctx, values, row)
    if "title" in values:
        cleaned["title"] = validation.text(values["title"] or "", "title")
    if "source" in values:
        cleaned["source"] = validation.optional_text(values["source"], "source", max_length=100)
    if "estimated_amount" in values:
        amount = values["estimated_amount"]
        cleaned["estimated_amount_cents"] = (
            None if amount is None else validation.amount_cents(amount, "estimatedAmount")
        )
    if values.get("status") is not None:
        if values["status"] == LeadStatus.CONVERTED:
            raise bad_input("status", "A lead becomes CONVERTED only by converting it.")
        if row is not None and row.status == LeadStatus.CONVERTED:
            raise bad_input("status", "A converted lead keeps its status.")
        cleaned["status"] = values["status"]
    return cleaned


async def create_lead(ctx: RequestContext, values: dict[str, Any]) -> Lead:
    viewer = ctx.require_viewer()
    cleaned = await _clean(ctx, values, None)
    cleaned.setdefault("owner_id", viewer.id)
    return await create_deal(ctx, LEAD, cleaned)


async def update_lead(
    ctx: RequestContext, lead_id: int, values: dict[str, Any], expected_version: int | None
) -> Lead:
    async with in_transaction():
        row = await get_editable(ctx, LEAD, lead_id, lock=True)
        cleaned = await _clean(ctx, values, row)
        if cleaned.get("contact_id") is not None:
            await LEAD.participant.filter(
                record_id=row.id, contact_id=cleaned["contact_id"]
            ).delete()
        return await save_versioned(ctx, LEAD, row, cleaned, expected_version)
