"""Incremental sync for partners: every upsert and deletion of the synced tables, in commit order.

The change log (models.sync.Change) is written by database triggers on the synced tables, in the
transaction of the write, so every write path is covered: the ORM's saves, its bulk updates and
raw SQL alike.

Commit order, per organization. On SQLite one transaction writes at a time, so change ids are in
commit order. On PostgreSQL the triggers are deferred to the commit and take the organization's
log lock (resolvers/events.py), so a transaction's change rows get their ids at its commit, one
transaction of the organization at a time: an organization's change ids are in its commit order,
and a partner resuming "after id N" can never skip a change that commits late. Nothing waits on
other organizations or on other databases of the cluster, and readers take no lock.

A partner without a cursor first gets every live record (the snapshot phase), then the changes
made since the snapshot began.

Changes logged before that order existed (ids up to `SyncState.ordered_from`) were ordered by
(transaction id, id): a cursor of that time ("CHG", "SNAP") reads them in that order, then
carries on in id order.

Beware: on SQLite, Tortoise counts the rows an UPDATE changed through `total_changes`, which
includes the rows the triggers insert. Code that looks at update counts of synced tables tests
for zero, never for one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from tortoise import connections
from tortoise.expressions import Q
from tortoise.functions import Max
from tortoise.models import Model
from tortoise.transactions import in_transaction

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
    PrunedChanges,
    Role,
    SyncState,
)
from resolvers import cursors
from resolvers.context import RequestContext
from resolvers.errors import ApiError, ErrorCode, bad_input, forbidden
from resolvers.events import ORGANIZATION_LOG_LOCK
from resolvers.pagination import Window

_MAX_ID = 2**31 - 1  # record ids are 32-bit


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
    function = _PG_FUNCTION.replace("{organization_log_lock}", str(ORGANIZATION_LOG_LOCK))
    statements = [function]
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
            # Deferred: the transaction's change rows are written at its commit (see above).
            f"CREATE CONSTRAINT TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON {table} "
            "DEFERRABLE INITIALLY DEFERRED "
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
    """Create (or replace) the change log's triggers, in one transaction. Run by
    `manage.py migrate`.

    The first time, it also records where the per-organization commit order begins
    (`SyncState.ordered_from`): on PostgreSQL, replacing a table's trigger waits for the
    transactions writing that table, so by then every change logged the old way has committed,
    and every later one is logged at commit under its organization's lock."""
    async with in_transaction() as connection:
        postgres = connection.capabilities.dialect == "postgres"
        for statement in _pg_statements() if postgres else _sqlite_statements():
            await connection.execute_script(statement)
        await connection.execute_script(
            "INSERT INTO sync_state (id, pruned_txid, pruned_through, ordered_from)"
            " SELECT 1, 0, 0, coalesce(max(id), 0) FROM sync_change WHERE true"
            " ON CONFLICT (id) DO UPDATE SET ordered_from ="
            " coalesce(sync_state.ordered_from, excluded.ordered_from)"
        )


# Reading
#
# Cursors: ["C", id] after this change; ["S", mark, type index, record id] in the snapshot phase,
# whose change phase starts after `mark`. Cursors of the (transaction id, id) order, from before
# the per-organization commit order: ["CHG", txid, id] and ["SNAP", txid, id, type index, id].


def _encode(values: list[Any]) -> str:
    return cursors.encode(*values)


_CURSOR_LENGTHS = {"C": 2, "S": 4, "CHG": 3, "SNAP": 5}
_INVALID = "Invalid cursor: pass an endCursor of `changes`."


def _decode(cursor: str) -> list[Any]:
    values = cursors.decode(cursor, "since", _INVALID)
    lengths = _CURSOR_LENGTHS.get(values[0]) if isinstance(values[0], str) else None
    if (
        len(values) != lengths
        or not all(type(v) is int and 0 <= v < 2**62 for v in values[1:])
        or (
            values[0] in ("S", "SNAP") and not (values[-2] <= len(SYNCED) and values[-1] <= _MAX_ID)
        )
    ):
        raise cursors.invalid("since", _INVALID)
    return values


def _postgres() -> bool:
    return connections.get("default").capabilities.dialect == "postgres"


