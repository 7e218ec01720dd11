"""Columns every CRM row carries."""

from __future__ import annotations

from decimal import Decimal

from tortoise import fields
from tortoise.models import Model

# Money is stored as an integer count of hundredths: exact, summable and sortable the same way on
# SQLite and PostgreSQL (Tortoise keeps decimals as text on SQLite, which sorts wrongly).
MONEY_SCALE = Decimal("0.01")


def to_cents(amount: Decimal) -> int:
    return int((amount / MONEY_SCALE).to_integral_exact())


def from_cents(cents: int | None) -> Decimal | None:
    return None if cents is None else (Decimal(cents) * MONEY_SCALE).quantize(MONEY_SCALE)


class TimestampedModel(Model):
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True, db_index=True)

    class Meta:
        abstract = True


class SoftDeletedModel(TimestampedModel):
    """Rows that partners must learn were deleted keep a deletion time instead of going away."""

    deleted_at = fields.DatetimeField(null=True, db_index=True)

    class Meta:
        abstract = True
