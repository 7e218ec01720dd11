"""Activities: plan, reschedule, complete, cancel; the agenda and the overdue ones.

An activity on a lead or opportunity is also an event in its history, so its followers hear of
it live; it is readable by whoever may read that record (other activities: by the organization),
and changed by its owner, the owner's managers and admins.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models import Activity, ActivityAttendee, ActivityStatus, Contact, EventKind, Role, User
from resolvers import lifecycle, validation
from resolvers.access import ACTIVITIES, deals_of, user_reads
from resolvers.context import RequestContext
from resolvers.deal import get_readable
from resolvers.deal_kinds import LEAD, OPPORTUNITY, DealKind
from resolvers.errors import bad_input, conflict, forbidden, not_found
from resolvers.events import record_event
from resolvers.pagination import Page, PageRequest, paginate, time_key
from resolvers.permissions import check_assignable, manages_owner, require_edit, team_ids
from resolvers.records import referenced_account, referenced_contact, referenced_user, scoped

MAX_DURATION_MINUTES = 7 * 24 * 60
BY_SCHEDULE = time_key("SCHEDULED_AT", "scheduled_at")


def deal_of(row: Activity) -> tuple[DealKind[Any], int] | None:
    if row.lead_id is not None:
        return LEAD, row.lead_id
    if row.opportunity_id is not None:
        return OPPORTUNITY, row.opportunity_id
    return None


def _scheduled_at(starts_at: datetime | None, due_date: date | None) -> datetime:
    if starts_at is not None:
        return starts_at.astimezone(UTC)
    assert due_date is not None
    return datetime.combine(due_date, time(0), tzinfo=UTC)


async def get_activity(ctx: RequestContext, activity_id: int) -> Activity:
    row = await ACTIVITIES.get(ctx, activity_id)
    if row is None:
        raise not_found("activity")
    return row  # type: ignore[no-any-return]


async def _get_editable(ctx: RequestContext, activity_id: int) -> Activity:
    """The activity, locked until the transaction ends, if the viewer may change it."""
    await get_activity(ctx, activity_id)
    row = await Activity.filter(id=activity_id).select_for_update().first()
    assert row is not None
    await require_edit(ctx, row.owner_id, "activity")
    return row


def _schedule(values: dict[str, Any], row: Activity | None) -> dict[str, Any]:
    """starts_at, due_date and duration, checked together: an activity has a start or a due date."""
    cleaned: dict[str, Any] = {}
    for name in ("starts_at", "due_date", "duration_minutes"):
        if name in values:
            cleaned[name] = values[name]
    if cleaned.get("starts_at") is not None:
        cleaned["starts_at"] = validation.moment(cleaned["starts_at"], "startsAt")
    if cleaned.get("due_date") is not None:
        cleaned["due_date"] = validation.close_date(cleaned["due_date"], "dueDate")
    starts_at = cleaned.get("starts_at", row.starts_at if row else None)
    due_date = cleaned.get("due_date", row.due_date if row else None)
    if starts_at is None and due_date is None:
        raise bad_input("startsAt", "An activity needs a start time (startsAt) or a due date.")
    duration = cleaned.get("duration_minutes")
    if duration is not None and not 0 < duration <= MAX_DURATION_MINUTES:
        raise bad_input("durationMinutes", f"Between 1 and {MAX_DURATION_MINUTES} minutes.")
    cleaned["scheduled_at"] = _scheduled_at(starts_at, due_date)
    return cleaned


async def _links(ctx: RequestContext, values: dict[str, Any]) -> dict[str, Any]:
    links: dict[str, Any] = {}
    if values.get("account_id") is not None:
        links["account_id"] = (await referenced_account(ctx, values["account_id"], "accountId")).id
    if values.get("contact_id") is not None:
        links["contact_id"] = (await referenced_contact(ctx, values["contact_id"], "contactId")).id
    if values.get("lead_id") is not None and values.get("opportunity_id") is not None:
        raise bad_input("opportunityId", "An activity is about one lead or one opportunity.")
    deals: tuple[tuple[DealKind[Any], str, str], ...] = (
        (LEAD, "lead_id", "leadId"),
        (OPPORTUNITY, "opportunity_id", "opportunityId"),
    )
    for kind, name, field in deals:
        if values.get(name) is not None:
            if await deals_of(kind).get(ctx, values[name]) is None:
                raise bad_input(field, f"No {kind.label} with this id.")
            links[name] = values[name]
    if not links:
        raise bad_input(
            "accountId", "Link the activity to an account, a contact, a lead or an opportunity."
        )
    return links


async def _check_owner_reads(ctx: RequestContext, owner_id: int, links: dict[str, Any]) -> None:
    """An activity's owner must see it: one on a private record goes only to its readers."""
    for kind, name in ((LEAD, "lead_id"), (OPPORTUNITY, "opportunity_id")):
        if links.get(name) is None:
            continue
        deal = await kind.model.get(id=links[name])
        if not await user_reads(await User.get(id=owner_id), kind, deal):
            raise bad_input("ownerId", f"This user may not read the {kind.label}.")


