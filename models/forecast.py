"""Quotas: what a seller is expected to win in a month or a quarter."""

from __future__ import annotations

from enum import Enum

from tortoise import fields

from models.base import TimestampedModel
from models.organization import Organization
from models.user import User


class PeriodKind(str, Enum):
    MONTH = "MONTH"
    QUARTER = "QUARTER"


class Quota(TimestampedModel):
    """A seller's target of won amount for one month or quarter, in the organization's currency."""

    id = fields.IntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="quotas", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="quotas", on_delete=fields.CASCADE
    )
    period_kind = fields.CharEnumField(PeriodKind, max_length=10)
    period_start = fields.DateField()  # the first day of the month or quarter
    amount_cents = fields.BigIntField()
    set_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="quotas_set", null=True, on_delete=fields.SET_NULL
    )

    organization_id: int
    user_id: int
    set_by_id: int | None

    class Meta:
        table = "quota"
        unique_together = (("user", "period_kind", "period_start"),)
        indexes = (("organization_id", "period_start"),)

    def __str__(self) -> str:
        return f"quota of user {self.user_id} for {self.period_kind} {self.period_start}"
