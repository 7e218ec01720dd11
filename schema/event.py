"""The event log as the API shows it (history, notifications), and the viewer's notifications."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry import relay
from strawberry.scalars import JSON

from models import Event as EventRow
from models import EventKind
from models import Notification as NotificationRow
from resolvers import access, events
from resolvers import notification as notifications
from resolvers.context import RequestContext
from resolvers.deal import (
    names_other_deals,
    readable_references,
    redacted_changes,
    unreadable_records,
)
from resolvers.deal_kinds import FOLLOWED, KINDS
from schema.base import Connection, Info, connection, context, page_request, pks_of
from schema.engine.plans import batched, one
from schema.records import Declared, declared, derived, private_derived, private_row, record
from schema.user import User, users_of

if TYPE_CHECKING:
    from schema.deal import Deal
    from schema.follow import Followable

DealRef = Annotated["Deal", strawberry.lazy("schema.deal")]
FollowableRef = Annotated["Followable", strawberry.lazy("schema.follow")]

EventKindEnum = strawberry.enum(
    EventKind,
    name="EventKind",
    description="What happened to a lead, an opportunity, an account or a contact.",
)


async def _actors(events: list[Event], ctx: RequestContext) -> list[User | None]:
    return await users_of(ctx, [event.actor_id for event in events])


async def _unreadable(events: list[Event], ctx: RequestContext) -> list[bool]:
    """Whether the viewer may no longer read each event's record (reached through an old
    notification): its comment and field values are then redacted."""
    return await unreadable_records(ctx, [event.row for event in events])


async def _changes(events: list[Event], ctx: RequestContext) -> list[JSON]:
    hidden = await _unreadable(events, ctx)
    changes = await readable_references(ctx, [event.row.changes for event in events])
    return [
        JSON(redacted_changes(change) if out_of_reach else change)
        for change, out_of_reach in zip(changes, hidden, strict=True)
    ]


@record(EventRow, read=access.EVENTS)
@strawberry.type(
    description="A change, comment or development of a lead, an opportunity, an account or a "
    "contact."
)
class Event(relay.Node, Declared):
    id: relay.NodeID[int]
    kind: EventKind
    created_at: datetime
    record_type: str = strawberry.field(
        description='"Lead", "Opportunity", "Account" or "Contact".'
    )
    record_id: strawberry.ID = derived(
        lambda row: strawberry.ID(relay.to_base64(row.record_type, row.record_id)),
        description="The record's global id.",
    )
    cursor: str = derived(
        lambda row: events.event_cursor(row.id),
        description="Where this event stands in the log: pass it as `after` to a subscription "
        "to resume right after it.",
    )
    actor_id: strawberry.Private[int | None]
    row: strawberry.Private[EventRow] = private_row()
    # Whether a live event's result may be computed once for all its subscribers.
    shareable: strawberry.Private[bool] = private_derived(
        lambda row: not names_other_deals(row.changes)
    )

    @strawberry.field(
        description='Field updates as {"field": {"old": ..., "new": ...}} (ids are global ids, '
        "money is a decimal string); for role and comment events, their details. The id of "
        "another lead or opportunity the viewer may not read is null. When the viewer may no "
        "longer read the record (an old notification of a deal they were removed from), every "
        "value is null (`redacted`): which fields changed shows, not what they were.",
        # The same for all but where an event names another deal: such an event says so
        # (`shareable`), and each subscriber then computes its own.
        metadata=batched(_changes, same_for_all=True),
    )
    async def changes(self, info: Info) -> JSON:
        return await one(_changes, self, info)

    @strawberry.field(
        description="Whether `changes` are withheld because the viewer may no longer read the "
        "record.",
        metadata=batched(_unreadable, same_for_all=True),
    )
    async def redacted(self, info: Info) -> bool:
        return await one(_unreadable, self, info)

    @strawberry.field(description="Who did it.", metadata=batched(_actors, same_for_all=True))
    async def actor(self, info: Info) -> User | None:
        return await one(_actors, self, info)

    @strawberry.field(
        description="The lead or opportunity, unless it was deleted or is out of reach now "
        "(null for an account's or a contact's event: see `subject`)."
    )
    async def record(self, info: Info) -> DealRef | None:
        if self.row.record_type not in KINDS:
            return None
        row = await events.event_record(context(info), self.row)
        return None if row is None else declared(KINDS[self.row.record_type].model).make(row)

    @strawberry.field(
        description="The record (a lead, an opportunity, an account or a contact), unless it "
        "was deleted or is out of reach now."
    )
    async def subject(self, info: Info) -> FollowableRef | None:
        row = await events.event_record(context(info), self.row)
        kind = FOLLOWED[self.row.record_type]
        return None if row is None else declared(kind.model).make(row)


@record(NotificationRow, read=access.NOTIFICATIONS)
@strawberry.type(description="An event on a record the viewer follows, done by someone else.")
class Notification(relay.Node, Declared):
    id: relay.NodeID[int]
    read_at: datetime | None
    created_at: datetime
    event_id: strawberry.Private[int]

    @strawberry.field
    async def event(self, info: Info) -> Event:
        row = await context(info).loaders.event.load(self.event_id)
        assert row is not None
        return Event.from_row(row)


@strawberry.type
class NotificationQueries:
    @strawberry.field(description="The viewer's notifications, newest first.")
    async def notifications(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        unread_only: bool = False,
    ) -> Connection[Notification]:
        page = await notifications.list_notifications(
            context(info), page_request(first, after, last, before), unread_only
        )
        return connection(page, Notification.from_row)

    @strawberry.field(description="How many of the viewer's notifications are unread.")
    async def unread_notification_count(self, info: Info) -> int:
        return await notifications.unread_count(context(info))


@strawberry.type
class NotificationMutations:
    @strawberry.mutation(
        description="Mark the given notifications read, or all of them when `ids` is omitted. "
        "Returns how many were unread."
    )
    async def mark_notifications_read(
        self, info: Info, ids: list[strawberry.ID] | None = None
    ) -> int:
        pks = None if ids is None else pks_of(ids, "ids", "Notification")
        return await notifications.mark_read(context(info), pks)
