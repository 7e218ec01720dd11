"""Columns every CRM row carries."""

from __future__ import annotations

from decimal import Decimal

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

# Money is stored as an integer count of hundredths: exact, summable and sortable the same way on
# SQLite and PostgreSQL (Tortoise keeps decimals as text on SQLite, which sorts wrongly).
MONEY_SCALE = Decimal("0.01")


def to_cents(amount: Decimal) -> int:
    return int((amount / MONEY_SCALE).to_integral_exact())


def from_cents(cents: int | None) -> Decimal | None:
    return None if cents is None else (Decimal(cents) * MONEY_SCALE).quantize(MONEY_SCALE)


class LiveIndex(Index):
    """An index of the rows not soft-deleted (`deleted_at IS NULL`): what every list, count and
    lookup of a soft-deleted model reads. Like every index of a tenant table, it starts with the
    organization (or a key that implies it), so that a request's cost follows its own
    organization's rows, never the deployment's."""

    def __init__(self, *, fields: tuple[str, ...] | list[str], name: str) -> None:
        super().__init__(fields=fields, name=name)
        self.extra = " WHERE deleted_at IS NULL"


def live_indexes(table: str, **orders: tuple[str, ...]) -> tuple[LiveIndex, ...]:
    """The live-row indexes of a table, by name: orders={"amount": ("organization_id",
    "amount_cents", "id")} is the index `<table>_amount_live`."""
    return tuple(
        LiveIndex(fields=fields, name=f"{table}_{name}_live") for name, fields in orders.items()
    )


class TimestampedModel(Model):
    created_at = fields.DatetimeField(auto_now_add=True)
    # Not indexed alone: a model's `updatedSince` and `UPDATED_AT` index starts with its
    # organization (Meta.indexes).
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        abstract = True


class SoftDeletedModel(TimestampedModel):
    """Rows that partners must learn were deleted keep a deletion time instead of going away."""

    deleted_at = fields.DatetimeField(null=True)  # the live rows: LiveIndex

    class Meta:
        abstract = True
