"""The event log: every change to a lead, opportunity, account or contact, written in the
transaction of the change.

It is the audit trail (`history`), the source of notifications, and what live subscribers replay
from. Event ids are handed out in commit order (see resolvers/events.py), so "every event after
id N" never skips one that committed late.
"""

from __future__ import annotations

from enum import Enum

from tortoise import fields
from tortoise.models import Model

from models.organization import Organization
from models.user import User


class EventKind(str, Enum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    STAGE_CHANGED = "STAGE_CHANGED"
    WON = "WON"
    LOST = "LOST"
    CONVERTED = "CONVERTED"
    DELETED = "DELETED"
    PRIMARY_CONTACT_SET = "PRIMARY_CONTACT_SET"
    PARTICIPANT_ADDED = "PARTICIPANT_ADDED"
    PARTICIPANT_REMOVED = "PARTICIPANT_REMOVED"
    PARTICIPANT_UPDATED = "PARTICIPANT_UPDATED"
    FOLLOWER_ADDED = "FOLLOWER_ADDED"
    FOLLOWER_REMOVED = "FOLLOWER_REMOVED"
    COMMENT_ADDED = "COMMENT_ADDED"
    ACTIVITY_PLANNED = "ACTIVITY_PLANNED"
    ACTIVITY_RESCHEDULED = "ACTIVITY_RESCHEDULED"
    ACTIVITY_COMPLETED = "ACTIVITY_COMPLETED"
    ACTIVITY_CANCELLED = "ACTIVITY_CANCELLED"
    MESSAGE_SENT = "MESSAGE_SENT"
    LINE_ITEM_ADDED = "LINE_ITEM_ADDED"
    LINE_ITEM_CHANGED = "LINE_ITEM_CHANGED"
    LINE_ITEM_REMOVED = "LINE_ITEM_REMOVED"
    CAMPAIGN_MESSAGE_SENT = "CAMPAIGN_MESSAGE_SENT"
    CAMPAIGN_RESPONSE = "CAMPAIGN_RESPONSE"


class Event(Model):
    id = fields.BigIntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="events", on_delete=fields.CASCADE
    )
    record_type = fields.CharField(max_length=20)  # "Lead", "Opportunity", "Account", "Contact"
    record_id = fields.IntField()
    kind = fields.CharEnumField(EventKind, max_length=30)
    actor: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="events", null=True, on_delete=fields.SET_NULL
    )
    # In the models' terms (resolvers/events.py): {"fields": {"stage_id": {"from": 3, "to": 5,
    # "from_label": ..., "to_label": ...}}} for field updates, then details ("contact_id": 7...).
    changes: dict = fields.JSONField(default=dict)  # type: ignore[assignment]
    created_at = fields.DatetimeField(auto_now_add=True)

    organization_id: int
    actor_id: int | None

    class Meta:
        table = "event"
        # The organization's log (live readers, liveCursor) and a record's history.
        indexes = (("organization_id", "id"), ("record_type", "record_id", "id"))

    def __str__(self) -> str:
        return f"{self.kind} on {self.record_type} {self.record_id}"


class NotificationKind(str, Enum):
    EVENT = "EVENT"  # an event on a record the user follows
    WEBHOOK_ENDPOINT_DISABLED = "WEBHOOK_ENDPOINT_DISABLED"  # to the organization's admins


class Notification(Model):
    """One per follower per event, except for the event's actor."""

    # And news of the organization for its admins (a webhook endpoint disabled): no event.

    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="notifications", on_delete=fields.CASCADE
    )
    event: fields.ForeignKeyNullableRelation[Event] = fields.ForeignKeyField(
        "models.Event", related_name="notifications", on_delete=fields.CASCADE, null=True
    )
    kind = fields.CharEnumField(NotificationKind, max_length=30, default=NotificationKind.EVENT)
    message = fields.CharField(max_length=1000, null=True)  # for notifications without an event
    webhook_endpoint_id = fields.IntField(null=True)  # WEBHOOK_ENDPOINT_DISABLED: which
    read_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    user_id: int
    event_id: int | None

    class Meta:
        table = "notification"
        unique_together = (("user", "event"),)
        indexes = (("user_id", "read_at"), ("user_id", "id"))  # a user's (unread) notifications

    def __str__(self) -> str:
        return f"notification {self.id} of user {self.user_id}"
