"""Messages composed from a lead or opportunity, sent by email or kept in the outbox."""

from __future__ import annotations

from enum import Enum
from typing import Any

from tortoise import fields

from models.activity import Activity
from models.base import TimestampedModel
from models.contact import Contact
from models.deal import Lead, Opportunity
from models.organization import Organization
from models.user import User


class MessageStatus(str, Enum):
    OUTBOX = "OUTBOX"  # recorded, not delivered (no SMTP_URL, or delivery still to come)
    SENDING = "SENDING"  # a process is handing it to the SMTP server now
    SENT = "SENT"  # the SMTP server accepted it
    FAILED = "FAILED"  # every delivery attempt failed: see last_error


class Message(TimestampedModel):
    id = fields.IntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="messages", on_delete=fields.CASCADE
    )
    sender: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="messages", on_delete=fields.RESTRICT
    )
    lead: fields.ForeignKeyNullableRelation[Lead] = fields.ForeignKeyField(
        "models.Lead", related_name="messages", null=True, on_delete=fields.SET_NULL
    )
    opportunity: fields.ForeignKeyNullableRelation[Opportunity] = fields.ForeignKeyField(
        "models.Opportunity", related_name="messages", null=True, on_delete=fields.SET_NULL
    )
    to_contact: fields.ForeignKeyRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name="messages_received", on_delete=fields.RESTRICT
    )
    to_email = fields.CharField(max_length=254)
    cc: list = fields.JSONField(default=list)  # type: ignore[assignment]  # [{contactId, email}]
    subject = fields.CharField(max_length=300)
    body = fields.TextField()
    status = fields.CharEnumField(MessageStatus, max_length=10, default=MessageStatus.OUTBOX)
    attempts = fields.IntField(default=0)
    last_error = fields.TextField(null=True)
    # A campaign's message whose delivery failed waits until then for its next attempt.
    retry_at = fields.DatetimeField(null=True)
    sent_at = fields.DatetimeField(null=True)
    activity: fields.ForeignKeyNullableRelation[Activity] = fields.ForeignKeyField(
        "models.Activity", related_name="messages", null=True, on_delete=fields.SET_NULL
    )
    campaign: fields.ForeignKeyNullableRelation[Any] = fields.ForeignKeyField(
        "models.Campaign", related_name="messages", null=True, on_delete=fields.SET_NULL
    )

    organization_id: int
    sender_id: int
    lead_id: int | None
    opportunity_id: int | None
    to_contact_id: int
    activity_id: int | None
    campaign_id: int | None

    class Meta:
        table = "message"
        indexes = (
            ("organization_id", "status"),
            ("organization_id", "id"),  # everyone's messages (admins)
            ("organization_id", "updated_at", "id"),
            ("sender_id", "id"),  # one's own messages
            ("campaign_id", "id"),  # a campaign's messages
            ("status", "updated_at"),  # the outbox's deliveries and stale claims
        )
        # A campaign messages each member (contact) once: a launch's claim finds the member's
        # message by it (resolvers/campaign.py `_record`), so a second one is refused.
        unique_together = (("campaign_id", "to_contact_id"),)

    def __str__(self) -> str:
        return f"message {self.id} to {self.to_email}"
