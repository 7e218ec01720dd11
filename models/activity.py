"""Activities: visits, meetings, calls, emails and tasks, planned and then done or cancelled."""

from __future__ import annotations

from enum import Enum

from tortoise import fields
from tortoise.models import Model

from models.account import Account
from models.base import SoftDeletedModel, live_indexes
from models.contact import Contact
from models.deal import Lead, Opportunity
from models.organization import Organization
from models.user import User


class ActivityKind(str, Enum):
    VISIT = "VISIT"
    MEETING = "MEETING"
    CALL = "CALL"
    EMAIL = "EMAIL"
    TASK = "TASK"


class ActivityStatus(str, Enum):
    PLANNED = "PLANNED"
    DONE = "DONE"
    CANCELLED = "CANCELLED"


class Activity(SoftDeletedModel):
    """Linked to an account, a contact, a lead or an opportunity: at least one, at most one deal."""

    id = fields.IntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="activities", on_delete=fields.CASCADE
    )
    kind = fields.CharEnumField(ActivityKind, max_length=10)
    subject = fields.CharField(max_length=200)
    notes = fields.TextField(null=True)
    starts_at = fields.DatetimeField(null=True)
    due_date = fields.DateField(null=True)
    # starts_at, or the due date's midnight UTC: what the agenda sorts and ranges over.
    scheduled_at = fields.DatetimeField()
    duration_minutes = fields.IntField(null=True)
    status = fields.CharEnumField(ActivityStatus, max_length=10, default=ActivityStatus.PLANNED)
    outcome = fields.TextField(null=True)
    closed_at = fields.DatetimeField(null=True)  # when it was done or cancelled
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="activities", on_delete=fields.RESTRICT
    )
    account: fields.ForeignKeyNullableRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="activities", null=True, on_delete=fields.SET_NULL
    )
    contact: fields.ForeignKeyNullableRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name="activities", null=True, on_delete=fields.SET_NULL
    )
    lead: fields.ForeignKeyNullableRelation[Lead] = fields.ForeignKeyField(
        "models.Lead", related_name="activities", null=True, on_delete=fields.SET_NULL
    )
    opportunity: fields.ForeignKeyNullableRelation[Opportunity] = fields.ForeignKeyField(
        "models.Opportunity", related_name="activities", null=True, on_delete=fields.SET_NULL
    )
    version = fields.IntField(default=1)

    organization_id: int
    owner_id: int
    account_id: int | None
    contact_id: int | None
    lead_id: int | None
    opportunity_id: int | None

    class Meta:
        table = "activity"
        indexes = (
            ("organization_id", "owner_id", "scheduled_at"),  # agendas
            *live_indexes(
                "activity",
                scheduled=("organization_id", "scheduled_at", "id"),
                updated=("organization_id", "updated_at", "id"),
                # A record's activities, in time order.
                account=("account_id", "scheduled_at", "id"),
                contact=("contact_id", "scheduled_at", "id"),
                lead=("lead_id", "scheduled_at", "id"),
                opportunity=("opportunity_id", "scheduled_at", "id"),
            ),
        )

    def __str__(self) -> str:
        return f"{self.kind} {self.subject}"


class ActivityAttendee(Model):
    id = fields.IntField(primary_key=True)
    activity: fields.ForeignKeyRelation[Activity] = fields.ForeignKeyField(
        "models.Activity", related_name="attendees", on_delete=fields.CASCADE
    )
    contact: fields.ForeignKeyRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name="attended_activities", on_delete=fields.CASCADE
    )

    activity_id: int
    contact_id: int

    class Meta:
        table = "activity_attendee"
        unique_together = (("activity", "contact"),)
        indexes = (("contact_id", "activity_id"),)  # what a contact attended

    def __str__(self) -> str:
        return f"contact {self.contact_id} at activity {self.activity_id}"