async def _attendees(ctx: RequestContext, contact_ids: list[int] | None) -> list[int]:
    unique = list(dict.fromkeys(contact_ids or []))
    found = set(await scoped(ctx, Contact).filter(id__in=unique).values_list("id", flat=True))
    missing = [index for index, pk in enumerate(contact_ids or []) if pk not in found]
    if missing:
        raise bad_input(f"attendeeIds.{missing[0]}", "No contact with this id.")
    return unique


async def _log(
    ctx: RequestContext,
    row: Activity,
    kind: EventKind,
    details: dict[str, Any] | None = None,
    diff: dict[str, tuple[Any, Any]] | None = None,
) -> None:
    deal = deal_of(row)
    if deal is not None:
        details = {"activity_id": row.id, "activity_kind": row.kind, **(details or {})}
        await record_event(ctx, deal[0], deal[1], kind, diff=diff, details=details)


async def plan_activity(ctx: RequestContext, values: dict[str, Any]) -> Activity:
    viewer = ctx.require_viewer()
    cleaned: dict[str, Any] = {
        "kind": values["kind"],
        "subject": validation.text(values.get("subject") or "", "subject"),
        "notes": validation.optional_text(values.get("notes"), "notes", max_length=10_000),
        **_schedule(values, None),
    }
    owner_id = viewer.id
    if values.get("owner_id") is not None and values["owner_id"] != viewer.id:
        owner = await referenced_user(ctx, values["owner_id"], "ownerId")
        await check_assignable(ctx, owner)
        owner_id = owner.id
    async with in_transaction():
        links = await _links(ctx, values)
        if owner_id != viewer.id:
            await _check_owner_reads(ctx, owner_id, links)
        attendees = await _attendees(ctx, values.get("attendee_ids"))
        row = await Activity.create(
            organization_id=viewer.organization_id, owner_id=owner_id, **cleaned, **links
        )
        await ActivityAttendee.bulk_create(
            [ActivityAttendee(activity_id=row.id, contact_id=pk) for pk in attendees]
        )
        when = {"starts_at": row.starts_at, "due_date": row.due_date}
        await _log(ctx, row, EventKind.ACTIVITY_PLANNED, {"subject": row.subject, **when})
        return row


async def reschedule_activity(
    ctx: RequestContext, activity_id: int, values: dict[str, Any]
) -> Activity:
    async with in_transaction():
        row = await _get_editable(ctx, activity_id)
        _require_planned(row, "rescheduled")
        cleaned = _schedule(values, row)
        diff = {name: (getattr(row, name), value) for name, value in cleaned.items()}
        diff = {name: pair for name, pair in diff.items() if pair[0] != pair[1]}
        if not diff:
            return row
        await _save(row, {name: new for name, (_, new) in diff.items()})
        diff.pop("scheduled_at", None)
        await _log(ctx, row, EventKind.ACTIVITY_RESCHEDULED, diff=diff)
        return row


async def complete_activity(ctx: RequestContext, activity_id: int, outcome: str | None) -> Activity:
    text = validation.optional_text(outcome, "outcome", max_length=10_000)
    async with in_transaction():
        row = await _get_editable(ctx, activity_id)
        _require_planned(row, "completed")
        await _save(
            row, {"status": ActivityStatus.DONE, "outcome": text, "closed_at": datetime.now(UTC)}
        )
        await _log(ctx, row, EventKind.ACTIVITY_COMPLETED, {"outcome": text})
        attendees = await ActivityAttendee.filter(activity_id=row.id).values_list("contact_id")
        await lifecycle.refresh_contacts(ctx, [row.contact_id, *(pk for (pk,) in attendees)])
        return row


