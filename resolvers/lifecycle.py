"""The contact lifecycle: PROSPECT -> POTENTIAL_CLIENT -> ACTIVE_CLIENT -> INACTIVE_CLIENT.

A contact's stage follows from facts: a won opportunity where they are the primary contact (or
at their account) makes an active client, one older than the organization's setting an inactive
client; a completed activity with them, a qualified lead or an open opportunity they take part in
makes a potential client. Stages move as those facts change (and with time, by the daily sweep),
never back from client to potential or from potential to prospect, and each move is recorded
with its reason. A manager may set a stage by hand, with a reason; it then stays until cleared.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.expressions import Q, Subquery
from tortoise.transactions import in_transaction

from models import (
    Activity,
    ActivityStatus,
    Contact,
    LeadStatus,
    LifecycleChange,
    LifecycleStage,
    Opportunity,
    OpportunityStatus,
    Organization,
    Role,
    Visibility,
)
from resolvers import validation
from resolvers.context import RequestContext
from resolvers.deal_kinds import LEAD, OPPORTUNITY, DealKind
from resolvers.errors import bad_input, forbidden
from resolvers.pagination import BY_ID, Page, PageRequest, paginate
from resolvers.permissions import require_edit
from resolvers.records import get_or_not_found

RANK = {
    LifecycleStage.PROSPECT: 0,
    LifecycleStage.POTENTIAL_CLIENT: 1,
    LifecycleStage.ACTIVE_CLIENT: 2,
    LifecycleStage.INACTIVE_CLIENT: 2,
}


async def derive(
    contact: Contact, inactive_after_days: int, now: datetime
) -> tuple[LifecycleStage, str, str]:
    """The stage the facts give a contact now: (stage, cause, reason)."""
    won = Q(contact_id=contact.id)
    if contact.account_id is not None:
        won |= Q(account_id=contact.account_id)
    last_win = (
        await Opportunity.filter(won, status=OpportunityStatus.WON, deleted_at__isnull=True)
        .order_by("-closed_at")
        .first()
    )
    if last_win is not None and last_win.closed_at is not None:
        day = last_win.closed_at.date().isoformat()
        name = _named(last_win.name, last_win.visibility, "opportunity")
        if now - last_win.closed_at > timedelta(days=inactive_after_days):
            return (
                LifecycleStage.INACTIVE_CLIENT,
                "WIN_EXPIRED",
                f"The last win, {name} on {day}, is older than {inactive_after_days} days.",
            )
        return LifecycleStage.ACTIVE_CLIENT, "OPPORTUNITY_WON", f"Won on {day}: {name}."
    done = await Activity.filter(
        Q(contact_id=contact.id) | Q(attendees__contact_id=contact.id),
        status=ActivityStatus.DONE,
        deleted_at__isnull=True,
    ).first()
    if done is not None:
        private = await _of_private_deal(done)
        what = done.kind.value.title() + ("" if private else f" {done.subject!r}")
        return LifecycleStage.POTENTIAL_CLIENT, "ACTIVITY_COMPLETED", f"{what} done."
    for kind, status, cause in (
        (LEAD, LeadStatus.QUALIFIED, "LEAD_QUALIFIED"),
        (OPPORTUNITY, OpportunityStatus.OPEN, "OPPORTUNITY_OPEN"),
    ):
        record = await _involving(kind, contact.id).filter(status=status).first()
        if record is not None:
            title = _named(getattr(record, kind.title_field), record.visibility, kind.label)
            return LifecycleStage.POTENTIAL_CLIENT, cause, f"{kind.name}: {title}."
    return LifecycleStage.PROSPECT, "NO_CONTACT_YET", "No completed activity or deal yet."


# A lifecycle move's reason is read by everyone who reads the contact: it names a lead,
# opportunity or activity only when everyone in the organization may read that record.


def _named(title: str, visibility: Visibility, what: str) -> str:
    return repr(title) if visibility == Visibility.ORGANIZATION else f"a private {what}"


async def _of_private_deal(activity: Activity) -> bool:
    for kind, deal_id in ((LEAD, activity.lead_id), (OPPORTUNITY, activity.opportunity_id)):
        if deal_id is not None:
            visibility = await kind.model.filter(id=deal_id).values_list("visibility", flat=True)
            if visibility and visibility[0] != Visibility.ORGANIZATION:
                return True
    return False


def _involving(kind: DealKind[Any], contact_id: int) -> Any:
    participants = Subquery(kind.participant.filter(contact_id=contact_id).values("record_id"))
    return kind.model.filter(
        Q(contact_id=contact_id) | Q(id__in=participants), deleted_at__isnull=True
    )


async def _settle(
    contacts: Iterable[Contact],
    actor_id: int | None,
    now: datetime,
    days: dict[int, int],
    *,
    back_to_facts: bool = False,
) -> None:
    """Move each contact to the stage its facts give, forward only (unless `back_to_facts`: a
    cleared override returns to what the facts say)."""
    for contact in contacts:
        if contact.lifecycle_pinned or contact.deleted_at is not None:
            continue
        if contact.organization_id not in days:
            organization = await Organization.get(id=contact.organization_id)
            days[contact.organization_id] = organization.inactive_client_after_days
        stage, cause, reason = await derive(contact, days[contact.organization_id], now)
        if stage == contact.lifecycle_stage:
            continue
        if RANK[stage] < RANK[contact.lifecycle_stage] and not back_to_facts:
            continue
        await _move(contact, stage, cause, reason, actor_id)


async def _move(
    contact: Contact, stage: LifecycleStage, cause: str, reason: str, actor_id: int | None
) -> None:
    await LifecycleChange.create(
        contact_id=contact.id,
        from_stage=contact.lifecycle_stage,
        to_stage=stage,
        cause=cause,
        reason=reason,
        actor_id=actor_id,
    )
    contact.lifecycle_stage = stage
    await contact.save(update_fields=["lifecycle_stage", "lifecycle_pinned", "updated_at"])


async def refresh_contacts(ctx: RequestContext, contact_ids: Iterable[int | None]) -> None:
    """Move these contacts to the stage their facts now give. In the transaction of the change."""
    await settle(contact_ids, ctx.require_viewer().id)


async def settle(contact_ids: Iterable[int | None], actor_id: int | None = None) -> None:
    """Move these contacts to the stage their facts give, each move recorded (by `actor_id`,
    or by no one: the system, seeding the demo)."""
    ids = {pk for pk in contact_ids if pk is not None}
    if ids:
        contacts = await Contact.filter(id__in=ids, deleted_at__isnull=True)
        await _settle(contacts, actor_id, datetime.now(UTC), {})


async def refresh_deal(ctx: RequestContext, kind: DealKind[Any], row: Any) -> None:
    """After a change to a lead or opportunity: its primary contact and participants, and for a
    won opportunity everyone at its account."""
    ids = {row.contact_id}
    ids |= set(await kind.participant.filter(record_id=row.id).values_list("contact_id", flat=True))
    if kind is OPPORTUNITY and row.status == OpportunityStatus.WON:
        ids |= set(await Contact.filter(account_id=row.account_id).values_list("id", flat=True))
    await refresh_contacts(ctx, ids)


async def sweep(now: datetime | None = None) -> int:
    """The daily pass for the passage of time: active clients whose last win has grown older than
    their organization's setting become inactive. Returns how many moved."""
    moment = now or datetime.now(UTC)
    contacts = await Contact.filter(
        lifecycle_stage=LifecycleStage.ACTIVE_CLIENT,
        lifecycle_pinned=False,
        deleted_at__isnull=True,
    )
    days: dict[int, int] = {}
    before = {contact.id: contact.lifecycle_stage for contact in contacts}
    await _settle(contacts, None, moment, days)
    return sum(1 for contact in contacts if contact.lifecycle_stage != before[contact.id])


