"""What leads and opportunities share: the Deal interface, its three roles and comments."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry import relay

from models import Activity as ActivityRow
from models import Campaign as CampaignRow
from models import Contact as ContactRow
from models import Event as EventRow
from models import OpportunityParticipant, Visibility
from models import User as UserRow
from resolvers import deal as deals
from resolvers import timeline
from resolvers.activity import list_deal_activities
from resolvers.context import RequestContext
from resolvers.deal_kinds import KINDS, DealKind
from resolvers.events import list_history
from resolvers.message import why_unreachable
from resolvers.timeline import EntryKind
from schema.base import Connection, Info, connection, context, decode_id, page_request, pk_of
from schema.comment import Comment
from schema.contact import Contact
from schema.engine.plans import batched, one
from schema.engine.projections import lookup, to_many
from schema.event import HISTORY_HELP
from schema.follow import Followable, followed_by_viewer, followed_ref, followers_of
from schema.records import Declared, Link, column, declared, record, record_of
from schema.timeline import TimelineConnection, timeline_connection
from schema.user import User

if TYPE_CHECKING:
    from schema.account import Account
    from schema.activity import Activity
    from schema.campaign import Campaign
    from schema.event import Event

AccountRef = Annotated["Account", strawberry.lazy("schema.account")]
DEAL_TYPES = ("Lead", "Opportunity")


CONTACT = Link(ContactRow, "contact_id")  # a deal's primary contact, a participant's contact
OWNER = Link(UserRow, "owner_id", same_for_all=True)


@record(OpportunityParticipant, read=None, node=False)
@strawberry.type(
    description="A contact involved in a lead or opportunity besides its primary contact."
)
class Participant(Declared):
    role: str | None = strawberry.field(
        description='What the contact does in the deal, e.g. "CFO".'
    )
    added_at: datetime = column(source="created_at")
    contact_id: strawberry.Private[int]

    @strawberry.field(metadata=CONTACT.metadata)
    async def contact(self, info: Info) -> Contact:
        # Non-null: participants of deleted contacts are removed.
        return await CONTACT.one(self, info)  # type: ignore[no-any-return]


# A deal's relations in SQL. The participants and followers tables are the deal kind's (`table`
# in schema/lead.py and schema/opportunity.py); each is the batch function's rule: participants
# whose contact is not deleted, in the order they were added, and followers likewise.
# A participant counts while its contact is live: a lookup by key (as a LATERAL, so that the
# plan stays a lookup per row, whatever the organization's size; the loader's EXISTS is the
# same rule, resolvers/loaders.live_contact).
PARTICIPANTS = to_many(
    "{participants} AS {row} CROSS JOIN "
    + lookup(
        '"contact" AS {row}_live',
        "{row}_live.organization_id = {org} AND {row}_live.id = {row}.contact_id"
        " AND {row}_live.deleted_at IS NULL",
    ),
    "{row}.record_id",
)
FOLLOWERS = to_many(
    "{followers} AS {row}_f CROSS JOIN "
    + lookup('"crm_user" AS {row}', "{row}.id = {row}_f.user_id"),
    "{row}_f.record_id",
    rule=UserRow,
    order="{row}_f.id",
)
FOLLOWED_BY_VIEWER = (
    "EXISTS (SELECT 1 FROM {followers} AS {row}_v"
    " WHERE {row}_v.record_id = {row}.id AND {row}_v.user_id = {viewer})"
)


@strawberry.enum(description="Why a record has no default recipient.")
class NoRecipientReason(Enum):
    NO_PRIMARY_CONTACT = "NO_PRIMARY_CONTACT"
    PRIMARY_CONTACT_HAS_NO_EMAIL = "PRIMARY_CONTACT_HAS_NO_EMAIL"
    PRIMARY_CONTACT_DO_NOT_CONTACT = "PRIMARY_CONTACT_DO_NOT_CONTACT"


@strawberry.type(
    description="Who a message composed from a record goes to by default: its primary contact."
)
class DefaultRecipient:
    email: str | None = strawberry.field(description="Null when there is no one to write to.")
    contact: Contact | None
    reason: NoRecipientReason | None = strawberry.field(description="Set when email is null.")
    message: str | None = strawberry.field(description="The reason, for people.")


# Relations of deals, for a list of deals at once (a level of a plan's deals is of one type).


async def _participants(deals: list[Deal], ctx: RequestContext) -> list[list[Participant]]:
    rows = await ctx.loaders.participants(deals[0].kind).load_many([deal.id for deal in deals])
    return [[Participant.from_row(row) for row in of_deal] for of_deal in rows]


@strawberry.interface(
    description="A lead or an opportunity: a record with a primary contact, participants, "
    "followers and comments."
)
class Deal(Followable):
    id: relay.NodeID[int]
    visibility: Visibility
    version: int = strawberry.field(
        description="Grows with every change; pass it back as expectedVersion to update safely."
    )
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    kind: strawberry.Private[DealKind]
    owner_id: strawberry.Private[int]
    account_id: strawberry.Private[int | None]
    contact_id: strawberry.Private[int | None]
    campaign_id: strawberry.Private[int | None]

    @strawberry.field(description="The campaign that sourced it.")
    async def campaign(
        self, info: Info
    ) -> Annotated[Campaign, strawberry.lazy("schema.campaign")] | None:
        return await record_of(info, CampaignRow, self.campaign_id)

    @strawberry.field(description="The user responsible for the record.", metadata=OWNER.metadata)
    async def owner(self, info: Info) -> User:
        return await OWNER.one(self, info)  # type: ignore[no-any-return]

    contact_role: str | None = strawberry.field(
        description='The primary contact\'s role in the deal, e.g. "CFO" (a participant promoted '
        "to primary contact keeps theirs)."
    )

    @strawberry.field(
        description="The primary contact: the default recipient of messages.",
        metadata=CONTACT.metadata,
    )
    async def contact(self, info: Info) -> Contact | None:
        return await CONTACT.one(self, info)

    @strawberry.field(
        description="Other contacts involved, oldest first.",
        metadata=batched(_participants, sql=PARTICIPANTS),
    )
    async def participants(self, info: Info) -> list[Participant]:
        return await one(_participants, self, info)

    @strawberry.field(
        description="Users told of every change, comment and development: its owner and its "
        "creator from the start, a new owner from their assignment, and whoever follows it.",
        metadata=batched(followers_of, same_for_all=True, sql=FOLLOWERS),
    )
    async def followers(self, info: Info) -> list[User]:
        return await one(followers_of, self, info)

    @strawberry.field(
        description="Whether the viewer follows this record.",
        metadata=batched(followed_by_viewer, sql=FOLLOWED_BY_VIEWER),
    )
    async def is_followed_by_viewer(self, info: Info) -> bool:
        return await one(followed_by_viewer, self, info)

    @strawberry.field(description="The primary contact's email, or why there is none.")
    async def default_recipient(self, info: Info) -> DefaultRecipient:
        row = await context(info).loaders.contact.load(self.contact_id) if self.contact_id else None
        contact = None if row is None else Contact.from_row(row)
        problem = why_unreachable(row)
        if problem is None and contact is not None:
            return DefaultRecipient(email=contact.email, contact=contact, reason=None, message=None)
        reason, message = problem or ("NO_PRIMARY_CONTACT", "")
        return DefaultRecipient(
            email=None, contact=contact, reason=NoRecipientReason(reason), message=message
        )

    @strawberry.field(description=HISTORY_HELP)
    async def history(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Annotated[Event, strawberry.lazy("schema.event")]]:
        page = await list_history(
            context(info), self.kind.name, self.id, page_request(info, first, after, last, before)
        )
        return connection(page, declared(EventRow).make)

    @strawberry.field(description="Its activities (visits, meetings, calls...), in time order.")
    async def activities(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Annotated[Activity, strawberry.lazy("schema.activity")]]:
        page = await list_deal_activities(
            context(info), self.kind, self.id, page_request(info, first, after, last, before)
        )
        return connection(page, declared(ActivityRow).make)

    @strawberry.field(
        description="Its activities, comments and changes, newest first, in one connection."
    )
    async def timeline(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        include: list[EntryKind] | None = None,
    ) -> TimelineConnection:
        sources = await timeline.deal_sources(context(info), self.kind, self.id)
        page = page_request(info, first, after, None, None)
        return await timeline_connection(sources, page, include)

    @strawberry.field(description="Comments, newest first.")
    async def comments(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Comment]:
        page = await deals.list_comments(
            context(info), self.kind, self.id, page_request(info, first, after, last, before)
        )
        return connection(page, Comment.from_row)


def deal_from_row(kind: DealKind, row: Any) -> Deal:
    """The API's lead or opportunity of a row (its declared type's)."""
    return declared(kind.model).make(row)  # type: ignore[no-any-return]


def deal_ref(value: strawberry.ID, field: str = "recordId") -> tuple[DealKind, int]:
    type_name, pk = decode_id(value, field, *DEAL_TYPES)
    return KINDS[type_name], pk


@strawberry.input(description="A contact to add as a participant of a lead or opportunity.")
class AddParticipantInput:
    record_id: strawberry.ID = strawberry.field(description="A Lead or Opportunity id.")
    contact_id: strawberry.ID
    role: str | None = strawberry.field(default=None, description='For example "CFO".')


def followed_from_row(kind: Any, row: Any) -> Followable:
    """The API's record of a followed row (its declared type's)."""
    return declared(kind.model).make(row)  # type: ignore[no-any-return]


@strawberry.type
class DealMutations:
    @strawberry.mutation(
        description="Set (or, with null, clear) the primary contact of a lead or opportunity. "
        "A participant promoted to primary contact stops being a participant and keeps its role "
        "(`contactRole`); the previous primary contact stays a participant, with its role, "
        "unless `keepPrevious` is false."
    )
    async def set_primary_contact(
        self,
        info: Info,
        record_id: strawberry.ID,
        contact_id: strawberry.ID | None,
        keep_previous: Annotated[
            bool,
            strawberry.argument(
                description="Keep the previous primary contact as a participant (default)."
            ),
        ] = True,
    ) -> Deal:
        kind, pk = deal_ref(record_id)
        contact = None if contact_id is None else pk_of(contact_id, "contactId", "Contact")
        row = await deals.set_primary_contact(
            context(info), kind, pk, contact, keep_previous=keep_previous
        )
        return deal_from_row(kind, row)

    @strawberry.mutation(description="Add a participant (not the primary contact, not twice).")
    async def add_participant(self, info: Info, input: AddParticipantInput) -> Deal:
        kind, pk = deal_ref(input.record_id)
        contact = pk_of(input.contact_id, "contactId", "Contact")
        row = await deals.add_participant(context(info), kind, pk, contact, input.role)
        return deal_from_row(kind, row)

    @strawberry.mutation(
        description="Change the role of a participant (or, given the primary contact, its "
        "`contactRole`); null clears it. One PARTICIPANT_UPDATED event."
    )
    async def update_participant(
        self, info: Info, record_id: strawberry.ID, contact_id: strawberry.ID, role: str | None
    ) -> Deal:
        kind, pk = deal_ref(record_id)
        contact = pk_of(contact_id, "contactId", "Contact")
        row = await deals.update_participant(context(info), kind, pk, contact, role)
        return deal_from_row(kind, row)

    @strawberry.mutation(description="Remove a participant.")
    async def remove_participant(
        self, info: Info, record_id: strawberry.ID, contact_id: strawberry.ID
    ) -> Deal:
        kind, pk = deal_ref(record_id)
        contact = pk_of(contact_id, "contactId", "Contact")
        return deal_from_row(kind, await deals.remove_participant(context(info), kind, pk, contact))

    @strawberry.mutation(description="Make a user of the organization follow a record (editors).")
    async def add_follower(
        self, info: Info, record_id: strawberry.ID, user_id: strawberry.ID
    ) -> Deal:
        kind, pk = deal_ref(record_id)
        user = pk_of(user_id, "userId", "User")
        return deal_from_row(kind, await deals.add_follower(context(info), kind, pk, user))

    @strawberry.mutation(
        description="Stop a user following a record (editors). Removed from a private deal's "
        "followers, they may no longer read it: their old notifications of it show no comment "
        "or field values, and their subscriptions to it end with RECORD_UNREADABLE."
    )
    async def remove_follower(
        self, info: Info, record_id: strawberry.ID, user_id: strawberry.ID
    ) -> Deal:
        kind, pk = deal_ref(record_id)
        user = pk_of(user_id, "userId", "User")
        return deal_from_row(kind, await deals.remove_follower(context(info), kind, pk, user))

    @strawberry.mutation(
        description="Follow a record the viewer can read: a lead, an opportunity (following lets "
        "one read it from then on), an account or a contact."
    )
    async def follow(self, info: Info, record_id: strawberry.ID) -> Followable:
        kind, pk = followed_ref(record_id)
        return followed_from_row(kind, await deals.follow_record(context(info), kind, pk))

    @strawberry.mutation(description="Stop following a record.")
    async def unfollow(self, info: Info, record_id: strawberry.ID) -> Followable:
        kind, pk = followed_ref(record_id)
        return followed_from_row(kind, await deals.unfollow_record(context(info), kind, pk))

    @strawberry.mutation(
        description="Follow a lead or opportunity the viewer can read.",
        deprecation_reason="Use `follow`, which also takes accounts and contacts.",
    )
    async def follow_record(self, info: Info, record_id: strawberry.ID) -> Deal:
        kind, pk = deal_ref(record_id)
        return deal_from_row(kind, await deals.follow_record(context(info), kind, pk))

    @strawberry.mutation(
        description="Stop following a lead or opportunity.",
        deprecation_reason="Use `unfollow`, which also takes accounts and contacts.",
    )
    async def unfollow_record(self, info: Info, record_id: strawberry.ID) -> Deal:
        kind, pk = deal_ref(record_id)
        return deal_from_row(kind, await deals.unfollow_record(context(info), kind, pk))

    @strawberry.mutation(
        description="Comment on a record the viewer can read. Its followers are told; so is "
        "each user mentioned as `@[Display Name](<user id>)` who may read the record (a mention "
        "of anyone else tells no one). Comments do not change the record's `version`."
    )
    async def add_comment(self, info: Info, record_id: strawberry.ID, body: str) -> Comment:
        kind, pk = deal_ref(record_id)
        return Comment.from_row(await deals.add_comment(context(info), kind, pk, body))
