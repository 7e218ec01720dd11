"""Writing the event log: one event per change, in the transaction of the change.

Appends are serialized per organization: on PostgreSQL each writer takes its organization's
transaction-level advisory lock (`lock_organization_log`) just before inserting its event and
keeps it until commit, so an organization's event ids become visible in id order and a reader
asking for "every event of this organization after id N" can never miss one that committed late.
Organizations never wait for each other: ids come from one sequence, but no reader compares
them across organizations. (SQLite runs one write transaction at a time anyway.) The lock is held
only for the last statements of a mutation: the event, its notifications, then commit; the
change log's deferred triggers take the same lock at commit (resolvers/sync.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from strawberry import relay
from tortoise import connections

from models import Event, EventKind, Notification
from models.base import from_cents
from resolvers.context import RequestContext
from resolvers.deal_kinds import FollowedKind
from resolvers.pagination import BY_ID, Page, PageRequest, decode_cursor, id_cursor, paginate

# pg_advisory_xact_lock(ORGANIZATION_LOG_LOCK, organization id): an organization's logs (events,
# changes) are appended by one transaction at a time. resolvers/sync_triggers.sql takes it too.
ORGANIZATION_LOG_LOCK = 4_711
_MAX_EVENT_ID = 2**63 - 1

# Model field -> (API field, how its values are shown in `changes`).
_ID_FIELDS = {
    "owner_id": ("ownerId", "User"),
    "user_id": ("userId", "User"),
    "account_id": ("accountId", "Account"),
    "contact_id": ("contactId", "Contact"),
    "comment_id": ("commentId", "Comment"),
    "stage_id": ("stageId", "PipelineStage"),
    "lead_id": ("leadId", "Lead"),
    "activity_id": ("activityId", "Activity"),
    "message_id": ("messageId", "Message"),
    "line_item_id": ("lineItemId", "LineItem"),
    "product_id": ("productId", "Product"),
    "campaign_id": ("campaignId", "Campaign"),
    "opportunity_id": ("opportunityId", "Opportunity"),
    "converted_opportunity_id": ("convertedOpportunityId", "Opportunity"),
}
_UNSHOWN = {
    "updated_at",
    "version",
    "probability_overridden",
    "forecast_category_overridden",
    "scheduled_at",
}
_MONEY_FIELDS = {"amount_cents": "amount", "estimated_amount_cents": "estimatedAmount"}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def global_id(type_name: str, pk: int | None) -> str | None:
    return None if pk is None else relay.to_base64(type_name, pk)


def ref(name: str, pk: int) -> dict[str, str | None]:
    """A record named in an event's details, as the API names it: ref("contact_id", 7) is
    {"contactId": <global id of Contact 7>}."""
    field, type_name = _ID_FIELDS[name]
    return {field: global_id(type_name, pk)}


def describe(diff: dict[str, tuple[Any, Any]]) -> dict[str, dict[str, Any]]:
    """Field-level changes as the API names them: {"amount": {"old": "10.00", "new": ...}}."""
    described: dict[str, dict[str, Any]] = {}
    for name, (old, new) in diff.items():
        if name in _UNSHOWN:
            continue
        if name in _ID_FIELDS:
            field, type_name = _ID_FIELDS[name]
            old, new = global_id(type_name, old), global_id(type_name, new)
        elif name in _MONEY_FIELDS:
            field = _MONEY_FIELDS[name]
            old, new = (
                str(from_cents(value)) if value is not None else None for value in (old, new)
            )
        else:
            field = camel(name)
        described[field] = {"old": _plain(old), "new": _plain(new)}
    return described


async def record_event(
    ctx: RequestContext,
    kind: FollowedKind[Any],
    record_id: int,
    event_kind: EventKind,
    changes: dict[str, Any] | None = None,
    *,
    notify: bool = True,
    mentioned: Iterable[int] = (),
) -> Event:
    """Append an event and (unless `notify` is off, where another event of the same change
    tells the same people) its followers' notifications, and those of the users `mentioned`
    (who the caller checked may read the record). Call it last in the transaction."""
    viewer = ctx.require_viewer()
    await lock_organization_log(viewer.organization_id)
    event = await Event.create(
        organization_id=viewer.organization_id,
        record_type=kind.name,
        record_id=record_id,
        kind=event_kind,
        actor_id=viewer.id,
        changes=changes or {},
    )
    if notify:
        followers = await kind.follower.filter(record_id=record_id).values_list(
            "user_id", flat=True
        )
        told = {*followers, *mentioned} - {viewer.id}  # type: ignore[misc]
        await Notification.bulk_create(
            [Notification(user_id=user_id, event_id=event.id) for user_id in sorted(told)]
        )
    ctx.writes.events.append(event)
    return event


async def lock_organization_log(organization_id: int) -> None:
    """Wait for the organization's other writers of the log, and hold them off until this
    transaction ends (PostgreSQL; SQLite writes one transaction at a time)."""
    connection = connections.get("default")
    if connection.capabilities.dialect == "postgres":
        await connection.execute_query(
            "SELECT pg_advisory_xact_lock($1, $2)", [ORGANIZATION_LOG_LOCK, organization_id]
        )


async def list_history(
    ctx: RequestContext, record_type: str, record_id: int, page: PageRequest
) -> Page[Event]:
    """The events of a record the caller already read, newest first."""
    query = Event.filter(
        organization_id=ctx.require_viewer().organization_id,
        record_type=record_type,
        record_id=record_id,
    )
    return await paginate(query, page, BY_ID, descending=True)


async def event_record(ctx: RequestContext, event: Event) -> Any | None:
    """The live record of an event, when the viewer may read it."""
    from resolvers.access import followed_rule  # it reads the deals' followers: import late

    return await followed_rule(event.record_type).get(ctx, event.record_id)


def event_cursor(event_id: int) -> str:
    """Where a reader of the log stands: after the event with this id. The same cursors as the
    `history` connection's, so an edge cursor of `history` is a valid `after` too."""
    return id_cursor(event_id)


def parse_event_cursor(cursor: str, field: str) -> int:
    return decode_cursor(BY_ID, cursor, field, min_id=0, max_id=_MAX_EVENT_ID)[1]
