"""Timelines: the activities, comments and changes of a record in one list, newest first.

A timeline merges several tables (its sources). Each page asks every source for its next rows after
the cursor, in the same order, and keeps the newest; so a page costs one statement per source
whatever the depth, and the cursor (time, source, id) stays exact across sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from tortoise.expressions import Q, Subquery
from tortoise.models import Model
from tortoise.queryset import QuerySet

from models import ActivityAttendee, Comment, Contact, Event, EventKind, LifecycleChange
from resolvers import cursors
from resolvers.access import ACTIVITIES, deals_of
from resolvers.context import RequestContext
from resolvers.deal_kinds import LEAD, OPPORTUNITY, DealKind
from resolvers.errors import bad_input
from resolvers.pagination import (
    Count,
    CountOnce,
    PageRequest,
    Window,
    count_up_to,
    parse_time,
)


class EntryKind(str, Enum):
    """What a timeline entry is. At the same time, entries come in this order, newest first."""

    CHANGE = "CHANGE"
    COMMENT = "COMMENT"
    ACTIVITY = "ACTIVITY"
    LIFECYCLE = "LIFECYCLE"


_RANK = {kind: rank for rank, kind in enumerate(reversed(EntryKind))}

# Events that a timeline shows as their own entries (the comment, the activity), not as changes.
_SHOWN_APART = [
    EventKind.COMMENT_ADDED,
    EventKind.ACTIVITY_PLANNED,
    EventKind.ACTIVITY_RESCHEDULED,
    EventKind.ACTIVITY_COMPLETED,
    EventKind.ACTIVITY_CANCELLED,
    EventKind.MESSAGE_SENT,
]


@dataclass(frozen=True)
class Source:
    kind: EntryKind
    query: QuerySet[Any]
    time_field: str  # when the entry happened (for an activity: when it is scheduled)


@dataclass
class Entry:
    kind: EntryKind
    at: datetime
    row: Model
    cursor: str


@dataclass
class TimelinePage(Window[Entry]):
    entries: list[Entry]
    has_next_page: bool
    sources: list[Source]
    count_limit: int  # how far totalCount counts each kind of entry
    has_previous_page: bool = False  # timelines page forward

    @property
    def items(self) -> list[Entry]:  # type: ignore[override]
        return self.entries

    def cursor(self, entry: Entry) -> str:
        return entry.cursor

    def __post_init__(self) -> None:
        self.total_count = CountOnce(self._count)

    async def _count(self) -> Count:
        counts = [await count_up_to(source.query, self.count_limit) for source in self.sources]
        return Count(sum(count.value for count in counts), all(count.exact for count in counts))


def _encode(kind: EntryKind, at: datetime, pk: int) -> str:
    return cursors.encode("TIMELINE", at.isoformat(), kind.value, pk)


_INVALID = "Invalid cursor: use a cursor from this timeline."


def _decode(cursor: str) -> tuple[datetime, EntryKind, int]:
    values = cursors.decode(cursor, "after", _INVALID)
    try:
        name, at, kind, pk = values
        if name != "TIMELINE" or type(pk) is not int or not 1 <= pk <= 2**63 - 1:
            raise ValueError("not a timeline cursor")
        return parse_time(at), EntryKind(kind), pk
    except (ValueError, TypeError):
        raise cursors.invalid("after", _INVALID) from None


def _after(source: Source, cursor: tuple[datetime, EntryKind, int]) -> Q:
    """The rows of `source` that come after the cursor's entry, newest first."""
    at, kind, pk = cursor
    field = source.time_field
    older: dict[str, Any] = {f"{field}__lt": at}
    if _RANK[source.kind] > _RANK[kind]:  # at the same time, this source's entries came first
        return Q(**older)
    same_time: dict[str, Any] = {field: at}
    if _RANK[source.kind] < _RANK[kind]:
        return Q(**older) | Q(**same_time)
    return Q(**older) | Q(**same_time, id__lt=pk)


