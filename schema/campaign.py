"""Campaigns: channel, segment, budget and costs, a message template, members and results."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

import strawberry
from strawberry import UNSET, relay

from models import Campaign as CampaignRow
from models import CampaignChannel, CampaignStatus, MemberStatus
from models import CampaignCost as CampaignCostRow
from models import CampaignMember as CampaignMemberRow
from models import Segment as SegmentRow
from models.base import from_cents
from resolvers import access
from resolvers import campaign as campaigns
from schema.base import (
    Connection,
    Info,
    connection,
    context,
    in_utc,
    page_request,
    pk_of,
    values_of,
)
from schema.contact import Contact, load_contact
from schema.records import Declared, column, private_row, record
from schema.segment import Segment
from schema.user import User, load_user


@record(CampaignCostRow, read=access.CAMPAIGN_COSTS)
@strawberry.type(description="An actual cost of a campaign, in the organization's currency.")
class CampaignCost(relay.Node, Declared):
    id: relay.NodeID[int]
    description: str
    amount: Decimal = column(source="amount_cents", convert=from_cents)
    incurred_on: date
    created_at: datetime


@record(CampaignMemberRow, read=None, node=False)
@strawberry.type(description="A contact in a launched campaign's snapshot of its segment.")
class CampaignMember(Declared):
    status: MemberStatus
    skip_reason: str | None = strawberry.field(
        description="Why no message went: NO_EMAIL, DO_NOT_CONTACT or DELETED."
    )
    responded_at: datetime | None
    contact_id: strawberry.Private[int]

    @strawberry.field(description="The contact (null once deleted).")
    async def contact(self, info: Info) -> Contact | None:
        return await load_contact(info, self.contact_id)


@strawberry.type(
    description="A campaign's results. Amounts are in the organization's currency: sourced "
    "opportunities in other currencies are counted apart, never added. Every ratio shows its "
    "inputs beside it."
)
class CampaignMetrics:
    currency: str
    members: int = strawberry.field(description="Contacts in the launch's snapshot.")
    messaged: int = strawberry.field(description="Members a message was recorded for.")
    messages_sent: int = strawberry.field(description="Messages the SMTP server accepted.")
    messages_waiting: int = strawberry.field(description="Messages in the outbox or being sent.")
    messages_failed: int
    skipped_no_email: int
    skipped_do_not_contact: int
    skipped_deleted: int = strawberry.field(description="Contacts deleted before their turn.")
    responses: int
    response_rate: Decimal | None = strawberry.field(
        description="responses / members x 100, two decimals (half-even); null without members."
    )
    leads_sourced: int = strawberry.field(description="Live leads naming this campaign.")
    opportunities_sourced: int = strawberry.field(
        description="Live opportunities naming this campaign."
    )
    pipeline_sourced: Decimal = strawberry.field(
        description="Amount of the open sourced opportunities."
    )
    won_sourced: Decimal = strawberry.field(description="Amount of the won sourced opportunities.")
    other_currency_opportunities: int = strawberry.field(
        description="Sourced opportunities in another currency, left out of the amounts."
    )
    total_cost: Decimal = strawberry.field(description="Sum of the cost entries.")
    budget: Decimal | None
    cost_per_lead: Decimal | None = strawberry.field(
        description="totalCost / leadsSourced, to the cent; null without leads."
    )
    roi: Decimal | None = strawberry.field(
        description="(wonSourced - totalCost) / totalCost, a ratio with four decimals (1.5 is "
        "150 percent); null without costs."
    )
    roi_formula: str | None = strawberry.field(description="The ROI with its inputs written out.")

    @classmethod
    def from_metrics(cls, found: campaigns.Metrics) -> CampaignMetrics:
        won, cost = from_cents(found.won_cents), from_cents(found.cost_cents)
        roi = found.roi
        return cls(
            currency=found.currency,
            members=found.members,
            messaged=found.messaged,
            messages_sent=found.messages_sent,
            messages_waiting=found.messages_waiting,
            messages_failed=found.messages_failed,
            skipped_no_email=found.skipped_no_email,
            skipped_do_not_contact=found.skipped_do_not_contact,
            skipped_deleted=found.skipped_deleted,
            responses=found.responses,
            response_rate=found.response_rate,
            leads_sourced=found.leads,
            opportunities_sourced=found.opportunities,
            pipeline_sourced=from_cents(found.pipeline_cents),  # type: ignore[arg-type]
            won_sourced=won,  # type: ignore[arg-type]
            other_currency_opportunities=found.other_currency_opportunities,
            total_cost=cost,  # type: ignore[arg-type]
            budget=from_cents(found.budget_cents),
            cost_per_lead=found.cost_per_lead,
            roi=roi,
            roi_formula=None if roi is None else f"({won} - {cost}) / {cost} = {roi}",
        )


@strawberry.type(
    description="Where a launch stands, counted as it goes: members messaged, skipped and failed "
    "move while the campaign is LAUNCHING (live: the campaignProgress subscription)."
)
class CampaignProgress:
    members: int = strawberry.field(description="Members in the snapshot (0 until it is taken).")
    messaged: int = strawberry.field(description="Members whose message is recorded.")
    skipped: int = strawberry.field(description="Members with no email, do-not-contact or deleted.")
    pending: int = strawberry.field(description="Members not messaged or skipped yet.")
    sent: int = strawberry.field(description="Messages the SMTP server accepted.")
    failed: int = strawberry.field(
        description="Messages that failed every delivery attempt (FAILED, with lastError)."
    )
    waiting: int = strawberry.field(
        description="Messages recorded, neither sent nor failed: in the outbox, or waiting for "
        "their next delivery attempt."
    )

    @classmethod
    def of(cls, row: CampaignRow) -> CampaignProgress:
        return cls(
            members=row.members_count,
            messaged=row.messaged_count,
            skipped=row.skipped_count,
            pending=max(row.members_count - row.messaged_count - row.skipped_count, 0),
            sent=row.sent_count,
            failed=row.failed_count,
            waiting=max(row.messaged_count - row.sent_count - row.failed_count, 0),
        )


@record(CampaignRow, read=access.CAMPAIGNS)
@strawberry.type(description="A campaign: a message to a segment, managed for cost and return.")
class Campaign(relay.Node, Declared):
    id: relay.NodeID[int]
    name: str
    channel: CampaignChannel
    status: CampaignStatus
    starts_on: date | None
    ends_on: date | None
    budget: Decimal | None = column(
        source="budget_cents", convert=from_cents, description="In the organization's currency."
    )
    subject_template: str | None = strawberry.field(
        description="Subject with merge fields such as {{contact.first_name}} (see mergeFields)."
    )
    body_template: str | None = strawberry.field(description="Body with merge fields.")
    launched_at: datetime | None
    created_at: datetime
    updated_at: datetime
    owner_id: strawberry.Private[int]
    segment_id: strawberry.Private[int | None]
    row: strawberry.Private[CampaignRow] = private_row()

    @strawberry.field(description="Who runs it; the sender of its messages.")
    async def owner(self, info: Info) -> User:
        return await load_user(info, self.owner_id)

    @strawberry.field(description="The segment it goes to.")
    async def segment(self, info: Info) -> Segment | None:
        if self.segment_id is None:
            return None
        row = await SegmentRow.get_or_none(id=self.segment_id)
        return None if row is None else Segment.from_row(row)

    @strawberry.field(description="Its costs, oldest first.")
    async def costs(self) -> list[CampaignCost]:
        rows = await CampaignCostRow.filter(campaign_id=self.id).order_by("incurred_on", "id")
        return [CampaignCost.from_row(row) for row in rows]

    @strawberry.field(description="Its launch's progress.")
    def progress(self) -> CampaignProgress:
        return CampaignProgress.of(self.row)

    @strawberry.field(description="Its results now.")
    async def metrics(self, info: Info) -> CampaignMetrics:
        return CampaignMetrics.from_metrics(await campaigns.metrics(context(info), self.row))

    @strawberry.field(description="The contacts of its snapshot, in the order they were added.")
    async def members(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        statuses: list[MemberStatus] | None = None,
    ) -> Connection[CampaignMember]:
        page = await campaigns.list_members(
            context(info), self.id, page_request(info, first, after, None, None), statuses
        )
        return connection(page, CampaignMember.from_row)


@strawberry.type(description="A merge field a campaign template may use.")
class MergeField:
    name: str = strawberry.field(description="Write it {{name}} in a template.")
    description: str


@strawberry.input(description="A new campaign (admins and sales managers).")
class CreateCampaignInput:
    name: str
    channel: CampaignChannel
    segment_id: strawberry.ID | None = None
    starts_on: date | None = None
    ends_on: date | None = None
    budget: Decimal | None = None
    subject_template: str | None = None
    body_template: str | None = None
    owner_id: strawberry.ID | None = strawberry.field(
        default=None, description="Default: the viewer."
    )


@strawberry.input(
    description="Changes to a campaign; omitted fields stay. The channel, segment and templates "
    "change only while PLANNED."
)
class UpdateCampaignInput:
    id: strawberry.ID
    name: str | None = UNSET
    channel: CampaignChannel | None = UNSET
    segment_id: strawberry.ID | None = UNSET
    starts_on: date | None = UNSET
    ends_on: date | None = UNSET
    budget: Decimal | None = UNSET
    subject_template: str | None = UNSET
    body_template: str | None = UNSET
    owner_id: strawberry.ID | None = UNSET


@strawberry.input(description="A cost of a campaign (admins and sales managers).")
class AddCampaignCostInput:
    campaign_id: strawberry.ID
    description: str
    amount: Decimal = column(source="amount_cents", convert=from_cents)
    incurred_on: date | None = strawberry.field(default=None, description="Default: today.")


CAMPAIGN_IDS = {"segment_id": ("segmentId", "Segment"), "owner_id": ("ownerId", "User")}


@strawberry.type
class CampaignQueries:
    @strawberry.field(description="The organization's campaigns, newest first.")
    async def campaigns(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        statuses: list[CampaignStatus] | None = None,
        updated_since: Annotated[
            datetime | None, strawberry.argument(description="Changed at or after this time.")
        ] = None,
    ) -> Connection[Campaign]:
        page = await campaigns.list_campaigns(
            context(info),
            page_request(info, first, after, last, before),
            statuses,
            in_utc(updated_since),
        )
        return connection(page, Campaign.from_row)

    @strawberry.field(description="The merge fields campaign templates may use.")
    def merge_fields(self) -> list[MergeField]:
        return [
            MergeField(name=name, description=text) for name, text in campaigns.MERGE_FIELDS.items()
        ]


@strawberry.type
class CampaignMutations:
    @strawberry.mutation(description="Plan a campaign (admins, sales managers).")
    async def create_campaign(self, info: Info, input: CreateCampaignInput) -> Campaign:
        row = await campaigns.create_campaign(context(info), values_of(input, CAMPAIGN_IDS))
        return Campaign.from_row(row)

    @strawberry.mutation(description="Change a campaign (admins, sales managers).")
    async def update_campaign(self, info: Info, input: UpdateCampaignInput) -> Campaign:
        values = values_of(input, CAMPAIGN_IDS)
        campaign_id = pk_of(values.pop("id"), "id", "Campaign")
        return Campaign.from_row(
            await campaigns.update_campaign(context(info), campaign_id, values)
        )

    @strawberry.mutation(
        description="Launch a campaign. Answers at once with the campaign LAUNCHING; a "
        "background job then snapshots its segment into members and, for EMAIL, records one "
        "personalized message per member (delivered through SMTP when configured, a failed "
        "delivery retried for hours before it is FAILED; else kept in the outbox); members "
        "without an email or marked do-not-contact are skipped and counted. Follow it in "
        "`progress` or live with the campaignProgress subscription; the campaign becomes ACTIVE "
        "once every member is done. Launching an ACTIVE campaign again resumes; nobody is "
        "messaged twice."
    )
    async def launch_campaign(self, info: Info, id: strawberry.ID) -> Campaign:
        row = await campaigns.launch(context(info), pk_of(id, "id", "Campaign"))
        return Campaign.from_row(row)

    @strawberry.mutation(description="Mark an ACTIVE campaign COMPLETED.")
    async def complete_campaign(self, info: Info, id: strawberry.ID) -> Campaign:
        row = await campaigns.set_status(
            context(info), pk_of(id, "id", "Campaign"), CampaignStatus.COMPLETED
        )
        return Campaign.from_row(row)

    @strawberry.mutation(
        description="Cancel a PLANNED, LAUNCHING or ACTIVE campaign: a launch under way stops at "
        "its next batch (the members not messaged yet stay PENDING)."
    )
    async def cancel_campaign(self, info: Info, id: strawberry.ID) -> Campaign:
        row = await campaigns.set_status(
            context(info), pk_of(id, "id", "Campaign"), CampaignStatus.CANCELLED
        )
        return Campaign.from_row(row)

    @strawberry.mutation(description="Record a cost of a campaign.")
    async def add_campaign_cost(self, info: Info, input: AddCampaignCostInput) -> CampaignCost:
        values = values_of(input)
        campaign_id = pk_of(values.pop("campaign_id"), "campaignId", "Campaign")
        row = await campaigns.add_cost(context(info), campaign_id, values)
        return CampaignCost.from_row(row)

    @strawberry.mutation(description="Remove a cost entry.")
    async def remove_campaign_cost(self, info: Info, id: strawberry.ID) -> CampaignCost:
        row = await campaigns.remove_cost(context(info), pk_of(id, "id", "CampaignCost"))
        return CampaignCost.from_row(row)

    @strawberry.mutation(
        description="Record that a member responded (or, with responded: false, take it back): "
        "admins, sales managers, and sellers for their own contacts. The open leads and "
        "opportunities the contact is the primary contact of get a CAMPAIGN_RESPONSE event."
    )
    async def mark_campaign_response(
        self,
        info: Info,
        campaign_id: strawberry.ID,
        contact_id: strawberry.ID,
        responded: bool = True,
    ) -> CampaignMember:
        row = await campaigns.mark_response(
            context(info),
            pk_of(campaign_id, "campaignId", "Campaign"),
            pk_of(contact_id, "contactId", "Contact"),
            responded,
        )
        return CampaignMember.from_row(row)


async def load_campaign(info: Info, campaign_id: int | None) -> Campaign | None:
    if campaign_id is None:
        return None
    viewer = context(info).require_viewer()
    row = await CampaignRow.filter(id=campaign_id, organization_id=viewer.organization_id).first()
    return None if row is None else Campaign.from_row(row)
