"""Incremental sync for partners: every upsert and deletion of the synced tables, in commit order.

The change log (models.sync.Change) is written by database triggers on the synced tables, in the
transaction of the write, so every write path is covered: the ORM's saves, its bulk updates and
raw SQL alike.

Commit order. On SQLite one transaction writes at a time, so change ids are in commit order. On
PostgreSQL, ids come from a sequence when a row is written, and a transaction that got a small
id may commit after one that got a larger id. So each change row records its transaction's id
(txid), and the feed serves changes in (txid, id) order, only from transactions below the
horizon: the oldest transaction still running (`pg_snapshot_xmin`). Every change below it is
final (committed or gone), so a partner resuming from a cursor can never skip a change that
commits late, and no reader waits on a lock.

A partner without a cursor first gets every live record (the snapshot phase), then the changes
made since the snapshot began.

Beware: on SQLite, Tortoise counts the rows an UPDATE changed through `total_changes`, which
includes the rows the triggers insert. Code that looks at update counts of synced tables tests
for zero, never for one.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tortoise import connections
from tortoise.expressions import Q
from tortoise.models import Model
from tortoise.transactions import in_transaction

from config import settings
from models import (
    Account,
    Activity,
    Change,
    Contact,
    Lead,
    LeadFollower,
    LeadParticipant,
    Opportunity,
    OpportunityFollower,
    OpportunityParticipant,
    Role,
    SyncState,
)
from resolvers.context import RequestContext
from resolvers.errors import ApiError, ErrorCode, bad_input, forbidden

_MAX_ID = 2**31 - 1  # record ids are 32-bit
_MAX_CURSOR = 200  # characters of a cursor


@dataclass(frozen=True)
class Synced:
    """A synced table: the API's type name, its model, and for links their parent table."""

    name: str
    model: type[Model]
    parent: str | None = None  # the table whose row a link belongs to
    other: str | None = None  # a link's other end: contact_id or user_id


SYNCED: list[Synced] = [
    Synced("Account", Account),
    Synced("Contact", Contact),
    Synced("Lead", Lead),
    Synced("Opportunity", Opportunity),
    Synced("Activity", Activity),
    Synced("LeadParticipant", LeadParticipant, "lead", "contact_id"),
    Synced("OpportunityParticipant", OpportunityParticipant, "opportunity", "contact_id"),
    Synced("LeadFollower", LeadFollower, "lead", "user_id"),
    Synced("OpportunityFollower", OpportunityFollower, "opportunity", "user_id"),
]
BY_NAME = {synced.name: synced for synced in SYNCED}


# Triggers


_PG_FUNCTION = (Path(__file__).parent / "sync_triggers.sql").read_text(encoding="utf-8")

# A deal's link tables, whose rows a deal's deletion tombstones too.
_DEAL_LINKS = {
    "Lead": ("lead_participant", "lead_follower"),
    "Opportunity": ("opportunity_participant", "opportunity_follower"),
}


def _pg_statements() -> list[str]:
    statements = [_PG_FUNCTION]
    for synced in SYNCED:
        table = synced.model._meta.db_table
        trigger = f"crm_change_{table}"
        links = _DEAL_LINKS.get(synced.name, ("", ""))
        arguments = (
            f"'{synced.name}', '{synced.parent or ''}', '{synced.other or ''}', "
            f"'{links[0]}', '{links[1]}'"
        )
        statements += [
            f"DROP TRIGGER IF EXISTS {trigger} ON {table}",
            f"CREATE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION crm_log_change({arguments})",
        ]
    return statements


def _sqlite_statements() -> list[str]:
    statements = []
    now = "strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')"
    for synced in SYNCED:
        table = synced.model._meta.db_table
        for event, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
            if synced.parent is None:
                org = f"{row}.organization_id"
                data = "NULL"
                operation = (
                    "'DELETE'"
                    if event == "DELETE"
                    else f"CASE WHEN {row}.deleted_at IS NULL THEN 'UPSERT' ELSE 'DELETE' END"
                )
            else:
                org = f"(SELECT organization_id FROM {synced.parent} WHERE id = {row}.record_id)"
                data = (
                    f"json_object('record_id', {row}.record_id, "
                    f"'{synced.other}', {row}.{synced.other})"
                )
                operation = "'DELETE'" if event == "DELETE" else "'UPSERT'"
            trigger = f"crm_change_{table}_{event.lower()}"
            statements += [
                f"DROP TRIGGER IF EXISTS {trigger}",
                f"CREATE TRIGGER {trigger} AFTER {event} ON {table} "
                f"WHEN {org} IS NOT NULL BEGIN "
                "INSERT INTO sync_change (organization_id, record_type, record_id, op, data, "
                f"changed_at, txid) VALUES ({org}, '{synced.name}', {row}.id, {operation}, "
                f"{data}, {now}, 0); END",
            ]
        if synced.name in _DEAL_LINKS:
            statements += _sqlite_deal_links(synced.name, table, now)
    return statements


