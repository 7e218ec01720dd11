"""The change log partners sync from: one row per write to a synced table, in commit order.

Rows are written by database triggers (installed by `manage.py migrate`, see resolvers/sync.py),
so that no write path can forget them.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Change(Model):
    id = fields.BigIntField(primary_key=True)
    organization_id = fields.IntField()
    record_type = fields.CharField(max_length=30)
    record_id = fields.IntField()
    op = fields.CharField(max_length=10)  # UPSERT or DELETE
    data: dict | None = fields.JSONField(null=True)  # type: ignore[assignment]  # links' ends
    changed_at = fields.DatetimeField()
    # PostgreSQL: the writing transaction's id (0 on SQLite), the feed's order with `id`.
    txid = fields.BigIntField(default=0)

    class Meta:
        table = "sync_change"
        # The organization's commit order, and (for cursors from before it) the legacy order.
        indexes = (("organization_id", "id"), ("organization_id", "txid", "id"))

    def __str__(self) -> str:
        return f"{self.op} {self.record_type} {self.record_id}"


class SyncState(Model):
    """One row: where the change log's per-organization commit order begins, and how far the
    changes logged before it were pruned."""

    id = fields.IntField(primary_key=True)
    # The newest (txid, id) pruned of the changes logged in (transaction id, id) order: legacy
    # cursors at or before it must resync.
    pruned_txid = fields.BigIntField(default=0)
    pruned_through = fields.BigIntField(default=0)
    # Changes with a larger id are in each organization's commit order (resolvers/sync.py);
    # those up to it were logged in (transaction id, id) order. Set once, by install_triggers.
    ordered_from = fields.BigIntField(null=True)

    class Meta:
        table = "sync_state"

    def __str__(self) -> str:
        return f"pruned through {self.pruned_through}"


class PrunedChanges(Model):
    """An organization's newest change that the retention forgot (older cursors resync)."""

    organization_id = fields.IntField(primary_key=True)  # given, never generated
    through_id = fields.BigIntField()

    class Meta:
        table = "sync_pruned"

    def __str__(self) -> str:
        return f"organization {self.organization_id} pruned through {self.through_id}"


class PersistedQuery(Model):
    """A registered query (`manage.py persist-queries`), known by its SHA-256 to every
    organization. (Rows left from before per-organization storage, not allow-listed, are no
    longer read.)"""

    sha256 = fields.CharField(max_length=64, primary_key=True)
    query = fields.TextField()
    # Registered by `manage.py persist-queries`: what PERSISTED_QUERIES=allowlist runs.
    allowlisted = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "persisted_query"

    def __str__(self) -> str:
        return self.sha256


class OrganizationQuery(Model):
    """A query a signed-in member sent with its hash, remembered for their organization only,
    within a size and a count per organization (the least recently used go first)."""

    id = fields.BigIntField(primary_key=True)
    organization_id = fields.IntField()
    sha256 = fields.CharField(max_length=64)
    query = fields.TextField()
    used_at = fields.DatetimeField()

    class Meta:
        table = "organization_query"
        unique_together = (("organization_id", "sha256"),)
        indexes = (("organization_id", "used_at"),)

    def __str__(self) -> str:
        return f"{self.organization_id}:{self.sha256}"
