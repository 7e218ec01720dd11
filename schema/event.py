"""The event log as the API shows it (history, notifications), and the viewer's notifications."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry import relay
from strawberry.scalars import JSON

from models import Event as EventRow
from models import EventKind, NotificationKind
from models import Notification as NotificationRow
from resolvers import access, events
from resolvers import notification as notifications
from resolvers.context import RequestContext
from resolvers.deal import names_other_deals, readable_references
from resolvers.deal_kinds import KINDS
from schema.base import Connection, Info, connection, context, page_request, pks_of
from schema.engine.plans import batched, one
from schema.records import Declared, declared, derived, private_derived, private_row, record
from schema.user import User, users_of

if TYPE_CHECKING:
    from schema.deal import Deal

DealRef = Annotated["Deal", strawberry.lazy("schema.deal")]

NotificationKindEnum = strawberry.enum(
    NotificationKind, name="NotificationKind", description="What a notification is about."
)
EventKindEnum = strawberry.enum(
    EventKind,
    name="EventKind",
    description="What happened to a lead or opportunity.",
)


async def _actors(events: list[Event], ctx: RequestContext) -> list[User | None]:
    return await users_of(ctx, [event.actor_id for event in events])


async def _changes(events: list[Event], ctx: RequestContext) -> list[JSON]:
    changes = await readable_references(ctx, [event.row.changes for event in events])
    return [JSON(change) for change in changes]


@record(EventRow, read=access.EVENTS)
@strawberry.type(description="A change, comment or development of a lead or opportunity.")
class Event(relay.Node, Declared):
    id: relay.NodeID[int]
    kind: EventKind
    created_at: datetime
    record_type: str = strawberry.field(description='"Lead" or "Opportunity".')
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
        "another lead or opportunity the viewer may not read is null.",
        # The same for all but where an event names another deal: such an event says so
        # (`shareable`), and each subscriber then computes its own.
        metadata=batched(_changes, same_for_all=True),
    )
    async def changes(self, info: Info) -> JSON:
        return await one(_changes, self, info)

    @strawberry.field(description="Who did it.", metadata=batched(_actors, same_for_all=True))
    async def actor(self, info: Info) -> User | None:
        return await one(_actors, self, info)

    @strawberry.field(description="The record, unless it was deleted or is out of reach now.")
    async def record(self, info: Info) -> DealRef | None:
        row = await events.event_record(context(info), self.row)
        return None if row is None else declared(KINDS[self.row.record_type].model).make(row)


@record(NotificationRow, read=access.NOTIFICATIONS)
@strawberry.type(description="An event on a record the viewer follows, done by someone else.")
class Notification(relay.Node, Declared):
    id: relay.NodeID[int]
    kind: NotificationKind = strawberry.field(
        description="EVENT: an event on a record the viewer follows (`event`). "
        "WEBHOOK_ENDPOINT_DISABLED: to admins, an endpoint was disabled (`message`)."
    )
    message: str | None = strawberry.field(description="What happened, for those without event.")
    webhook_endpoint_id: strawberry.ID | None = derived(
        lambda row: (
            None
            if row.webhook_endpoint_id is None
            else strawberry.ID(relay.to_base64("WebhookEndpoint", row.webhook_endpoint_id))
        ),
        description="WEBHOOK_ENDPOINT_DISABLED: the endpoint's id.",
    )
    read_at: datetime | None
    created_at: datetime
    event_id: strawberry.Private[int | None]

    @strawberry.field(description="The event (null for notifications of another kind).")
    async def event(self, info: Info) -> Event | None:
        if self.event_id is None:
            return None
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
