"""Segments (saved filters over contacts) and campaigns sent to them, with costs and members."""

from __future__ import annotations

from enum import Enum

from tortoise import fields
from tortoise.models import Model

from models.base import TimestampedModel
from models.contact import Contact
from models.message import Message
from models.organization import Organization
from models.user import User


class Segment(TimestampedModel):
    """A named filter over the organization's contacts (and, through them, accounts)."""

    id = fields.IntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="segments", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    description = fields.TextField(null=True)
    # The filter as the API takes it (global ids, decimal strings), validated when saved.
    conditions: dict = fields.JSONField(default=dict)  # type: ignore[assignment]
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="segments", on_delete=fields.RESTRICT
    )

    organization_id: int
    owner_id: int

    class Meta:
        table = "segment"
        unique_together = (("organization", "name"),)
        indexes = (("organization_id", "id"), ("organization_id", "updated_at", "id"))

    def __str__(self) -> str:
        return self.name


class CampaignChannel(str, Enum):
    EMAIL = "EMAIL"
    EVENT = "EVENT"
    PHONE = "PHONE"
    ADS = "ADS"
    OTHER = "OTHER"


class CampaignStatus(str, Enum):
    PLANNED = "PLANNED"
    LAUNCHING = "LAUNCHING"  # a job snapshots the segment and messages the members
    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


class Campaign(TimestampedModel):
    id = fields.IntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="campaigns", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    channel = fields.CharEnumField(CampaignChannel, max_length=10)
    status = fields.CharEnumField(CampaignStatus, max_length=10, default=CampaignStatus.PLANNED)
    starts_on = fields.DateField(null=True)
    ends_on = fields.DateField(null=True)
    budget_cents = fields.BigIntField(null=True)  # in the organization's currency
    segment: fields.ForeignKeyNullableRelation[Segment] = fields.ForeignKeyField(
        "models.Segment", related_name="campaigns", null=True, on_delete=fields.RESTRICT
    )
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="campaigns", on_delete=fields.RESTRICT
    )
    subject_template = fields.CharField(max_length=300, null=True)
    body_template = fields.TextField(null=True)
    launched_at = fields.DatetimeField(null=True)
    # The launch's progress, counted in the transactions that change it (resolvers/campaign.py).
    members_count = fields.IntField(default=0)
    messaged_count = fields.IntField(default=0)  # members whose message is recorded
    skipped_count = fields.IntField(default=0)
    sent_count = fields.IntField(default=0)  # messages the SMTP server accepted
    failed_count = fields.IntField(default=0)  # messages that failed every delivery attempt

    organization_id: int
    segment_id: int | None
    owner_id: int

    class Meta:
        table = "campaign"
        indexes = (("organization_id", "id"), ("organization_id", "updated_at", "id"))

    def __str__(self) -> str:
        return self.name


class CampaignCost(TimestampedModel):
    """An actual cost of a campaign, in the organization's currency."""

    id = fields.IntField(primary_key=True)
    campaign: fields.ForeignKeyRelation[Campaign] = fields.ForeignKeyField(
        "models.Campaign", related_name="costs", on_delete=fields.CASCADE
    )
    description = fields.CharField(max_length=200)
    amount_cents = fields.BigIntField()
    incurred_on = fields.DateField()
    created_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="campaign_costs", null=True, on_delete=fields.SET_NULL
    )

    campaign_id: int

    class Meta:
        table = "campaign_cost"
        indexes = (("campaign_id", "id"),)

    def __str__(self) -> str:
        return f"{self.description} ({self.amount_cents} cents)"


class MemberStatus(str, Enum):
    PENDING = "PENDING"  # in the snapshot, not yet messaged
    MESSAGED = "MESSAGED"  # its message is recorded (and delivered, or in the outbox)
    SKIPPED = "SKIPPED"  # no email, or do-not-contact: see skip_reason
    INCLUDED = "INCLUDED"  # a member of a campaign that sends no email


class CampaignMember(Model):
    """A contact in a launched campaign's snapshot of its segment."""

    id = fields.IntField(primary_key=True)
    campaign: fields.ForeignKeyRelation[Campaign] = fields.ForeignKeyField(
        "models.Campaign", related_name="members", on_delete=fields.CASCADE
    )
    contact: fields.ForeignKeyRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name="campaign_memberships", on_delete=fields.CASCADE
    )
    status = fields.CharEnumField(MemberStatus, max_length=10, default=MemberStatus.PENDING)
    skip_reason = fields.CharField(max_length=30, null=True)
    message: fields.ForeignKeyNullableRelation[Message] = fields.ForeignKeyField(
        "models.Message", related_name="campaign_members", null=True, on_delete=fields.SET_NULL
    )
    responded_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    campaign_id: int
    contact_id: int
    message_id: int | None

    class Meta:
        table = "campaign_member"
        unique_together = (("campaign", "contact"),)
        indexes = (("campaign_id", "id"), ("contact_id", "campaign_id"))

    def __str__(self) -> str:
        return f"contact {self.contact_id} in campaign {self.campaign_id}"
