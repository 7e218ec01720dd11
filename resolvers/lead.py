"""Leads: prospect deals, not yet qualified."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tortoise.transactions import in_transaction

from models import (
    Account,
    Activity,
    ActivityStatus,
    EventKind,
    Lead,
    LeadStatus,
    Opportunity,
    OpportunityParticipant,
    PipelineStage,
)
from models.base import from_cents
from resolvers import validation
from resolvers.access import LEADS
from resolvers.account import create_account
from resolvers.context import RequestContext
from resolvers.deal import (
    check_version,
    clean_common,
    create_deal,
    filter_deals,
    follow,
    get_editable,
    save_versioned,
)
from resolvers.deal_kinds import LEAD, OPPORTUNITY
from resolvers.errors import bad_input, conflict
from resolvers.events import global_id, record_event
from resolvers.opportunity import create_opportunity
from resolvers.pagination import (
    BY_ID,
    BY_UPDATED_AT,
    Page,
    PageRequest,
    SortKey,
    paginate,
    related_key,
)
from resolvers.records import referenced, referenced_account

LEAD_ORDER = {
    "CREATED_AT": BY_ID,
    "UPDATED_AT": BY_UPDATED_AT,
    "TITLE": SortKey("TITLE", "title"),
    "OWNER_NAME": related_key("OWNER_NAME", "owner__full_name"),
}


async def list_leads(
    ctx: RequestContext, page: PageRequest, filters: dict[str, Any], order: str, descending: bool
) -> Page[Lead]:
    query = filter_deals(ctx, LEAD, await LEADS.query(ctx), filters)
    if filters.get("sources"):
        query = query.filter(source__in=filters["sources"])
    if filters.get("converted") is not None:
        query = query.filter(converted_at__isnull=not filters["converted"])
    return await paginate(query, page, LEAD_ORDER[order], descending=descending)


async def converted_into(ctx: RequestContext, opportunity_ids: list[int]) -> dict[int, Lead]:
    """The leads the viewer may read that were converted into these opportunities, by
    opportunity id (one statement)."""
    query = (await LEADS.query(ctx)).filter(converted_opportunity_id__in=opportunity_ids)
    return {row.converted_opportunity_id: row for row in await query.order_by("-id")}


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
        row = await get_editable(ctx, LEAD, lead_id, lock=True, field="id")
        cleaned = await _clean(ctx, values, row)
        if cleaned.get("contact_id") is not None:
            await LEAD.participant.filter(
                record_id=row.id, contact_id=cleaned["contact_id"]
            ).delete()
        return await save_versioned(ctx, LEAD, row, cleaned, expected_version)


@dataclass
class Conversion:
    lead: Lead
    opportunity: Opportunity
    account: Account


async def convert_lead(
    ctx: RequestContext, lead_id: int, values: dict[str, Any], expected_version: int | None
) -> Conversion:
    """Turn a lead into an opportunity, in one transaction: the account (the one given, the
    lead's, or a new one), the primary contact, the participants and the followers carry over;
    the lead becomes CONVERTED and points to the opportunity; both histories record it."""
    if values.get("account_id") is not None and values.get("account_name") is not None:
        raise bad_input("accountName", "Give accountId or accountName, not both.")
    async with in_transaction():
        lead = await get_editable(ctx, LEAD, lead_id, lock=True, field="leadId")
        check_version(LEAD, lead, expected_version)
        if lead.status == LeadStatus.CONVERTED:
            raise conflict(
                "This lead was converted already.",
                field="leadId",
                opportunityId=global_id("Opportunity", lead.converted_opportunity_id),
            )
        if lead.status == LeadStatus.DISQUALIFIED:
            raise conflict(
                "A disqualified lead cannot be converted: requalify it first.", field="leadId"
            )
        if values.get("stage_id") is not None:
            stage = await referenced(ctx, PipelineStage, values["stage_id"], "stageId", "stage")
            if stage.is_lost:
                raise bad_input(
                    "stageId", "A lead does not convert into a lost opportunity: disqualify it."
                )
        owner_id = values.get("owner_id") or lead.owner_id
        account = await _conversion_account(ctx, lead, values, owner_id)
        opportunity = await create_opportunity(
            ctx,
            {
                "name": _given_or(values, "opportunity_name", "opportunityName", lead.title),
                "account_id": account.id,
                "amount": _conversion_amount(lead, values),
                "currency": values.get("currency") or lead.currency,
                "expected_close_date": values.get("expected_close_date"),
                "stage_id": values.get("stage_id"),
                "owner_id": owner_id,
                "contact_id": lead.contact_id,
                "visibility": lead.visibility,
                "campaign_id": lead.campaign_id,
            },
        )
        participants = await LEAD.participant.filter(record_id=lead.id).exclude(
            contact_id=opportunity.contact_id
        )
        await OpportunityParticipant.bulk_create(
            [
                OpportunityParticipant(
                    record_id=opportunity.id, contact_id=link.contact_id, role=link.role
                )
                for link in participants
            ]
        )
        followers: list[int] = await LEAD.follower.filter(
            record_id=lead.id, user__is_active=True
        ).values_list("user_id", flat=True)  # type: ignore[assignment]
        await follow(ctx, OPPORTUNITY, opportunity, set(followers))
        # The work still planned on the lead goes on with the opportunity; what was done stays
        # in the lead's history.
        planned = Activity.filter(lead_id=lead.id, status=ActivityStatus.PLANNED)
        moved = await planned.count()  # (not update()'s count: SQLite adds the triggers' rows)
        await planned.update(lead_id=None, opportunity_id=opportunity.id)
        carried = {
            "lead_id": lead.id,
            "participant_ids": [link.contact_id for link in participants],
            "follower_ids": followers,
            "planned_activities": moved,
        }
        # The lead's CONVERTED event notifies its followers, who are the opportunity's now.
        await record_event(
            ctx, OPPORTUNITY, opportunity.id, EventKind.CONVERTED, details=carried, notify=False
        )
        now = datetime.now(UTC)
        cleaned = {
            "status": LeadStatus.CONVERTED,
            "converted_opportunity_id": opportunity.id,
            "converted_at": now,
        }
        await save_versioned(ctx, LEAD, lead, cleaned, None, event_kind=EventKind.CONVERTED)
        return Conversion(lead, opportunity, account)


async def _conversion_account(
    ctx: RequestContext, lead: Lead, values: dict[str, Any], owner_id: int
) -> Account:
    if values.get("account_id") is not None:
        return await referenced_account(ctx, values["account_id"], "accountId")
    if lead.account_id is not None:
        if values.get("account_name") is not None:
            raise bad_input(
                "accountName",
                "This lead has an account: omit accountName, or give accountId for another one.",
            )
        return await referenced_account(ctx, lead.account_id, "accountId")
    name = _given_or(values, "account_name", "accountName", lead.title)
    return await create_account(ctx, {"name": name, "owner_id": owner_id})


def _given_or(values: dict[str, Any], name: str, field: str, default: str) -> str:
    """A name the input gives (which must be valid: a blank one is an error) or the default."""
    return default if values.get(name) is None else validation.text(values[name], field)


def _conversion_amount(lead: Lead, values: dict[str, Any]) -> Decimal:
    if values.get("amount") is not None:
        return values["amount"]
    return from_cents(lead.estimated_amount_cents) or Decimal(0)
