from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

from tortoise import fields

from models.base import TimestampedModel

if TYPE_CHECKING:
    from models.user import User


class ForecastCategory(str, Enum):
    """Where an opportunity counts in a forecast, from least to most certain."""

    OMITTED = "OMITTED"  # left out of the forecast (and every lost opportunity)
    PIPELINE = "PIPELINE"
    BEST_CASE = "BEST_CASE"
    COMMIT = "COMMIT"
    CLOSED = "CLOSED"  # every won opportunity, and only those


class Organization(TimestampedModel):
    """The tenant: every other row belongs to exactly one organization."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=200)
    # An active client with no win for this long becomes an inactive client.
    inactive_client_after_days = fields.IntField(default=180)
    # What forecasts and quotas are in: amounts in other currencies are reported apart.
    currency = fields.CharField(max_length=3, default="USD")

    users: fields.ReverseRelation[User]
    stages: fields.ReverseRelation[PipelineStage]

    class Meta:
        table = "organization"

    def __str__(self) -> str:
        return self.name


class PipelineStage(TimestampedModel):
    id = fields.IntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="stages", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=100)
    position = fields.IntField()
    probability = fields.IntField()  # percent, 0..100
    is_won = fields.BooleanField(default=False)
    is_lost = fields.BooleanField(default=False)
    # The forecast category of opportunities moved here, unless overridden on one.
    forecast_category = fields.CharEnumField(
        ForecastCategory, max_length=20, default=ForecastCategory.PIPELINE
    )

    class Meta:
        table = "pipeline_stage"
        unique_together = (("organization", "name"),)
        indexes = (("organization_id", "position", "id"),)
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.probability}%)"


# name, probability, won, lost, forecast category: the stages every new organization starts with.
DEFAULT_STAGES: list[tuple[str, int, bool, bool, ForecastCategory]] = [
    ("Qualification", 10, False, False, ForecastCategory.PIPELINE),
    ("Needs analysis", 25, False, False, ForecastCategory.PIPELINE),
    ("Proposal", 50, False, False, ForecastCategory.BEST_CASE),
    ("Negotiation", 75, False, False, ForecastCategory.COMMIT),
    ("Closed won", 100, True, False, ForecastCategory.CLOSED),
    ("Closed lost", 0, False, True, ForecastCategory.OMITTED),
]