async def cancel_activity(ctx: RequestContext, activity_id: int, reason: str | None) -> Activity:
    text = validation.optional_text(reason, "reason", max_length=10_000)
    async with in_transaction():
        row = await _get_editable(ctx, activity_id)
        _require_planned(row, "cancelled")
        await _save(
            row,
            {"status": ActivityStatus.CANCELLED, "outcome": text, "closed_at": datetime.now(UTC)},
        )
        await _log(ctx, row, EventKind.ACTIVITY_CANCELLED, {"reason": text})
        return row


def _require_planned(row: Activity, verb: str) -> None:
    if row.status != ActivityStatus.PLANNED:
        raise conflict(f"Only a planned activity can be {verb}; this one is {row.status.value}.")


async def _save(row: Activity, changes: dict[str, Any]) -> None:
    row.update_from_dict({**changes, "version": row.version + 1})
    await row.save(update_fields=[*changes, "version", "updated_at"])


def _iso(value: date | datetime | None) -> str | None:
    return None if value is None else value.isoformat()


async def _agenda_owners(
    ctx: RequestContext, owner_id: int | None, owner_ids: list[int] | None, team: bool
) -> list[int] | None:
    """Whose activities an agenda shows (None: everyone's, an admin's team). One user's: the
    viewer's, or a team member's for their managers and anyone's for admins; several users'
    (`owner_ids`) under the same rule; `team`: the viewer's and their reports' (direct and
    indirect), so a seller's own."""
    viewer = ctx.require_viewer()
    if team:
        if owner_id is not None or owner_ids:
            raise bad_input("filter.team", "Give team, or ownerId / ownerIds, not both.")
        if viewer.role == Role.ADMIN:
            return None
        return [viewer.id, *sorted(await team_ids(ctx))]
    wanted: list[tuple[int, str]] = []
    if owner_id is not None:
        wanted.append((owner_id, "filter.ownerId"))
    wanted += [(pk, f"filter.ownerIds.{index}") for index, pk in enumerate(owner_ids or [])]
    for owner, field in wanted:
        if owner != viewer.id:
            await referenced_user(ctx, owner, field)
            if not await manages_owner(ctx, owner):
                raise forbidden("Only admins and their managers see another user's agenda.")
    return list(dict.fromkeys(owner for owner, _ in wanted)) or [viewer.id]


async def agenda(
    ctx: RequestContext,
    page: PageRequest,
    owner_id: int | None,
    start: datetime | None,
    end: datetime | None,
    overdue: bool,
    statuses: list[ActivityStatus] | None,
    updated_since: datetime | None = None,
    *,
    owner_ids: list[int] | None = None,
    team: bool = False,
) -> Page[Activity]:
    """Activities in time order, of the users `_agenda_owners` gives. `overdue`: planned ones
    whose time or due date has passed."""
    owners = await _agenda_owners(ctx, owner_id, owner_ids, team)
    if start is not None and end is not None and end <= start:
        raise bad_input("to", "`to` must be after `from`.")
    query = await ACTIVITIES.query(ctx)
    if owners is not None:
        query = query.filter(owner_id__in=owners)
    if start is not None:
        query = query.filter(scheduled_at__gte=start)
    if end is not None:
        query = query.filter(scheduled_at__lt=end)
    if statuses:
        query = query.filter(status__in=statuses)
    if updated_since is not None:
        query = query.filter(updated_at__gte=updated_since)
    if overdue:
        now = datetime.now(UTC)
        today = datetime.combine(now.date(), time(0), tzinfo=UTC)
        query = query.filter(status=ActivityStatus.PLANNED).filter(
            Q(starts_at__lt=now) | Q(starts_at__isnull=True, scheduled_at__lt=today)
        )
    return await paginate(query, page, BY_SCHEDULE, descending=False)


async def list_deal_activities(
    ctx: RequestContext, kind: DealKind[Any], record_id: int, page: PageRequest
) -> Page[Activity]:
    """The activities of a lead or opportunity the caller already read, in time order."""
    await get_readable(ctx, kind, record_id, None)
    column = "lead_id" if kind is LEAD else "opportunity_id"
    query = scoped(ctx, Activity).filter(**{column: record_id})
    return await paginate(query, page, BY_SCHEDULE, descending=False)
