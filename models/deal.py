"""Leads and opportunities, with their three roles: primary contact, participants, followers."""

from __future__ import annotations

from enum import Enum
from typing import Any

from tortoise import fields

from models.account import Account
from models.base import SoftDeletedModel, TimestampedModel, live_indexes
from models.contact import Contact
from models.organization import ForecastCategory, Organization, PipelineStage
from models.user import User


class Visibility(str, Enum):
    ORGANIZATION = "ORGANIZATION"  # everyone in the organization reads it
    PRIVATE = "PRIVATE"  # owner, the owner's managers, followers and admins only


class LeadStatus(str, Enum):
    NEW = "NEW"
    CONTACTED = "CONTACTED"
    QUALIFIED = "QUALIFIED"
    DISQUALIFIED = "DISQUALIFIED"
    CONVERTED = "CONVERTED"


class OpportunityStatus(str, Enum):
    OPEN = "OPEN"
    WON = "WON"
    LOST = "LOST"


class Lead(SoftDeletedModel):
    id = fields.IntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="leads", on_delete=fields.CASCADE
    )
    title = fields.CharField(max_length=200)
    source = fields.CharField(max_length=100, null=True)
    status = fields.CharEnumField(LeadStatus, max_length=20, default=LeadStatus.NEW)
    estimated_amount_cents = fields.BigIntField(null=True)
    currency = fields.CharField(max_length=3, default="USD")
    account: fields.ForeignKeyNullableRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="leads", null=True, on_delete=fields.SET_NULL
    )
    contact: fields.ForeignKeyNullableRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name="primary_for_leads", null=True, on_delete=fields.SET_NULL
    )
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="leads", on_delete=fields.RESTRICT
    )
    contact_role = fields.CharField(max_length=100, null=True)  # the primary contact's role
    visibility = fields.CharEnumField(Visibility, max_length=20, default=Visibility.ORGANIZATION)
    version = fields.IntField(default=1)
    # Set by convertLead: the opportunity this lead became, and when.
    converted_opportunity: fields.ForeignKeyNullableRelation[Opportunity] = fields.ForeignKeyField(
        "models.Opportunity", related_name="converted_leads", null=True, on_delete=fields.SET_NULL
    )
    converted_at = fields.DatetimeField(null=True)
    campaign: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.Campaign", related_name="leads", null=True, on_delete=fields.SET_NULL
    )  # the campaign that sourced it

    organization_id: int
    account_id: int | None
    contact_id: int | None
    owner_id: int
    converted_opportunity_id: int | None
    campaign_id: int | None

    class Meta:
        table = "lead"
        indexes = live_indexes(
            "lead",
            # Lists in each order, counts (the read rule's columns: an index-only scan) ...
            by_id=("organization_id", "id"),
            title=("organization_id", "title", "id"),
            updated=("organization_id", "updated_at", "id"),
            readers=("organization_id", "visibility", "owner_id", "id"),
            # ... and the relations that list a record's leads.
            account=("account_id", "id"),
            contact=("contact_id", "id"),
            campaign=("campaign_id", "id"),
            converted=("converted_opportunity_id",),
        )

    def __str__(self) -> str:
        return self.title


class Opportunity(SoftDeletedModel):
    id = fields.IntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="opportunities", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    account: fields.ForeignKeyRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="opportunities", on_delete=fields.RESTRICT
    )
    amount_cents = fields.BigIntField(default=0)
    currency = fields.CharField(max_length=3, default="USD")
    stage: fields.ForeignKeyRelation[PipelineStage] = fields.ForeignKeyField(
        "models.PipelineStage", related_name="opportunities", on_delete=fields.RESTRICT
    )
    probability = fields.IntField()  # percent; defaults from the stage
    probability_overridden = fields.BooleanField(default=False)
    expected_close_date = fields.DateField()
    status = fields.CharEnumField(OpportunityStatus, max_length=10, default=OpportunityStatus.OPEN)
    closed_at = fields.DatetimeField(null=True)
    lost_reason = fields.TextField(null=True)  # required when it is lost
    forecast_category = fields.CharEnumField(
        ForecastCategory, max_length=20, default=ForecastCategory.PIPELINE
    )  # defaults from the stage
    forecast_category_overridden = fields.BooleanField(default=False)
    campaign: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.Campaign", related_name="opportunities", null=True, on_delete=fields.SET_NULL
    )  # the campaign that sourced it
    contact: fields.ForeignKeyNullableRelation[Contact] = fields.ForeignKeyField(
        "models.Contact",
        related_name="primary_for_opportunities",
        null=True,
        on_delete=fields.SET_NULL,
    )
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="opportunities", on_delete=fields.RESTRICT
    )
    contact_role = fields.CharField(max_length=100, null=True)  # the primary contact's role
    visibility = fields.CharEnumField(Visibility, max_length=20, default=Visibility.ORGANIZATION)
    version = fields.IntField(default=1)

    organization_id: int
    account_id: int
    contact_id: int | None
    owner_id: int
    stage_id: int
    campaign_id: int | None

    class Meta:
        table = "opportunity"
        indexes = live_indexes(
            "opportunity",
            # Lists in each order, counts (the read rule's columns: an index-only scan) ...
            by_id=("organization_id", "id"),
            amount=("organization_id", "amount_cents", "id"),
            name=("organization_id", "name", "id"),
            close=("organization_id", "expected_close_date", "id"),
            updated=("organization_id", "updated_at", "id"),
            probability=("organization_id", "probability", "id"),
            readers=("organization_id", "visibility", "owner_id", "id"),
            stage=("organization_id", "stage_id", "id"),
            # ... and the relations that list a record's opportunities.
            account=("account_id", "id"),
            contact=("contact_id", "id"),
            campaign=("campaign_id", "id"),
        )

    def __str__(self) -> str:
        return self.name


