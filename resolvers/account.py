"""Accounts: the client companies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tortoise.transactions import in_transaction

from models import Account, Contact, EventKind, Lead, Opportunity
from resolvers import validation
from resolvers.context import RequestContext
from resolvers.deal_kinds import ACCOUNT
from resolvers.errors import conflict
from resolvers.events import changed_fields, record_event
from resolvers.pagination import (
    BY_ID,
    BY_UPDATED_AT,
    Page,
    PageRequest,
    SortKey,
    paginate,
    search_condition,
)
from resolvers.permissions import check_assignable, require_edit
from resolvers.records import get_or_not_found, referenced_user, scoped

ACCOUNT_ORDER = {"CREATED_AT": BY_ID, "UPDATED_AT": BY_UPDATED_AT, "NAME": SortKey("NAME", "name")}
_TEXT_FIELDS = {"industry": 100, "country": 100, "region": 100, "city": 100}


async def list_accounts(
    ctx: RequestContext, page: PageRequest, filters: dict[str, Any], order: str, descending: bool
) -> Page[Account]:
    query = scoped(ctx, Account)
    if filters.get("search"):
        query = query.filter(search_condition(filters["search"], ["name", "website"]))
    if filters.get("owner_ids"):
        query = query.filter(owner_id__in=filters["owner_ids"])
    for name in ("industry", "country", "region", "city"):
        if filters.get(name):
            query = query.filter(**{f"{name}__iexact": filters[name]})
    if filters.get("updated_since") is not None:
        query = query.filter(updated_at__gte=filters["updated_since"])
    return await paginate(query, page, ACCOUNT_ORDER[order], descending=descending)


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    if "name" in values:
        cleaned["name"] = validation.text(values["name"] or "", "name")
    if "website" in values:
        cleaned["website"] = validation.website(values["website"])
    for name, length in _TEXT_FIELDS.items():
        if name in values:
            cleaned[name] = validation.optional_text(values[name], name, max_length=length)
    return cleaned


async def create_account(ctx: RequestContext, values: dict[str, Any]) -> Account:
    viewer = ctx.require_viewer()
    cleaned = _clean(values)
    owner = viewer
    if values.get("owner_id") is not None:
        owner = await referenced_user(ctx, values["owner_id"], "ownerId")
        await check_assignable(ctx, owner)
    async with in_transaction():
        account = await Account.create(
            organization_id=viewer.organization_id, owner=owner, **cleaned
        )
        initial = {name: (None, value) for name, value in {"owner_id": owner.id, **cleaned}.items()}
        await record_event(ctx, ACCOUNT, account.id, EventKind.CREATED, diff=initial)
        return account


async def update_account(ctx: RequestContext, account_id: int, values: dict[str, Any]) -> Account:
    async with in_transaction():
        account = await get_or_not_found(ctx, Account, account_id, "account")
        await require_edit(ctx, account.owner_id, "account")
        cleaned = _clean(values)
        if values.get("owner_id") is not None and values["owner_id"] != account.owner_id:
            owner = await referenced_user(ctx, values["owner_id"], "ownerId")
            await check_assignable(ctx, owner)
            cleaned["owner_id"] = owner.id
        diff = changed_fields(account, cleaned)
        if cleaned:
            account.update_from_dict(cleaned)
            await account.save(update_fields=[*cleaned, "updated_at"])
        if diff:
            await record_event(ctx, ACCOUNT, account.id, EventKind.UPDATED, diff=diff)
        return account


async def delete_account(ctx: RequestContext, account_id: int) -> Account:
    async with in_transaction():
        account = await get_or_not_found(ctx, Account, account_id, "account")
        await require_edit(ctx, account.owner_id, "account")
        live = {"deleted_at__isnull": True, "account_id": account.id}
        linked = {
            "contacts": await Contact.filter(**live).count(),
            "leads": await Lead.filter(**live).count(),
            "opportunities": await Opportunity.filter(**live).count(),
        }
        if any(linked.values()):
            summary = ", ".join(f"{count} {name}" for name, count in linked.items() if count)
            raise conflict(
                f"This account still has {summary}: delete or move them first.", linked=linked
            )
        account.deleted_at = datetime.now(UTC)
        await account.save(update_fields=["deleted_at", "updated_at"])
        await record_event(ctx, ACCOUNT, account.id, EventKind.DELETED)
        return account
