from __future__ import annotations

from enum import Enum

from tortoise import fields

from models.base import TimestampedModel
from models.organization import Organization


class Role(str, Enum):
    ADMIN = "ADMIN"
    SALES_MANAGER = "SALES_MANAGER"
    SELLER = "SELLER"


class User(TimestampedModel):
    id = fields.IntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="users", on_delete=fields.CASCADE
    )
    email = fields.CharField(max_length=254, unique=True)
    full_name = fields.CharField(max_length=200)
    password_hash = fields.CharField(max_length=255)
    role = fields.CharEnumField(Role, max_length=20, default=Role.SELLER)
    manager: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="reports", null=True, on_delete=fields.SET_NULL
    )
    is_active = fields.BooleanField(default=True)

    organization_id: int
    manager_id: int | None
    reports: fields.ReverseRelation[User]

    class Meta:
        table = "crm_user"
        indexes = (
            ("organization_id", "id"),  # the organization's people, its reporting lines
            ("organization_id", "full_name", "id"),
            ("organization_id", "email", "id"),
            ("organization_id", "updated_at", "id"),
            ("manager_id", "id"),  # a manager's reports
        )

    def __str__(self) -> str:
        return f"{self.full_name} <{self.email}>"


class AuthToken(TimestampedModel):
    """An opaque bearer token. Only its SHA-256 digest is stored."""

    # The docstring is the table comment: Tortoise splits migration SQL on semicolons.

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="tokens", on_delete=fields.CASCADE
    )
    token_hash = fields.CharField(max_length=64, unique=True)
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)
    last_used_at = fields.DatetimeField(null=True)

    user_id: int

    class Meta:
        table = "auth_token"
        indexes = (("user_id", "id"),)  # a user's sessions (revoked together)

    def __str__(self) -> str:
        return f"token {self.id} of user {self.user_id}"
