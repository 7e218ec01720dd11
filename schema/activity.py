"""Activities: visits, meetings, calls, emails and tasks; the agenda."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry import UNSET, relay

from models import Activity as ActivityRow
from models import ActivityKind, ActivityStatus
from resolvers import activity as activities
from resolvers import deal as deals
from schema.account import Account, load_account
from schema.base import (
    Connection,
    Info,
    connection,
    context,
    filter_values,
    page_request,
    pk_of,
    values_of,
)
from schema.contact import Contact, load_contact
from schema.user import User, load_user

if TYPE_CHECKING:
    from schema.deal import Deal

DealRef = Annotated["Deal", strawberry.lazy("schema.deal")]


@strawberry.type(description="A visit, meeting, call, email or task of a user with contacts.")
class Activity(relay.Node):
    id: relay.NodeID[int]
    kind: ActivityKind
    subject: str
    notes: str | None
    starts_at: datetime | None = strawberry.field(description="When it starts, if timed.")
    due_date: date | None = strawberry.field(description="When it is due, if not timed.")
    duration_minutes: int | None
    status: ActivityStatus
    outcome: str | None = strawberry.field(
        description="What came of it (when done), or why it was cancelled."
    )
    closed_at: datetime | None = strawberry.field(description="When it was done or cancelled.")
    version: int
    created_at: datetime
    updated_at: datetime
    row: strawberry.Private[ActivityRow]

    @classmethod
    def from_row(cls, row: ActivityRow) -> Activity:
        return cls(
            id=row.id,
            kind=row.kind,
            subject=row.subject,
            notes=row.notes,
            starts_at=row.starts_at,
            due_date=row.due_date,
            duration_minutes=row.duration_minutes,
            status=row.status,
            outcome=row.outcome,
            closed_at=row.closed_at,
            version=row.version,
            created_at=row.created_at,
            updated_at=row.updated_at,
            row=row,
        )

    @strawberry.field(description="Whose activity it is.")
    async def owner(self, info: Info) -> User:
        return await load_user(info, self.row.owner_id)

    @strawberry.field
    async def account(self, info: Info) -> Account | None:
        return await load_account(info, self.row.account_id)

    @strawberry.field(description="The contact it is with, if one.")
    async def contact(self, info: Info) -> Contact | None:
        return await load_contact(info, self.row.contact_id)

    @strawberry.field(description="The lead or opportunity it is about, if one.")
    async def deal(self, info: Info) -> DealRef | None:
        from schema.deal import deal_from_row

        about = activities.deal_of(self.row)
        if about is None:
            return None
        kind, pk = about
        row = await deals.readable_or_none(context(info), kind, pk)
        return None if row is None else deal_from_row(kind, row)

    @strawberry.field(description="The contacts taking part.")
    async def attendees(self, info: Info) -> list[Contact]:
        loaders = context(info).loaders
        rows = await loaders.contact.load_many(await loaders.attendee_ids.load(self.id))
        return [Contact.from_row(row) for row in rows if row is not None]


@strawberry.input(
    description="A new activity: a start time or a due date, and at least one of account, "
    "contact, lead or opportunity (at most one of the last two). The owner defaults to the viewer."
)
class PlanActivityInput:
    kind: ActivityKind
    subject: str
    notes: str | None = None
    starts_at: datetime | None = None
    due_date: date | None = None
    duration_minutes: int | None = None
    owner_id: strawberry.ID | None = None
    account_id: strawberry.ID | None = None
    contact_id: strawberry.ID | None = None
    lead_id: strawberry.ID | None = None
    opportunity_id: strawberry.ID | None = None
    attendee_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Contacts taking part."
    )


@strawberry.input(description="A new time for a planned activity; omitted fields stay.")
class RescheduleActivityInput:
    id: strawberry.ID
    starts_at: datetime | None = UNSET
    due_date: date | None = UNSET
    duration_minutes: int | None = UNSET


@strawberry.input(description="Which activities of the agenda; all given ones must match.")
class AgendaFilter:
    owner_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="Whose agenda (default: the viewer's; managers: their team's; admins: all).",
    )
    from_: datetime | None = strawberry.field(
        default=None, name="from", description="Scheduled at or after."
    )
    to: datetime | None = strawberry.field(default=None, description="Scheduled before.")
    statuses: list[ActivityStatus] | None = None
    overdue: bool | None = strawberry.field(
        default=None,
        description="Only planned activities whose start time, or due date, has passed.",
    )
    updated_since: datetime | None = strawberry.field(
        default=None, description="Changed at or after this time."
    )


ACTIVITY_IDS = {
    "owner_id": ("ownerId", "User"),
    "account_id": ("accountId", "Account"),
    "contact_id": ("contactId", "Contact"),
    "lead_id": ("leadId", "Lead"),
    "opportunity_id": ("opportunityId", "Opportunity"),
    "attendee_ids": ("attendeeIds", "Contact"),
}


@strawberry.type
class ActivityQueries:
    @strawberry.field(description="A user's activities in time order (the viewer's by default).")
    async def agenda(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: AgendaFilter | None = None,
    ) -> Connection[Activity]:
        values: dict[str, Any] = filter_values(filter, {"owner_id": ("filter.ownerId", "User")})
        page = await activities.agenda(
            context(info),
            page_request(first, after, last, before),
            values.get("owner_id"),
            values.get("from_"),
            values.get("to"),
            bool(values.get("overdue")),
            values.get("statuses"),
            values.get("updated_since"),
        )
        return connection(page, Activity.from_row)


@strawberry.type
class ActivityMutations:
    @strawberry.mutation(
        description="Plan an activity. On a lead or opportunity it is an event of its history."
    )
    async def plan_activity(self, info: Info, input: PlanActivityInput) -> Activity:
        row = await activities.plan_activity(context(info), values_of(input, ACTIVITY_IDS))
        return Activity.from_row(row)

    @strawberry.mutation(description="Move a planned activity (its owner, their managers, admins).")
    async def reschedule_activity(self, info: Info, input: RescheduleActivityInput) -> Activity:
        values = values_of(input)
        activity_id = pk_of(values.pop("id"), "id", "Activity")
        return Activity.from_row(
            await activities.reschedule_activity(context(info), activity_id, values)
        )

    @strawberry.mutation(description="Mark a planned activity done, with what came of it.")
    async def complete_activity(
        self, info: Info, id: strawberry.ID, outcome: str | None = None
    ) -> Activity:
        row = await activities.complete_activity(
            context(info), pk_of(id, "id", "Activity"), outcome
        )
        return Activity.from_row(row)

    @strawberry.mutation(description="Cancel a planned activity, optionally saying why.")
    async def cancel_activity(
        self, info: Info, id: strawberry.ID, reason: str | None = None
    ) -> Activity:
        row = await activities.cancel_activity(context(info), pk_of(id, "id", "Activity"), reason)
        return Activity.from_row(row)
