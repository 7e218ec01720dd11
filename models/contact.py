from __future__ import annotations

from enum import Enum

from tortoise import fields
from tortoise.models import Model

from models.account import Account
from models.base import SoftDeletedModel, live_indexes
from models.organization import Organization
from models.user import User


class LifecycleStage(str, Enum):
    PROSPECT = "PROSPECT"
    POTENTIAL_CLIENT = "POTENTIAL_CLIENT"
    ACTIVE_CLIENT = "ACTIVE_CLIENT"
    INACTIVE_CLIENT = "INACTIVE_CLIENT"


class Contact(SoftDeletedModel):
    """A person at an account."""

    id = fields.IntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="contacts", on_delete=fields.CASCADE
    )
    first_name = fields.CharField(max_length=100)
    last_name = fields.CharField(max_length=100)
    email = fields.CharField(max_length=254, null=True)
    phone = fields.CharField(max_length=50, null=True)
    title = fields.CharField(max_length=150, null=True)
    account: fields.ForeignKeyNullableRelation[Account] = fields.ForeignKeyField(
        "models.Account", related_name="contacts", null=True, on_delete=fields.SET_NULL
    )
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="contacts", on_delete=fields.RESTRICT
    )
    lifecycle_stage = fields.CharEnumField(
        LifecycleStage, max_length=20, default=LifecycleStage.PROSPECT
    )
    do_not_contact = fields.BooleanField(default=False)  # asked not to receive messages
    # A manager set the stage by hand: it stays until they clear it.
    lifecycle_pinned = fields.BooleanField(default=False)

    organization_id: int
    account_id: int | None
    owner_id: int

    class Meta:
        table = "contact"
        indexes = live_indexes(
            "contact",
            by_id=("organization_id", "id"),
            last_name=("organization_id", "last_name", "id"),
            updated=("organization_id", "updated_at", "id"),
            owner=("organization_id", "owner_id", "id"),
            lifecycle=("organization_id", "lifecycle_stage", "id"),
            account=("account_id", "id"),
        )

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    def __str__(self) -> str:
        return self.full_name


class LifecycleChange(Model):
    """A contact's move from one lifecycle stage to another, and why."""

    id = fields.IntField(primary_key=True)
    contact: fields.ForeignKeyRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name="lifecycle_changes", on_delete=fields.CASCADE
    )
    from_stage = fields.CharEnumField(LifecycleStage, max_length=20)
    to_stage = fields.CharEnumField(LifecycleStage, max_length=20)
    cause = fields.CharField(max_length=30)  # ACTIVITY_COMPLETED, OPPORTUNITY_WON, ...
    reason = fields.TextField()
    actor: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="lifecycle_changes", null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    contact_id: int
    actor_id: int | None

    class Meta:
        table = "lifecycle_change"
        indexes = (("contact_id", "id"),)  # a contact's lifecycle history

    def __str__(self) -> str:
        return f"contact {self.contact_id}: {self.from_stage} -> {self.to_stage}"


class ContactTag(Model):
    """A label on a contact (lower case), for segments."""

    id = fields.IntField(primary_key=True)
    contact: fields.ForeignKeyRelation[Contact] = fields.ForeignKeyField(
        "models.Contact", related_name="tags", on_delete=fields.CASCADE
    )
    tag = fields.CharField(max_length=50)

    contact_id: int

    class Meta:
        table = "contact_tag"
        unique_together = (("contact", "tag"),)

    def __str__(self) -> str:
        return f"{self.tag} on contact {self.contact_id}"