async def page(
    sources: list[Source], request: PageRequest, include: list[EntryKind] | None
) -> TimelinePage:
    """A page forward (`first`, `after`) through the sources' entries, newest first."""
    bounds = request.bounds
    size = bounds.default if request.first is None else request.first
    if not 0 <= size <= bounds.largest:
        raise bad_input("first", f"first must be between 0 and {bounds.largest}.")
    chosen = [source for source in sources if include is None or source.kind in include]
    cursor = _decode(request.after) if request.after else None
    found: list[Entry] = []
    for source in chosen:
        query = source.query if cursor is None else source.query.filter(_after(source, cursor))
        rows = await query.order_by(f"-{source.time_field}", "-id").limit(size + 1)
        for row in rows:
            at = getattr(row, source.time_field)
            found.append(Entry(source.kind, at, row, _encode(source.kind, at, row.pk)))
    found.sort(key=lambda entry: (entry.at, _RANK[entry.kind], entry.row.pk), reverse=True)
    return TimelinePage(found[:size], len(found) > size, chosen, bounds.count_limit)


def _changes(record_filter: Q, organization_id: int) -> QuerySet[Event]:
    return Event.filter(record_filter, organization_id=organization_id).exclude(
        kind__in=_SHOWN_APART
    )


async def deal_sources(ctx: RequestContext, kind: DealKind[Any], record_id: int) -> list[Source]:
    """A lead's or opportunity's own activities, comments and changes (the caller read it)."""
    organization_id = ctx.require_viewer().organization_id
    link = "lead_id" if kind is LEAD else "opportunity_id"
    activities = (await ACTIVITIES.query(ctx)).filter(**{link: record_id})
    return [
        Source(EntryKind.ACTIVITY, activities, "scheduled_at"),
        Source(EntryKind.COMMENT, Comment.filter(**{kind.comment_field: record_id}), "created_at"),
        Source(
            EntryKind.CHANGE,
            _changes(Q(record_type=kind.name, record_id=record_id), organization_id),
            "created_at",
        ),
    ]


async def contact_sources(ctx: RequestContext, contact_id: int) -> list[Source]:
    """A contact's activities (linked to them, or attended) and lifecycle moves."""
    attended = Subquery(ActivityAttendee.filter(contact_id=contact_id).values("activity_id"))
    activities = (await ACTIVITIES.query(ctx)).filter(Q(contact_id=contact_id) | Q(id__in=attended))
    return [
        Source(EntryKind.ACTIVITY, activities, "scheduled_at"),
        Source(EntryKind.LIFECYCLE, LifecycleChange.filter(contact_id=contact_id), "created_at"),
    ]


async def account_sources(ctx: RequestContext, account_id: int) -> list[Source]:
    """An account's activities (its own, its contacts' and its deals'), and the comments and
    changes of its live leads and opportunities the viewer may read."""
    organization_id = ctx.require_viewer().organization_id
    kinds: tuple[DealKind[Any], ...] = (LEAD, OPPORTUNITY)
    readable = {kind: await deals_of(kind).query(ctx) for kind in kinds}

    def deals(kind: DealKind[Any]) -> Any:  # a fresh subquery per use
        return Subquery(readable[kind].filter(account_id=account_id).values("id"))

    contacts = Subquery(
        Contact.filter(
            account_id=account_id, organization_id=organization_id, deleted_at__isnull=True
        ).values("id")
    )
    activities = (await ACTIVITIES.query(ctx)).filter(
        Q(account_id=account_id)
        | Q(contact_id__in=contacts)
        | Q(lead_id__in=deals(LEAD))
        | Q(opportunity_id__in=deals(OPPORTUNITY))
    )
    comments = Comment.filter(
        Q(lead_id__in=deals(LEAD)) | Q(opportunity_id__in=deals(OPPORTUNITY)),
        organization_id=organization_id,
    )
    changes = _changes(
        Q(record_type=LEAD.name, record_id__in=deals(LEAD))
        | Q(record_type=OPPORTUNITY.name, record_id__in=deals(OPPORTUNITY)),
        organization_id,
    )
    return [
        Source(EntryKind.ACTIVITY, activities, "scheduled_at"),
        Source(EntryKind.COMMENT, comments, "created_at"),
        Source(EntryKind.CHANGE, changes, "created_at"),
    ]