async def _head(organization_id: int) -> int:
    """The id of the organization's newest change: every change of the organization up to it
    has committed (its changes commit in id order)."""
    top = (
        await Change.filter(organization_id=organization_id)
        .order_by("-id")
        .first()
        .values_list("id", flat=True)
    )
    return int(cast(int | None, top) or 0)


async def _pruned_through(organization_id: int) -> int:
    pruned = await PrunedChanges.get_or_none(organization_id=organization_id)
    return 0 if pruned is None else pruned.through_id


async def _snapshot_mark(organization_id: int) -> int:
    """Where the change phase of a snapshot beginning now starts: after the organization's
    newest change (or its newest one forgotten, when the retention took them all)."""
    return max(await _head(organization_id), await _pruned_through(organization_id))


async def _horizon() -> int:
    """The transaction id below which every transaction has ended (PostgreSQL): the legacy
    order's bound, reached as soon as the transactions running at the upgrade have ended."""
    if not _postgres():
        return 2**62
    _, rows = await connections.get("default").execute_query(
        "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon"
    )
    return int(rows[0]["horizon"])


async def _state() -> SyncState:
    state = await SyncState.get_or_none(id=1)
    return state or SyncState(id=1, pruned_txid=0, pruned_through=0, ordered_from=0)


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
class ChangePage(Window[Entry]):
    entries: list[Entry]
    resume: str  # where to resume: after the last entry, or where the feed stands if none
    has_next_page: bool
    has_previous_page: bool = False  # the feed pages forward

    @property
    def items(self) -> list[Entry]:  # type: ignore[override]
        return self.entries

    def cursor(self, entry: Entry) -> str:
        return entry.cursor

    @property
    def end_cursor(self) -> str:
        return self.resume


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
    cursor: list[Any] = (
        _decode(since) if since else ["S", await _snapshot_mark(organization_id), 0, 0]
    )
    retention = ctx.settings.sync_retention_days
    await _check_retention(organization_id, cursor, retention)
    entries: list[Entry] = []
    if cursor[0] in ("S", "SNAP"):
        entries, cursor = await _snapshot(organization_id, wanted, cursor, first + 1)
    if len(entries) <= first and cursor[0] in ("C", "CHG"):
        found, cursor = await _changes(organization_id, wanted, cursor, first + 1 - len(entries))
        entries += found
        await _check_retention(organization_id, cursor, retention)  # a prune may have run meanwhile
    more = len(entries) > first
    entries = entries[:first]
    end = entries[-1].cursor if entries else _encode(cursor)
    return ChangePage(entries, end, more)


async def _check_retention(organization_id: int, cursor: list[Any], retention_days: int) -> None:
    if cursor[0] in ("C", "S"):
        gone = cursor[1] < await _pruned_through(organization_id)
    else:  # the legacy order: the newest (txid, id) pruned of it
        state = await _state()
        gone = (cursor[1], cursor[2]) < (state.pruned_txid, state.pruned_through)
    if gone:
        raise _resync(
            f"Changes older than {retention_days} days are gone: sync again "
            "from the start (since: null)."
        )


