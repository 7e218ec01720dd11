"""The event log as the API shows it (history, notifications), and the viewer's notifications."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry import relay
from strawberry.scalars import JSON

from models import Event as EventRow
from models import EventKind, NotificationKind
from models import Notification as NotificationRow
from resolvers import access
from resolvers import events as events_
from resolvers import notification as notifications
from resolvers.context import RequestContext
from resolvers.deal_kinds import FOLLOWED, KINDS
from schema.base import Connection, Info, connection, context, page_request, pks_of
from schema.engine.plans import batched, one
from schema.records import (
    Declared,
    column,
    declared,
    derived,
    private_derived,
    private_row,
    record,
)
from schema.user import User, users_of

if TYPE_CHECKING:
    from schema.deal import Deal
    from schema.follow import Followable

DealRef = Annotated["Deal", strawberry.lazy("schema.deal")]
FollowableRef = Annotated["Followable", strawberry.lazy("schema.follow")]

NotificationKindEnum = strawberry.enum(
    NotificationKind, name="NotificationKind", description="What a notification is about."
)
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
    return await events_.unreadable_records(ctx, [event.row for event in events])


async def _facts(events: list[Event], ctx: RequestContext) -> list[dict[str, Any]]:
    hidden = await _unreadable(events, ctx)
    shown = await events_.readable(ctx, [event.row.changes for event in events])
    return [
        events_.redacted(facts) if out_of_reach else facts
        for facts, out_of_reach in zip(shown, hidden, strict=True)
    ]


async def _changes(events: list[Event], ctx: RequestContext) -> list[JSON]:
    return [JSON(events_.render(facts)) for facts in await _facts(events, ctx)]


async def _field_changes(events: list[Event], ctx: RequestContext) -> list[list[FieldChange]]:
    return [
        [FieldChange.of(change) for change in events_.field_changes(facts)]
        for facts in await _facts(events, ctx)
    ]


async def _references(events: list[Event], ctx: RequestContext) -> list[list[Reference]]:
    return [
        [Reference.of(found) for found in events_.references(facts)]
        for facts in await _facts(events, ctx)
    ]


@strawberry.type(
    description="A record an event's details name: the contact added, removed or promoted, the "
    "user who follows or stopped following, with what it was called when the event happened."
)
class Reference:
    field: str = strawberry.field(
        description='The detail, as `changes` names it ("contactId", "userId").'
    )
    id: strawberry.ID | None = strawberry.field(
        description="The record's global id; null for a record the viewer may not read, and "
        "when the event is `redacted`."
    )
    label: str | None = strawberry.field(
        description="Its name when the event happened (a contact's or user's full name); null "
        "as `id` is, and for events recorded before names were kept."
    )

    @classmethod
    def of(cls, found: events_.Reference) -> Reference:
        return cls(
            field=found.field,
            id=None if found.id is None else strawberry.ID(found.id),
            label=found.label,
        )


@strawberry.type(
    description="One field's change in an event: its value before and after, and for a field "
    "naming a record (a stage, a contact, an owner...), what that record was called then."
)
class FieldChange:
    field: str = strawberry.field(
        description='The field, as the API names it ("amount", "stageId", "ownerId").'
    )
    from_: JSON | None = strawberry.field(
        name="from",
        description="Its value before (null for a record's first value): ids are global ids, "
        "money a decimal string, times ISO 8601.",
    )
    to: JSON | None = strawberry.field(description="Its value after, shown as `from` is.")
    from_label: str | None = strawberry.field(
        description="For a field naming a record: that record's name when the change was made "
        "(a stage's or account's name, a contact's or user's full name). Null for other fields, "
        "for no record, for a record the viewer may not read, and for events recorded before "
        "labels were kept."
    )
    to_label: str | None = strawberry.field(description="The same for the value after.")

    @classmethod
    def of(cls, change: events_.FieldChange) -> FieldChange:
        return cls(
            field=change.field,
            from_=change.old,
            to=change.new,
            from_label=change.old_label,
            to_label=change.new_label,
        )


@record(EventRow, read=access.EVENTS)
@strawberry.type(
    description="A change, comment or development of a lead, an opportunity, an account or a "
    "contact."
)
class Event(relay.Node, Declared):
    id: relay.NodeID[int]
    event_kind: EventKind = column(source="kind", description="What happened.")
    kind: EventKind = strawberry.field(
        deprecation_reason="Use eventKind: `kind` of Activity and of Event are different "
        "enums, so a timeline query asking both fails validation."
    )
    created_at: datetime
    record_type: str = strawberry.field(
        description='"Lead", "Opportunity", "Account" or "Contact".'
    )
    record_id: strawberry.ID = derived(
        lambda row: strawberry.ID(relay.to_base64(row.record_type, row.record_id)),
        description="The record's global id.",
    )
    cursor: str = derived(
        lambda row: events_.event_cursor(row.id),
        description="Where this event stands in the log: pass it as `after` to a subscription "
        "to resume right after it.",
    )
    actor_id: strawberry.Private[int | None]
    row: strawberry.Private[EventRow] = private_row()
    # Whether a live event's result may be computed once for all its subscribers.
    shareable: strawberry.Private[bool] = private_derived(
        lambda row: not events_.names_other_deals(row.changes)
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
        description="The fields the event changed (none for role, comment and activity "
        "events), each with its value before and after and, for a field naming a record, that "
        "record's name at the time. A record's creation lists the fields it was given; an "
        "update, only the fields whose value changed.",
        metadata=batched(_field_changes, same_for_all=True),
    )
    async def field_changes(self, info: Info) -> list[FieldChange]:
        return await one(_field_changes, self, info)

    @strawberry.field(
        description="The records the event's details name (a participant or primary contact "
        "added, removed or changed, a follower added or removed), each with its name at the "
        "time: what `changes` gives as bare ids.",
        metadata=batched(_references, same_for_all=True),
    )
    async def references(self, info: Info) -> list[Reference]:
        return await one(_references, self, info)

    @strawberry.field(
        description="Whether `changes`, `fieldChanges` and `references` are withheld (every "
        "value null) because the viewer may no longer read the record.",
        metadata=batched(_unreadable, same_for_all=True),
    )
    async def redacted(self, info: Info) -> bool:
        return await one(_unreadable, self, info)

    @strawberry.field(description="Who did it.", metadata=batched(_actors, same_for_all=True))
    async def actor(self, info: Info) -> User | None:
        return await one(_actors, self, info)

    @strawberry.field(
        description="The lead or opportunity, unless it was deleted or is out of reach now "
        "(null for an account's or a contact's event: see `recordId`)."
    )
    async def record(self, info: Info) -> DealRef | None:
        kind = KINDS.get(self.row.record_type)
        if kind is None:
            return None
        row = await events_.event_record(context(info), self.row)
        return None if row is None else declared(kind.model).make(row)

    @strawberry.field(
        description="The record (a lead, an opportunity, an account or a contact), unless it "
        "was deleted or is out of reach now."
    )
    async def subject(self, info: Info) -> FollowableRef | None:
        row = await events_.event_record(context(info), self.row)
        kind = FOLLOWED[self.row.record_type]
        return None if row is None else declared(kind.model).make(row)


HISTORY_HELP = "Everything that happened to the record, newest first: the audit trail."


async def history_of(
    info: Info,
    record_type: str,
    record_id: int,
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
) -> Connection[Event]:
    """The `history` of a record the viewer read."""
    page = await events_.list_history(
        context(info), record_type, record_id, page_request(info, first, after, last, before)
    )
    return connection(page, Event.from_row)


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
            context(info), page_request(info, first, after, last, before), unread_only
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
