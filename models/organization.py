from __future__ import annotations

from typing import TYPE_CHECKING

from tortoise import fields

from models.base import TimestampedModel

if TYPE_CHECKING:
    from models.user import User


class Organization(TimestampedModel):
    """The tenant: every other row belongs to exactly one organization."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=200)
    # An active client with no win for this long becomes an inactive client.
    inactive_client_after_days = fields.IntField(default=180)

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

    class Meta:
        table = "pipeline_stage"
        unique_together = (("organization", "name"),)
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.probability}%)"


# name, probability, won, lost: the defaults every new organization starts with.
DEFAULT_STAGES: list[tuple[str, int, bool, bool]] = [
    ("Qualification", 10, False, False),
    ("Needs analysis", 25, False, False),
    ("Proposal", 50, False, False),
    ("Negotiation", 75, False, False),
    ("Closed won", 100, True, False),
    ("Closed lost", 0, False, True),
]