async def _snapshot(
    organization_id: int, wanted: list[Synced], cursor: list[Any], size: int
) -> tuple[list[Entry], list[Any]]:
    """Every live record of the wanted types, type after type, by id; then the change phase
    from the mark taken when the snapshot began."""
    *mark, index, after = cursor[1:]
    snapshot = "S" if cursor[0] == "S" else "SNAP"
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
                        _encode([snapshot, *mark, index, row.pk]),
                    )
                )
            if len(entries) < size:  # this type is done
                index, after = index + 1, 0
            else:
                after = rows[-1].pk if rows else after
        else:
            index, after = index + 1, 0
    if index < len(SYNCED):
        return entries, [snapshot, *mark, index, after]
    return entries, ["C" if snapshot == "S" else "CHG", *mark]


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
    organization_id: int, wanted: list[Synced], cursor: list[Any], size: int
) -> tuple[list[Entry], list[Any]]:
    """The changes after the cursor, in the organization's commit order; and the cursor after
    the last of them (the same one when there are none)."""
    names = [synced.name for synced in wanted]
    rows: list[tuple[Change, str]] = []  # each change, with the cursor after it
    if cursor[0] == "CHG":  # the legacy order first: (transaction id, id), up to ordered_from
        txid, last = cursor[1:]
        ordered_from = (await _state()).ordered_from or 0
        legacy = (
            await Change.filter(
                Q(txid__gt=txid) | Q(txid=txid, id__gt=last),
                organization_id=organization_id,
                id__lte=ordered_from,
                txid__lt=await _horizon(),
                record_type__in=names,
            )
            .order_by("txid", "id")
            .limit(size)
        )
        rows = [(row, _encode(["CHG", row.txid, row.id])) for row in legacy]
        if len(rows) < size:  # done with it: carry on in id order
            cursor = ["C", ordered_from]
    if cursor[0] == "C":
        ordered = (
            await Change.filter(
                organization_id=organization_id, id__gt=cursor[1], record_type__in=names
            )
            .order_by("id")
            .limit(size - len(rows))
        )
        rows += [(row, _encode(["C", row.id])) for row in ordered]
    current: dict[tuple[str, int], Model] = {}
    for synced in wanted:
        ids = [r.record_id for r, _ in rows if r.record_type == synced.name and r.op == "UPSERT"]
        if ids:
            for found in await _live(synced, organization_id).filter(id__in=ids):
                current[(synced.name, found.pk)] = found
    entries = [
        Entry(
            row.op,
            row.record_type,
            row.record_id,
            row.changed_at,
            current.get((row.record_type, row.record_id)) if row.op == "UPSERT" else None,
            row.data,
            after,
        )
        for row, after in rows
    ]
    return entries, cursor


async def prune(retention: timedelta) -> int:
    """Forget the changes older than the retention; cursors from before answer RESYNC_REQUIRED.
    Each organization keeps the id of its newest change forgotten. Run it daily
    (`manage.py prune-changes`)."""
    cutoff = datetime.now(UTC) - retention
    async with in_transaction() as connection:
        if _postgres():  # the marks and the deletion must see the same rows
            await connection.execute_script("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        old = Change.filter(changed_at__lt=cutoff)
        marks = (
            await old.annotate(top=Max("id"))
            .group_by("organization_id")
            .values_list("organization_id", "top")
        )
        if not marks:
            return 0
        for organization_id, top in marks:
            mark, created = await PrunedChanges.get_or_create(
                organization_id=organization_id, defaults={"through_id": top}
            )
            if not created and top > mark.through_id:
                mark.through_id = top
                await mark.save(update_fields=["through_id"])
        state = await _state()
        legacy = await old.filter(id__lte=state.ordered_from or 0).order_by("-txid", "-id").first()
        if legacy is not None and (legacy.txid, legacy.id) > (
            state.pruned_txid,
            state.pruned_through,
        ):
            state.pruned_txid, state.pruned_through = legacy.txid, legacy.id
            await state.save()
        return await old.delete()


# Positions in the feed, for the webhooks' delivery (resolvers/webhook.py, webhooks/).


async def head_cursor(organization_id: int) -> tuple[str, int]:
    """The cursor after the organization's newest change, and that change's id."""
    mark = await _snapshot_mark(organization_id)
    return _encode(["C", mark]), mark


async def checked_cursor(
    organization_id: int, cursor: str, field: str, retention_days: int
) -> tuple[str, int]:
    """A `changes` cursor a reader may resume from (BAD_USER_INPUT or RESYNC_REQUIRED on
    `field` otherwise), and the id of its change (0 in the snapshot phase)."""
    try:
        values = _decode(cursor)
        await _check_retention(organization_id, values, retention_days)
    except ApiError as error:
        raise ApiError(error.code, error.message, field=field) from None
    return cursor, position_of(values)


def position_of(values: list[Any]) -> int:
    return int(values[1]) if values[0] == "C" else 0


def cursor_position(cursor: str) -> int:
    """The change id of a cursor written by the feed (0 in the snapshot phase)."""
    return position_of(_decode(cursor))


async def newest_changes(organization_ids: list[int]) -> dict[int, int]:
    """Each organization's newest change id (one indexed lookup each)."""
    return {org: await _head(org) for org in organization_ids}
