"""API keys: how partners' integrations sign in. Only a digest of the secret is stored."""

from __future__ import annotations

from enum import Enum

from tortoise import fields

from models.base import TimestampedModel
from models.organization import Organization
from models.user import User


class ApiKeyScope(str, Enum):
    READ = "READ"  # every key reads what its creator reads
    WRITE = "WRITE"  # every area below
    WRITE_ACCOUNTS = "WRITE_ACCOUNTS"
    WRITE_CONTACTS = "WRITE_CONTACTS"
    WRITE_DEALS = "WRITE_DEALS"  # leads, opportunities, their roles, comments and line items
    WRITE_ACTIVITIES = "WRITE_ACTIVITIES"
    WRITE_MESSAGES = "WRITE_MESSAGES"
    WRITE_PRODUCTS = "WRITE_PRODUCTS"
    WRITE_CAMPAIGNS = "WRITE_CAMPAIGNS"


class ApiKey(TimestampedModel):
    """A key acts for the admin who created it, within the scopes it was given."""

    id = fields.IntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="api_keys", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    prefix = fields.CharField(max_length=16, unique=True)  # shown, to recognize the key
    secret_hash = fields.CharField(max_length=64, unique=True)
    scopes: list = fields.JSONField(default=list)  # type: ignore[assignment]
    expires_at = fields.DatetimeField(null=True)
    last_used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)
    created_by: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="api_keys", on_delete=fields.CASCADE
    )

    organization_id: int
    created_by_id: int

    class Meta:
        table = "api_key"
        indexes = (("organization_id", "id"),)

    def __str__(self) -> str:
        return f"API key {self.prefix} ({self.name})"
