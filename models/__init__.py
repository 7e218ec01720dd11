"""Tortoise models: rows only, no GraphQL."""

from models.account import Account
from models.activity import Activity, ActivityAttendee, ActivityKind, ActivityStatus
from models.api_key import ApiKey, ApiKeyScope
from models.campaign import (
    Campaign,
    CampaignChannel,
    CampaignCost,
    CampaignMember,
    CampaignStatus,
    MemberStatus,
    Segment,
)
from models.contact import Contact, ContactTag, LifecycleChange, LifecycleStage
from models.deal import (
    Comment,
    Lead,
    LeadFollower,
    LeadParticipant,
    LeadStatus,
    Opportunity,
    OpportunityFollower,
    OpportunityParticipant,
    OpportunityStatus,
    Visibility,
)
from models.event import Event, EventKind, Notification, NotificationKind
from models.follow import AccountFollower, ContactFollower
from models.forecast import PeriodKind, Quota
from models.job import Job, JobState
from models.message import Message, MessageStatus
from models.organization import DEFAULT_STAGES, ForecastCategory, Organization, PipelineStage
from models.product import LineItem, Product
from models.sync import Change, OrganizationQuery, PersistedQuery, PrunedChanges, SyncState
from models.user import AuthToken, Role, User
from models.webhook import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookStatus

__all__ = [
    "DEFAULT_STAGES",
    "Account",
    "AccountFollower",
    "ApiKey",
    "ApiKeyScope",
    "Activity",
    "ActivityAttendee",
    "ActivityKind",
    "ActivityStatus",
    "AuthToken",
    "Campaign",
    "CampaignChannel",
    "CampaignCost",
    "CampaignMember",
    "CampaignStatus",
    "Change",
    "Comment",
    "Contact",
    "ContactFollower",
    "ContactTag",
    "Event",
    "EventKind",
    "ForecastCategory",
    "Job",
    "JobState",
    "Lead",
    "LeadFollower",
    "LeadParticipant",
    "LeadStatus",
    "LifecycleChange",
    "LifecycleStage",
    "LineItem",
    "MemberStatus",
    "Message",
    "MessageStatus",
    "Notification",
    "NotificationKind",
    "Opportunity",
    "OpportunityFollower",
    "OpportunityParticipant",
    "OpportunityStatus",
    "Organization",
    "PeriodKind",
    "OrganizationQuery",
    "PersistedQuery",
    "PipelineStage",
    "PrunedChanges",
    "Product",
    "Quota",
    "Role",
    "Segment",
    "SyncState",
    "User",
    "Visibility",
    "DeliveryStatus",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookStatus",
]
