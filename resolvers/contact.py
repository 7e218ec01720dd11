"""Contacts: people at the accounts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tortoise.expressions import F, Subquery
from tortoise.transactions import in_transaction

from models import Contact, ContactTag, EventKind
from resolvers import validation
from resolvers.context import RequestContext
from resolvers.deal_kinds import CONTACT, LEAD, OPPORTUNITY, DealKind
from resolvers.errors import bad_input
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
from resolvers.records import get_or_not_found, referenced_account, referenced_user, scoped

# The stage follows the facts (resolvers/lifecycle.py), and a manager may set it with a reason;
# either way the move is recorded. A contact's own edit would move it unrecorded.
LIFECYCLE_BY_HAND = (
    "The lifecycle stage follows the contact's activities and deals: a sales manager or an "
    "admin may set it, with a reason, through setContactLifecycle."
)

CONTACT_ORDER = {
    "CREATED_AT": BY_ID,
    "UPDATED_AT": BY_UPDATED_AT,
    "LAST_NAME": SortKey("LAST_NAME", "last_name"),
}


async def list_contacts(
    ctx: RequestContext, page: PageRequest, filters: dict[str, Any], order: str, descending: bool
) -> Page[Contact]:
    query = scoped(ctx, Contact)
    if filters.get("search"):
        query = query.filter(
            search_condition(filters["search"], ["first_name", "last_name", "email"])
        )
    if filters.get("owner_ids"):
        query = query.filter(owner_id__in=filters["owner_ids"])
    if filters.get("account_id") is not None:
        query = query.filter(account_id=filters["account_id"])
    if filters.get("lifecycle_stages"):
        query = query.filter(lifecycle_stage__in=filters["lifecycle_stages"])
    if filters.get("tags"):
        tagged = ContactTag.filter(
            tag__in=clean_tags(filters["tags"], "filter.tags"),
            contact__organization_id=ctx.require_viewer().organization_id,
        )
        query = query.filter(id__in=Subquery(tagged.values("contact_id")))
    if filters.get("updated_since") is not None:
        query = query.filter(updated_at__gte=filters["updated_since"])
    return await paginate(query, page, CONTACT_ORDER[order], descending=descending)


async def _clean(ctx: RequestContext, values: dict[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for name in ("first_name", "last_name"):
        if name in values:
            field = "firstName" if name == "first_name" else "lastName"
            cleaned[name] = validation.text(values[name] or "", field, max_length=100)
    if "email" in values:
        cleaned["email"] = validation.optional_email(values["email"])
    if "phone" in values:
        cleaned["phone"] = validation.optional_text(values["phone"], "phone", max_length=50)
    if "title" in values:
        cleaned["title"] = validation.optional_text(values["title"], "title", max_length=150)
    if values.get("do_not_contact") is not None:
        cleaned["do_not_contact"] = values["do_not_contact"]
    if values.get("lifecycle_stage") is not None:
        raise bad_input("lifecycleStage", LIFECYCLE_BY_HAND)
    if "account_id" in values:
        account_id = values["account_id"]
        if account_id is not None:
            await referenced_account(ctx, account_id, "accountId")
        cleaned["account_id"] = account_id
    return cleaned


MAX_TAGS = 20


def clean_tags(values: list[str] | None, field: str = "tags") -> list[str]:
    """Tags in lower case, each once, in the order given."""
    tags: dict[str, None] = {}
    for value in values or []:
        tags[validation.single_line(value.casefold(), field, max_length=50)] = None
    if len(tags) > MAX_TAGS:
        raise bad_input(field, f"At most {MAX_TAGS} tags.")
    return list(tags)


async def _set_tags(contact: Contact, tags: list[str]) -> None:
    await ContactTag.filter(contact_id=contact.id).exclude(tag__in=tags).delete()
    kept = set(await ContactTag.filter(contact_id=contact.id).values_list("tag", flat=True))
    await ContactTag.bulk_create(
        [ContactTag(contact_id=contact.id, tag=tag) for tag in tags if tag not in kept]
    )


async def create_contact(ctx: RequestContext, values: dict[str, Any]) -> Contact:
    viewer = ctx.require_viewer()
    cleaned = await _clean(ctx, values)
    tags = clean_tags(values.get("tags"))
    owner = viewer
    if values.get("owner_id") is not None:
        owner = await referenced_user(ctx, values["owner_id"], "ownerId")
        await check_assignable(ctx, owner)
    async with in_transaction():
        contact = await Contact.create(
            organization_id=viewer.organization_id, owner=owner, **cleaned
        )
        await _set_tags(contact, tags)
        initial = {"owner_id": owner.id, **cleaned, "tags": sorted(tags) or None}
        created = {name: (None, value) for name, value in initial.items()}
        await record_event(ctx, CONTACT, contact.id, EventKind.CREATED, diff=created)
        return contact


async def update_contact(ctx: RequestContext, contact_id: int, values: dict[str, Any]) -> Contact:
    async with in_transaction():
        contact = await get_or_not_found(ctx, Contact, contact_id, "contact")
        await require_edit(ctx, contact.owner_id, "contact")
        cleaned = await _clean(ctx, values)
        if values.get("owner_id") is not None and values["owner_id"] != contact.owner_id:
            owner = await referenced_user(ctx, values["owner_id"], "ownerId")
            await check_assignable(ctx, owner)
            cleaned["owner_id"] = owner.id
        diff = changed_fields(contact, cleaned)
        if "tags" in values:
            tags = clean_tags(values["tags"])
            before = sorted(
                await ContactTag.filter(contact_id=contact.id).values_list("tag", flat=True)
            )
            if sorted(tags) != before:
                diff["tags"] = (before or None, sorted(tags) or None)
            await _set_tags(contact, tags)
        if cleaned or "tags" in values:
            contact.update_from_dict(cleaned)
            await contact.save(update_fields=[*cleaned, "updated_at"])
        if diff:
            await record_event(ctx, CONTACT, contact.id, EventKind.UPDATED, diff=diff)
        return contact


async def delete_contact(ctx: RequestContext, contact_id: int) -> Contact:
    """Soft-delete a contact; it stops being anyone's primary contact or participant."""
    async with in_transaction():
        contact = await get_or_not_found(ctx, Contact, contact_id, "contact")
        await require_edit(ctx, contact.owner_id, "contact")
        now = datetime.now(UTC)
        changed: list[tuple[DealKind[Any], int, EventKind]] = []
        kinds: tuple[DealKind[Any], ...] = (LEAD, OPPORTUNITY)
        for kind in kinds:
            primary_of: list[int] = await kind.model.filter(contact_id=contact.id).values_list(
                "id", flat=True
            )
            links = await kind.participant.filter(contact_id=contact.id).values("record_id")
            participant_of = [link["record_id"] for link in links]
            await kind.model.filter(contact_id=contact.id).update(
                contact_id=None, contact_role=None
            )
            await kind.participant.filter(contact_id=contact.id).delete()
            # Losing a role changes the record too (as removeParticipant does): a new update
            # time for syncing partners, a new version for CONFLICT checks, and an event.
            touched = {*primary_of, *participant_of}
            await kind.model.filter(id__in=touched).update(updated_at=now, version=F("version") + 1)
            changed += [(kind, pk, EventKind.PRIMARY_CONTACT_SET) for pk in primary_of]
            changed += [(kind, pk, EventKind.PARTICIPANT_REMOVED) for pk in participant_of]
        contact.deleted_at = now
        await contact.save(update_fields=["deleted_at", "updated_at"])
        for kind, pk, event_kind in changed:
            if event_kind == EventKind.PRIMARY_CONTACT_SET:
                unset = {"contact_id": (contact.id, None)}
                await record_event(ctx, kind, pk, event_kind, diff=unset)
            else:
                removed = {"contact_id": contact.id}
                await record_event(ctx, kind, pk, event_kind, details=removed)
        await record_event(ctx, CONTACT, contact.id, EventKind.DELETED)  # the last: it ends feeds
        return contact
