"""Background jobs: long work (campaign launches, scheduled upkeep) kept in the database, so that
any process may run it and a process that dies leaves it to another (resolvers/jobs.py)."""

from __future__ import annotations

from enum import Enum

from tortoise import fields
from tortoise.models import Model

from models.organization import Organization


class JobState(str, Enum):
    QUEUED = "QUEUED"  # waits for run_after, then for a free slot
    RUNNING = "RUNNING"  # a process holds its lease (locked_by until locked_until)
    DONE = "DONE"
    FAILED = "FAILED"  # every attempt failed: see last_error
    CANCELLED = "CANCELLED"


class Job(Model):
    id = fields.BigIntField(primary_key=True)
    # None for the deployment's own upkeep (the scheduled sweeps), which serves every tenant.
    organization: fields.ForeignKeyNullableRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="jobs", null=True, on_delete=fields.CASCADE
    )
    kind = fields.CharField(max_length=50)
    # One job per key: enqueueing a key that is there already does nothing (a launch clicked
    # twice, a schedule's slot claimed by several processes).
    key = fields.CharField(max_length=200, unique=True)
    payload: dict = fields.JSONField(default=dict)  # type: ignore[assignment]
    state = fields.CharEnumField(JobState, max_length=10, default=JobState.QUEUED)
    attempts = fields.IntField(default=0)
    max_attempts = fields.IntField(default=5)
    run_after = fields.DatetimeField()
    locked_by = fields.CharField(max_length=100, null=True)
    locked_until = fields.DatetimeField(null=True)
    last_error = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)
    finished_at = fields.DatetimeField(null=True)

    organization_id: int | None

    class Meta:
        table = "job"
        indexes = (
            ("organization_id", "state", "id"),  # an organization's jobs; its running ones (cap)
            # The runners' claim looks across organizations by design: due jobs, oldest first.
            ("state", "run_after"),
        )

    def __str__(self) -> str:
        return f"{self.kind} job {self.id} ({self.state.value})"
