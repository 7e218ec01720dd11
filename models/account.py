from __future__ import annotations

from tortoise import fields

from models.base import SoftDeletedModel, live_indexes
from models.organization import Organization
from models.user import User


class Account(SoftDeletedModel):
    """A client company."""

    id = fields.IntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="accounts", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    industry = fields.CharField(max_length=100, null=True)
    website = fields.CharField(max_length=500, null=True)
    country = fields.CharField(max_length=100, null=True)
    region = fields.CharField(max_length=100, null=True)
    city = fields.CharField(max_length=100, null=True)
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="accounts", on_delete=fields.RESTRICT
    )

    organization_id: int
    owner_id: int

    class Meta:
        table = "account"
        indexes = live_indexes(
            "account",
            by_id=("organization_id", "id"),
            name=("organization_id", "name", "id"),
            updated=("organization_id", "updated_at", "id"),
            owner=("organization_id", "owner_id", "id"),
        )

    def __str__(self) -> str:
        return self.name
