"""Webhooks: endpoints an organization's admins register, and the deliveries made to them.

Each endpoint follows the change log (models.sync.Change) from its own cursor; a delivery is one
change sent to one endpoint, with its attempts. The delivery loop (webhooks/delivery.py) claims
an endpoint by writing a lease on its row, so that one process at a time delivers it.
"""

from __future__ import annotations

from enum import Enum

from tortoise import fields
from tortoise.models import Model

from models.base import TimestampedModel
from models.organization import Organization
from models.user import User


class WebhookStatus(str, Enum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"  # by an admin; resumes where it stood
    DISABLED = "DISABLED"  # failing for longer than the retry window; resumes where it stood


class DeliveryStatus(str, Enum):
    PENDING = "PENDING"  # failing, retried with backoff
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"  # given up: the endpoint was disabled on it


class WebhookEndpoint(TimestampedModel):
    id = fields.IntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="webhook_endpoints", on_delete=fields.CASCADE
    )
    url = fields.CharField(max_length=2000)
    description = fields.CharField(max_length=500, default="")
    # Record types of the change feed it wants (`changes(types:)`); empty: all of them.
    change_types: list = fields.JSONField(default=list)  # type: ignore[assignment]
    # Standard Webhooks secrets (whsec_...): the current one, and after a rotation the previous
    # one, which signs too until `previous_secret_until`. Stored encrypted (`fernet:<token>`,
    # about 170 characters for a whsec_ secret: webhooks/sealing.py).
    secret = fields.CharField(max_length=300)
    previous_secret = fields.CharField(max_length=300, null=True)
    previous_secret_until = fields.DatetimeField(null=True)
    status = fields.CharEnumField(WebhookStatus, max_length=10, default=WebhookStatus.ACTIVE)
    disabled_reason = fields.CharField(max_length=500, null=True)
    # Where delivery stands: a `changes` cursor, after the last change delivered.
    cursor = fields.CharField(max_length=400)
    # The id of the change at the cursor (0 for a snapshot cursor): the loop compares it with
    # the organization's newest change to find the endpoints with something to deliver.
    position = fields.BigIntField(default=0)
    # After `redeliverWebhooks`: deliveries up to this change id are redeliveries.
    redeliver_through = fields.BigIntField(default=0)
    # The change at the cursor's head failing: since when, how many times, the next try.
    failing_since = fields.DatetimeField(null=True)
    failures = fields.IntField(default=0)
    retry_at = fields.DatetimeField(null=True)
    # The delivery loop's lease: which process delivers it, until when.
    lease_holder = fields.CharField(max_length=100, null=True)
    lease_expires_at = fields.DatetimeField(null=True)
    created_by: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="webhook_endpoints", on_delete=fields.CASCADE
    )

    organization_id: int
    created_by_id: int

    class Meta:
        table = "webhook_endpoint"
        # The organization's list; the loop's scan of the endpoints due (status, then org).
        indexes = (("organization_id", "id"), ("status", "organization_id", "id"))

    def __str__(self) -> str:
        return f"webhook endpoint {self.id} ({self.url})"


class WebhookDelivery(Model):
    # One change sent (or being sent) to one endpoint, and its latest attempts, newest last.

    id = fields.BigIntField(primary_key=True)
    organization_id = fields.IntField()
    endpoint: fields.ForeignKeyRelation[WebhookEndpoint] = fields.ForeignKeyField(
        "models.WebhookEndpoint", related_name="deliveries", on_delete=fields.CASCADE
    )
    webhook_id = fields.CharField(max_length=400)  # the change's cursor: the idempotency id
    record_type = fields.CharField(max_length=30)
    op = fields.CharField(max_length=10)
    status = fields.CharEnumField(DeliveryStatus, max_length=10)
    attempt_count = fields.IntField(default=0)
    # [{"at", "responseCode", "durationMs", "error"}]: the latest ATTEMPTS_KEPT attempts.
    attempts: list = fields.JSONField(default=list)  # type: ignore[assignment]
    redelivery = fields.BooleanField(default=False)  # sent again on an admin's request
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    endpoint_id: int

    class Meta:
        table = "webhook_delivery"
        indexes = (("organization_id", "endpoint_id", "id"),)

    def __str__(self) -> str:
        return f"delivery {self.id} of {self.webhook_id} to endpoint {self.endpoint_id}"