def _sqlite_deal_links(name: str, table: str, now: str) -> list[str]:
    """A deal's deletion tombstones its participants and followers too."""
    participants, followers = _DEAL_LINKS[name]
    inserts = " ".join(
        "INSERT INTO sync_change (organization_id, record_type, record_id, op, data, "
        f"changed_at, txid) SELECT NEW.organization_id, '{name}{kind}', id, 'DELETE', "
        f"json_object('record_id', record_id, '{other}', {other}), {now}, 0 "
        f"FROM {links} WHERE record_id = NEW.id;"
        for kind, links, other in (
            ("Participant", participants, "contact_id"),
            ("Follower", followers, "user_id"),
        )
    )
    trigger = f"crm_change_{table}_links"
    return [
        f"DROP TRIGGER IF EXISTS {trigger}",
        f"CREATE TRIGGER {trigger} AFTER UPDATE ON {table} "
        f"WHEN OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL BEGIN {inserts} END",
    ]


async def install_triggers() -> None:
    """Create (or replace) the change log's triggers. Run by `manage.py migrate`."""
    connection = connections.get("default")
    postgres = connection.capabilities.dialect == "postgres"
    for statement in _pg_statements() if postgres else _sqlite_statements():
        await connection.execute_script(statement)


# Reading


def _encode(values: list[Any]) -> str:
    payload = json.dumps(values, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _decode(cursor: str) -> list[Any]:
    """["CHG", txid, id] (after this change) or ["SNAP", txid, id, type index, record id]."""
    try:
        if len(cursor) > _MAX_CURSOR:
            raise ValueError("too long")
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(values, list) or not values or values[0] not in ("CHG", "SNAP"):
            raise ValueError("not a sync cursor")
        if len(values) != (3 if values[0] == "CHG" else 5):
            raise ValueError("malformed sync cursor")
        if not all(type(v) is int and 0 <= v < 2**62 for v in values[1:]):
            raise ValueError("malformed sync cursor")
        if values[0] == "SNAP" and not (values[3] <= len(SYNCED) and values[4] <= _MAX_ID):
            raise ValueError("malformed sync cursor")
        return values
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError, json.JSONDecodeError):
        raise bad_input("since", "Invalid cursor: pass an endCursor of `changes`.") from None


def _postgres() -> bool:
    return connections.get("default").capabilities.dialect == "postgres"


async def horizon() -> int:
    """The transaction id below which every transaction has ended (PostgreSQL); on SQLite,
    where every change has txid 0, no bound."""
    if not _postgres():
        return 2**62
    _, rows = await connections.get("default").execute_query(
        "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon"
    )
    return int(rows[0]["horizon"])


async def snapshot_mark() -> tuple[int, int]:
    """Where the change phase of a snapshot beginning now starts: after every change whose
    transaction had ended (PostgreSQL), after the last change (SQLite)."""
    pruned = await pruned_mark()
    if _postgres():
        return max((await horizon(), 0), pruned)
    _, rows = await connections.get("default").execute_query(
        "SELECT coalesce(max(id), 0) AS top FROM sync_change"
    )
    return max((0, int(rows[0]["top"])), pruned)


async def pruned_mark() -> tuple[int, int]:
    state = await SyncState.get_or_none(id=1)
    return (state.pruned_txid, state.pruned_through) if state else (0, 0)


@dataclass
class Entry:
    op: str
    record_type: str
    record_id: int
    changed_at: datetime | None
    row: Model | None  # the record as it is now (None once deleted, and for deletions)
    data: dict[str, Any] | None  # a link's two ends
    cursor: str


@dataclass
class ChangePage:
    entries: list[Entry]
    end_cursor: str
    has_next_page: bool


def require_sync_reader(ctx: RequestContext) -> None:
    """Partners' keys and admins: the feed holds every record of the organization."""
    if ctx.require_viewer().role != Role.ADMIN:
        raise forbidden("The change feed is for admins and their API keys.")


def _resync(message: str) -> ApiError:
    return ApiError(ErrorCode.RESYNC_REQUIRED, message, field="since")


