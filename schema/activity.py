"""Activities: visits, meetings, calls, emails and tasks; the agenda."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry import UNSET, relay

from models import Account as AccountRow
from models import Activity as ActivityRow
from models import ActivityKind, ActivityStatus
from models import Contact as ContactRow
from models import User as UserRow
from resolvers import access
from resolvers import activity as activities
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
from schema.records import (
    Declared,
    column,
    declared,
    existing,
    private_row,
    record,
    record_of,
    records_of,
)

if TYPE_CHECKING:
    from schema.account import Account
    from schema.contact import Contact
    from schema.deal import Deal
    from schema.user import User

AccountRef = Annotated["Account", strawberry.lazy("schema.account")]
ContactRef = Annotated["Contact", strawberry.lazy("schema.contact")]
DealRef = Annotated["Deal", strawberry.lazy("schema.deal")]
UserRef = Annotated["User", strawberry.lazy("schema.user")]
ACTIVITY_EXPORT = (
    "kind",
    "subject",
    "status",
    "scheduled_at",
    "duration_minutes",
    "account_id",
    "contact_id",
    "lead_id",
    "opportunity_id",
    "created_at",
    "updated_at",
    "owner_id",
)


@record(ActivityRow, read=access.ACTIVITIES, export=("activities", ACTIVITY_EXPORT))
@strawberry.type(description="A visit, meeting, call, email or task of a user with contacts.")
class Activity(relay.Node, Declared):
    id: relay.NodeID[int]
    activity_kind: ActivityKind = column(
        source="kind", description="Visit, meeting, call, email or task."
    )
    kind: ActivityKind = strawberry.field(
        deprecation_reason="Use activityKind: `kind` of Activity and of Event are different "
        "enums, so a timeline query asking both fails validation."
    )
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
    row: strawberry.Private[ActivityRow] = private_row()

    @strawberry.field(description="Whose activity it is.")
    async def owner(self, info: Info) -> UserRef:
        return await existing(info, UserRow, self.row.owner_id)  # type: ignore[no-any-return]

    @strawberry.field
    async def account(self, info: Info) -> AccountRef | None:
        return await record_of(info, AccountRow, self.row.account_id)

    @strawberry.field(description="The contact it is with, if one.")
    async def contact(self, info: Info) -> ContactRef | None:
        return await record_of(info, ContactRow, self.row.contact_id)

    @strawberry.field(description="The lead or opportunity it is about, if one.")
    async def deal(self, info: Info) -> DealRef | None:
        about = activities.deal_of(self.row)
        if about is None:
            return None
        kind, pk = about
        row = await access.deals_of(kind).get(context(info), pk)
        return None if row is None else declared(kind.model).make(row)

    @strawberry.field(description="The contacts taking part.")
    async def attendees(self, info: Info) -> list[ContactRef]:
        ctx = context(info)
        found = await records_of(ctx, ContactRow, await ctx.loaders.attendee_ids.load(self.id))
        return [contact for contact in found if contact is not None]


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
    owner_ids: list[strawberry.ID] | None = strawberry.field(
        default=None,
        description="Several users' agendas in one (each the viewer or, for managers, one of "
        "their team; admins: anyone).",
    )
    team: bool | None = strawberry.field(
        default=None,
        description="The viewer's agenda and their team's (their reports, direct and indirect): "
        "a manager's whole team; everyone's for admins; a seller's own.",
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
    @strawberry.field(
        description="Activities in time order: the viewer's by default, another user's, several "
        "users' (ownerIds) or a whole team's (team: true)."
    )
    async def agenda(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: AgendaFilter | None = None,
    ) -> Connection[Activity]:
        values: dict[str, Any] = filter_values(
            filter,
            {"owner_id": ("filter.ownerId", "User"), "owner_ids": ("filter.ownerIds", "User")},
        )
        page = await activities.agenda(
            context(info),
            page_request(info, first, after, last, before),
            values.get("owner_id"),
            values.get("from_"),
            values.get("to"),
            bool(values.get("overdue")),
            values.get("statuses"),
            values.get("updated_since"),
            owner_ids=values.get("owner_ids"),
            team=bool(values.get("team")),
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