async def set_stage(
    ctx: RequestContext, contact_id: int, stage: LifecycleStage | None, reason: str
) -> Contact:
    """A manager's override (pinned until cleared with stage null, which goes back to the facts)."""
    viewer = ctx.require_viewer()
    if viewer.role == Role.SELLER:
        raise forbidden("Only sales managers and admins may set a contact's lifecycle stage.")
    text = validation.text(reason, "reason", max_length=1000)
    contact = await get_or_not_found(ctx, Contact, contact_id, "contact", "contactId")
    await require_edit(ctx, contact.owner_id, "contact")
    async with in_transaction():
        contact = await get_or_not_found(ctx, Contact, contact.id, "contact", "contactId")
        if stage is None:
            contact.lifecycle_pinned = False
            await contact.save(update_fields=["lifecycle_pinned", "updated_at"])
            await _settle([contact], viewer.id, datetime.now(UTC), {}, back_to_facts=True)
            return contact
        contact.lifecycle_pinned = True
        if stage == contact.lifecycle_stage:
            await contact.save(update_fields=["lifecycle_pinned", "updated_at"])
            return contact
        await _move(contact, stage, "MANAGER_OVERRIDE", text, viewer.id)
        return contact


async def set_inactive_after(organization_id: int, days: int) -> Organization:
    if not 1 <= days <= 3650:
        raise bad_input("days", "Between 1 and 3650 days.")
    organization = await Organization.get(id=organization_id)
    organization.inactive_client_after_days = days
    await organization.save(update_fields=["inactive_client_after_days", "updated_at"])
    return organization


async def list_changes(ctx: RequestContext, contact_id: int, page: PageRequest) -> Page[Any]:
    """A contact's lifecycle moves, newest first (the caller has read the contact)."""
    return await paginate(
        LifecycleChange.filter(contact_id=contact_id), page, BY_ID, descending=True
    )
