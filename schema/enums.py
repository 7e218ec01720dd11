"""The model enums as GraphQL enums, with descriptions."""

from __future__ import annotations

import strawberry

from models import (
    ActivityKind,
    ActivityStatus,
    ApiKeyScope,
    CampaignChannel,
    CampaignStatus,
    ForecastCategory,
    LeadStatus,
    LifecycleStage,
    MemberStatus,
    MessageStatus,
    OpportunityStatus,
    PeriodKind,
    Role,
    Visibility,
)
from resolvers.timeline import EntryKind

RoleEnum = strawberry.enum(
    Role,
    name="Role",
    description="What a user may do: ADMIN manages the organization, SALES_MANAGER leads "
    "sellers and owns their forecast, SELLER works their own records.",
)
LifecycleStageEnum = strawberry.enum(
    LifecycleStage,
    name="LifecycleStage",
    description="Where a contact stands: PROSPECT (known, not yet contacted), POTENTIAL_CLIENT "
    "(contacted, confirmed interest), ACTIVE_CLIENT (has bought), INACTIVE_CLIENT (has bought, "
    "not for a while).",
)
LeadStatusEnum = strawberry.enum(LeadStatus, name="LeadStatus", description="Progress of a lead.")
OpportunityStatusEnum = strawberry.enum(
    OpportunityStatus,
    name="OpportunityStatus",
    description="OPEN while in the pipeline; WON or LOST once closed (set by the stage).",
)
VisibilityEnum = strawberry.enum(
    Visibility,
    name="Visibility",
    description="ORGANIZATION: everyone in the organization reads the record. PRIVATE: only "
    "its owner, the owner's managers, its followers and admins.",
)
ActivityKindEnum = strawberry.enum(
    ActivityKind, name="ActivityKind", description="A visit, meeting, call, email or task."
)
ActivityStatusEnum = strawberry.enum(
    ActivityStatus,
    name="ActivityStatus",
    description="PLANNED until it is done (with an outcome) or cancelled.",
)
MessageStatusEnum = strawberry.enum(
    MessageStatus,
    name="MessageStatus",
    description="OUTBOX: recorded, not delivered (no SMTP server configured); SENDING: being "
    "handed to the SMTP server; SENT: accepted by the SMTP server; FAILED: every delivery attempt "
    "failed (see lastError; retryMessage tries again).",
)
ForecastCategoryEnum = strawberry.enum(
    ForecastCategory,
    name="ForecastCategory",
    description="Where an opportunity counts in the forecast. PIPELINE: possible. BEST_CASE: "
    "likely if things go well. COMMIT: the seller commits to winning it in its period. CLOSED: "
    "won (every won opportunity, and only those). OMITTED: left out (every lost opportunity, and "
    "open ones set aside).",
)
PeriodKindEnum = strawberry.enum(
    PeriodKind, name="PeriodKind", description="A calendar month or a calendar quarter."
)
TimelineEntryKindEnum = strawberry.enum(
    EntryKind,
    name="TimelineEntryKind",
    description="ACTIVITY: a visit, meeting, call, email or task. COMMENT: a comment. CHANGE: an "
    "event of a lead's or opportunity's history (comments and activities aside, which are their "
    "own entries). LIFECYCLE: a contact's move between lifecycle stages.",
)
CampaignChannelEnum = strawberry.enum(
    CampaignChannel,
    name="CampaignChannel",
    description="How a campaign reaches its segment. EMAIL campaigns send one personalized "
    "message per member; the others only snapshot the members.",
)
CampaignStatusEnum = strawberry.enum(
    CampaignStatus,
    name="CampaignStatus",
    description="PLANNED until launched; LAUNCHING while its job snapshots the segment and "
    "messages the members (see `progress`); ACTIVE once every member is messaged or skipped; "
    "then COMPLETED, or CANCELLED at any point (a launch under way stops).",
)
MemberStatusEnum = strawberry.enum(
    MemberStatus,
    name="CampaignMemberStatus",
    description="PENDING: not messaged yet; MESSAGED: its message is recorded; SKIPPED: no "
    "email, do-not-contact or deleted; INCLUDED: a member of a campaign that sends no email.",
)
ApiKeyScopeEnum = strawberry.enum(
    ApiKeyScope,
    name="ApiKeyScope",
    description="What an API key may do. READ (always granted): read what its admin reads. "
    "WRITE: every area below. WRITE_ACCOUNTS, WRITE_CONTACTS, WRITE_DEALS (leads, opportunities, "
    "their roles, comments and line items), WRITE_ACTIVITIES, WRITE_MESSAGES, WRITE_PRODUCTS, "
    "WRITE_CAMPAIGNS: the mutations of one area. No key manages users, the organization's "
    "settings, sessions or keys.",
)