async def changes(
    ctx: RequestContext, since: str | None, types: list[str] | None, first: int, limit: int
) -> ChangePage:
    require_sync_reader(ctx)
    if not 1 <= first <= limit:
        raise bad_input("first", f"first must be between 1 and {limit}.")
    wanted = [synced for synced in SYNCED if types is None or synced.name in types]
    unknown = set(types or []) - set(BY_NAME)
    if unknown or not wanted:
        raise bad_input("types", f"types are among {', '.join(BY_NAME)}.")
    organization_id = ctx.require_viewer().organization_id
    cursor: list[Any] = _decode(since) if since else ["SNAP", *await snapshot_mark(), 0, 0]
    await _check_retention(cursor)
    entries: list[Entry] = []
    if cursor[0] == "SNAP":
        entries, cursor = await _snapshot(organization_id, wanted, cursor, first + 1)
    if len(entries) <= first and cursor[0] == "CHG":
        after = (cursor[1], cursor[2])
        entries += await _changes(organization_id, wanted, after, first + 1 - len(entries))
        await _check_retention(cursor)  # a prune may have run meanwhile
    more = len(entries) > first
    entries = entries[:first]
    end = entries[-1].cursor if entries else _encode(cursor)
    return ChangePage(entries, end, more)


async def _check_retention(cursor: list[Any]) -> None:
    if (cursor[1], cursor[2]) < await pruned_mark():
        raise _resync(
            f"Changes older than {settings.sync_retention_days} days are gone: sync again "
            "from the start (since: null)."
        )


async def _snapshot(
    organization_id: int, wanted: list[Synced], cursor: list[Any], size: int
) -> tuple[list[Entry], list[Any]]:
    """Every live record of the wanted types, type after type, by id; then the change phase
    from the mark taken when the snapshot began."""
    _, mark_txid, mark_id, index, after = cursor
    entries: list[Entry] = []
    while index < len(SYNCED) and len(entries) < size:
        synced = SYNCED[index]
        if synced in wanted:
            rows = (
                await _live(synced, organization_id)
                .filter(id__gt=after)
                .order_by("id")
                .limit(size - len(entries))
            )
            for row in rows:
                entries.append(
                    Entry(
                        "UPSERT",
                        synced.name,
                        row.pk,
                        getattr(row, "updated_at", None),
                        row,
                        _link(synced, row),
                        _encode(["SNAP", mark_txid, mark_id, index, row.pk]),
                    )
                )
            if len(entries) < size:  # this type is done
                index, after = index + 1, 0
            else:
                after = rows[-1].pk if rows else after
        else:
            index, after = index + 1, 0
    next_cursor = (
        ["CHG", mark_txid, mark_id]
        if index >= len(SYNCED)
        else ["SNAP", mark_txid, mark_id, index, after]
    )
    return entries, next_cursor


def _live(synced: Synced, organization_id: int) -> Any:
    if synced.parent is None:
        return synced.model.filter(organization_id=organization_id, deleted_at__isnull=True)
    return synced.model.filter(
        record__organization_id=organization_id, record__deleted_at__isnull=True
    )


def _link(synced: Synced, row: Model) -> dict[str, Any] | None:
    if synced.other is None:
        return None
    return {"record_id": row.record_id, synced.other: getattr(row, synced.other)}  # type: ignore[attr-defined]


async def _changes(
    organization_id: int, wanted: list[Synced], after: tuple[int, int], size: int
) -> list[Entry]:
    """The changes after `after`, in (txid, id) order, of transactions that have ended."""
    txid, last = after
    rows = (
        await Change.filter(
            Q(txid__gt=txid) | Q(txid=txid, id__gt=last),
            organization_id=organization_id,
            txid__lt=await horizon(),
            record_type__in=[synced.name for synced in wanted],
        )
        .order_by("txid", "id")
        .limit(size)
    )
    current: dict[tuple[str, int], Model] = {}
    for synced in wanted:
        ids = [r.record_id for r in rows if r.record_type == synced.name and r.op == "UPSERT"]
        if ids:
            for found in await _live(synced, organization_id).filter(id__in=ids):
                current[(synced.name, found.pk)] = found
    return [
        Entry(
            row.op,
            row.record_type,
            row.record_id,
            row.changed_at,
            current.get((row.record_type, row.record_id)) if row.op == "UPSERT" else None,
            row.data,
            _encode(["CHG", row.txid, row.id]),
        )
        for row in rows
    ]


async def prune(retention: timedelta) -> int:
    """Forget the changes older than the retention; cursors from before answer RESYNC_REQUIRED.
    Run it daily (`manage.py prune-changes`)."""
    cutoff = datetime.now(UTC) - retention
    async with in_transaction():
        old = Change.filter(changed_at__lt=cutoff)
        top = await old.order_by("-txid", "-id").first()
        if top is None:
            return 0
        state, _ = await SyncState.get_or_create(id=1)
        if (top.txid, top.id) > (state.pruned_txid, state.pruned_through):
            state.pruned_txid, state.pruned_through = top.txid, top.id
            await state.save()
        return await old.delete()