# Link tables. Each points at its lead or opportunity through a column named `record`, so that the
# code handling roles is the same for both kinds.


class _Participant(TimestampedModel):
    id = fields.IntField(primary_key=True)
    role = fields.CharField(max_length=100, null=True)

    record_id: int
    contact_id: int

    class Meta:
        abstract = True


class LeadParticipant(_Participant):
    record: fields.ForeignKeyRelation[Lead] = fields.ForeignKeyField(
        "models.Lead", related_name="participants", on_delete=fields.CASCADE
    )
    contact: fields.ForeignKeyRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name="lead_participations", on_delete=fields.CASCADE
    )

    class Meta:
        table = "lead_participant"
        unique_together = (("record", "contact"),)
        indexes = (("contact_id", "record_id"),)  # a contact's deals


class OpportunityParticipant(_Participant):
    record: fields.ForeignKeyRelation[Opportunity] = fields.ForeignKeyField(
        "models.Opportunity", related_name="participants", on_delete=fields.CASCADE
    )
    contact: fields.ForeignKeyRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name="opportunity_participations", on_delete=fields.CASCADE
    )

    class Meta:
        table = "opportunity_participant"
        unique_together = (("record", "contact"),)
        indexes = (("contact_id", "record_id"),)  # a contact's deals


class LeadFollower(TimestampedModel):
    id = fields.IntField(primary_key=True)
    record: fields.ForeignKeyRelation[Lead] = fields.ForeignKeyField(
        "models.Lead", related_name="followers", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="followed_leads", on_delete=fields.CASCADE
    )

    record_id: int
    user_id: int

    class Meta:
        table = "lead_follower"
        unique_together = (("record", "user"),)
        indexes = (("user_id", "record_id"),)  # what a user follows (the read rule)


class OpportunityFollower(TimestampedModel):
    id = fields.IntField(primary_key=True)
    record: fields.ForeignKeyRelation[Opportunity] = fields.ForeignKeyField(
        "models.Opportunity", related_name="followers", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="followed_opportunities", on_delete=fields.CASCADE
    )

    record_id: int
    user_id: int

    class Meta:
        table = "opportunity_follower"
        unique_together = (("record", "user"),)
        indexes = (("user_id", "record_id"),)  # what a user follows (the read rule)


class Comment(TimestampedModel):
    """A comment on a lead or an opportunity (exactly one of the two is set)."""

    id = fields.IntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="comments", on_delete=fields.CASCADE
    )
    lead: fields.ForeignKeyNullableRelation[Lead] = fields.ForeignKeyField(
        "models.Lead", related_name="comments", null=True, on_delete=fields.CASCADE
    )
    opportunity: fields.ForeignKeyNullableRelation[Opportunity] = fields.ForeignKeyField(
        "models.Opportunity", related_name="comments", null=True, on_delete=fields.CASCADE
    )
    author: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="comments", on_delete=fields.RESTRICT
    )
    body = fields.TextField()

    organization_id: int
    lead_id: int | None
    opportunity_id: int | None
    author_id: int

    class Meta:
        table = "comment"
        indexes = (("lead_id", "id"), ("opportunity_id", "id"))  # a record's comments

    def __str__(self) -> str:
        return f"comment {self.id} by user {self.author_id}"


Deal = Lead | Opportunity
