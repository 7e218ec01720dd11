"""Writing the event log: one event per change, in the transaction of the change.

Appends are serialized per organization: on PostgreSQL each writer takes its organization's
transaction-level advisory lock (`lock_organization_log`) just before inserting its event and
keeps it until commit, so an organization's event ids become visible in id order and a reader
asking for "every event of this organization after id N" can never miss one that committed late.
Organizations never wait for each other: ids come from one sequence, but no reader compares
them across organizations. (SQLite runs one write transaction at a time anyway.) The lock is held
only for the last statements of a mutation: the event, its notifications, then commit; the
change log's deferred triggers take the same lock at commit (resolvers/sync.py).

Events store facts in the models' terms (field names, integer ids, cents) with the names the
records they refer to had at the time; `render` and `field_changes` show them in the API's terms
(camelCase names, global ids, decimal strings) when they are read, and nowhere else.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from strawberry import relay
from tortoise import connections
from tortoise.models import Model

from models import (
    Account,
    Campaign,
    Contact,
    Event,
    EventKind,
    Lead,
    Notification,
    Opportunity,
    PipelineStage,
    Product,
    User,
)
from models.base import from_cents
from resolvers.context import RequestContext
from resolvers.deal_kinds import FollowedKind
from resolvers.pagination import BY_ID, Page, PageRequest, decode_cursor, id_cursor, paginate

# pg_advisory_xact_lock(ORGANIZATION_LOG_LOCK, organization id): an organization's logs (events,
# changes) are appended by one transaction at a time. resolvers/sync_triggers.sql takes it too.
ORGANIZATION_LOG_LOCK = 4_711
_MAX_EVENT_ID = 2**63 - 1

# A stored key naming a record -> (its API name, the type of the record named). A list of them
# (`participant_ids`) names a record each.
REFERENCES = {
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
    "participant_ids": ("participants", "Contact"),
    "follower_ids": ("followers", "User"),
}
# Amounts are stored in cents and shown as decimal strings; a discount in basis points, shown in
# percent.
MONEY = {
    "amount_cents": "amount",
    "estimated_amount_cents": "estimatedAmount",
    "unit_price_cents": "unitPrice",
    "total_cents": "total",
}
PERCENT = {"discount_basis_points": "discount"}
# Keys that name another lead or opportunity: who may see their id depends on the reader.
DEAL_REFERENCES = {
    "lead_id": "Lead",
    "opportunity_id": "Opportunity",
    "converted_opportunity_id": "Opportunity",
}
# Bookkeeping, not news: left out of events.
_UNSHOWN = {
    "updated_at",
    "version",
    "probability_overridden",
    "forecast_category_overridden",
    "scheduled_at",
}
# What a referenced record is called, read when the event is written (so that renaming a stage
# later leaves the history as it was): the model and how its name is made from its row.
_LABELS: dict[str, tuple[type[Model], Callable[[Any], str]]] = {
    "User": (User, lambda row: row.full_name),
    "Contact": (Contact, lambda row: f"{row.first_name} {row.last_name}".strip()),
    "Account": (Account, lambda row: row.name),
    "PipelineStage": (PipelineStage, lambda row: row.name),
    "Product": (Product, lambda row: row.name),
    "Campaign": (Campaign, lambda row: row.name),
    "Lead": (Lead, lambda row: row.title),
    "Opportunity": (Opportunity, lambda row: row.name),
}

FIELDS = "fields"  # the stored facts' field changes: {"stage_id": {"from": 3, "to": 5, ...}}
LABELS = "labels"  # the names of the records a detail refers to: {"contact_id": "Ada Byron"}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _plain(value: Any) -> Any:
    """A value as the event log stores it (JSON)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {name: _plain(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def global_id(type_name: str, pk: int | None) -> str | None:
    return None if pk is None else relay.to_base64(type_name, pk)


# Writing: events store facts in the models' terms (field names, integer ids, cents), with the
# names of the records they refer to at the time.


async def facts(
    organization_id: int,
    diff: dict[str, tuple[Any, Any]] | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What an event stores: the fields that changed (`diff`: model field -> (old, new); fields
    whose value did not change are left out) and the event's `details` (model terms too), each
    reference with the label of what it named."""
    changed: dict[str, dict[str, Any]] = {}
    for name, (old, new) in (diff or {}).items():
        old, new = _plain(old), _plain(new)
        if name not in _UNSHOWN and old != new:
            changed[name] = {"from": old, "to": new}
    stored: dict[str, Any] = {FIELDS: changed} if changed else {}
    stored.update({name: _plain(value) for name, value in (details or {}).items()})
    wanted = [(name, value) for name, change in changed.items() for value in change.values()]
    wanted += [(name, value) for name, value in (details or {}).items()]
    labels = await _labels(organization_id, wanted)
    for name, change in changed.items():
        if name in REFERENCES and REFERENCES[name][1] in _LABELS:
            change["from_label"] = labels.get((REFERENCES[name][1], change["from"]))
            change["to_label"] = labels.get((REFERENCES[name][1], change["to"]))
    named = {
        name: labels.get((REFERENCES[name][1], value))
        for name, value in (details or {}).items()
        if name in REFERENCES and isinstance(value, int)
    }
    if any(label is not None for label in named.values()):
        stored[LABELS] = named
    return stored


def changed_fields(row: Model, values: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The fields these values would change on the row: name -> (old, new)."""
    return {
        name: (getattr(row, name), value)
        for name, value in values.items()
        if getattr(row, name) != value
    }


async def _labels(
    organization_id: int, references: list[tuple[str, Any]]
) -> dict[tuple[str, int], str]:
    """(type, id) -> the record's label now, for the references that name a record."""
    wanted: dict[str, set[int]] = defaultdict(set)
    for name, value in references:
        if name in REFERENCES and isinstance(value, int) and REFERENCES[name][1] in _LABELS:
            wanted[REFERENCES[name][1]].add(value)
    labels: dict[tuple[str, int], str] = {}
    for type_name, pks in wanted.items():
        model, label = _LABELS[type_name]
        for row in await model.filter(id__in=sorted(pks), organization_id=organization_id):
            labels[type_name, row.pk] = label(row)
    return labels


# Reading: the stored facts as the API shows them, rendered here only.


@dataclass(frozen=True)
class FieldChange:
    """One field's change, as the API names it (`field`, values), with the labels of the
    records an id-valued field named before and after, as they were called at the time."""

    field: str
    old: Any
    new: Any
    old_label: str | None
    new_label: str | None


def _render_value(name: str, value: Any) -> Any:
    if name in REFERENCES:
        type_name = REFERENCES[name][1]
        if isinstance(value, list):
            return [global_id(type_name, pk) for pk in value]
        return global_id(type_name, value)
    if name in MONEY:
        return None if value is None else str(from_cents(value))
    if name in PERCENT:
        return None if value is None else str(Decimal(value) / 100)
    if isinstance(value, dict):
        return render(value)
    return value


def api_name(name: str) -> str:
    """The API's name of a stored key."""
    if name in REFERENCES:
        return REFERENCES[name][0]
    return MONEY.get(name) or PERCENT.get(name) or camel(name)


def render(stored: dict[str, Any]) -> dict[str, Any]:
    """An event's `changes` as the API shows them: {"amount": {"old": "10.00", "new": ...}}
    for fields (global ids, decimal strings), then the details under their API names."""
    shown: dict[str, Any] = {}
    for name, change in stored.get(FIELDS, {}).items():
        shown[api_name(name)] = {
            "old": _render_value(name, change["from"]),
            "new": _render_value(name, change["to"]),
        }
    for name, value in stored.items():
        if name not in (FIELDS, LABELS):
            shown[api_name(name)] = _render_value(name, value)
    return shown


def field_changes(stored: dict[str, Any]) -> list[FieldChange]:
    return [
        FieldChange(
            field=api_name(name),
            old=_render_value(name, change["from"]),
            new=_render_value(name, change["to"]),
            old_label=change.get("from_label"),
            new_label=change.get("to_label"),
        )
        for name, change in stored.get(FIELDS, {}).items()
    ]


@dataclass(frozen=True)
class Reference:
    """A record an event's details name (the contact added as a participant, the user made a
    follower...), as the API names the detail, with the record's name at the time."""

    field: str
    id: str | None
    label: str | None


def references(stored: dict[str, Any]) -> list[Reference]:
    labels = stored.get(LABELS, {})
    return [
        Reference(api_name(name), _render_value(name, value), labels.get(name))
        for name, value in stored.items()
        if name in REFERENCES and not isinstance(value, list)
    ]


def names_other_deals(stored: dict[str, Any]) -> bool:
    """Whether an event names another lead or opportunity (whose id then depends on who reads
    it: `readable`)."""
    return any(pk is not None for _, pk in _deal_references(stored))


def _deal_references(stored: dict[str, Any]) -> list[tuple[str, Any]]:
    found = [
        (DEAL_REFERENCES[name], value) for name, value in stored.items() if name in DEAL_REFERENCES
    ]
    for name, change in stored.get(FIELDS, {}).items():
        if name in DEAL_REFERENCES:
            found += [
                (DEAL_REFERENCES[name], change["from"]),
                (DEAL_REFERENCES[name], change["to"]),
            ]
    return found


async def readable(ctx: RequestContext, stored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events' facts as the viewer may see them: another lead or opportunity the viewer may not
    read (the private opportunity a lead was converted into, say) is named by null, with no
    label, as the record itself would answer NOT_FOUND. The stored events keep it."""
    from resolvers.access import DEALS  # resolvers.access reads the deals' followers: import late

    named: dict[str, set[int]] = defaultdict(set)
    for facts_ in stored:
        for type_name, pk in _deal_references(facts_):
            if isinstance(pk, int):
                named[type_name].add(pk)
    if not named:
        return stored
    seen = {
        (type_name, pk)
        for type_name, pks in named.items()
        for pk in await DEALS[type_name].readable_ids(ctx, pks)
    }
    return [_without_unreadable(facts_, seen) for facts_ in stored]


def _without_unreadable(stored: dict[str, Any], seen: set[tuple[str, int]]) -> dict[str, Any]:
    def hidden(name: str, pk: Any) -> bool:
        return pk is not None and (DEAL_REFERENCES[name], pk) not in seen

    shown = dict(stored)
    for name in DEAL_REFERENCES:
        if hidden(name, shown.get(name)):
            shown[name] = None
            shown[LABELS] = {**shown.get(LABELS, {}), name: None}
    fields_ = dict(shown.get(FIELDS, {}))
    for name, change in fields_.items():
        if name in DEAL_REFERENCES:
            change = dict(change)
            for side in ("from", "to"):
                if hidden(name, change[side]):
                    change[side] = None
                    change[f"{side}_label"] = None
            fields_[name] = change
    if fields_:
        shown[FIELDS] = fields_
    return shown


def redacted(stored: dict[str, Any]) -> dict[str, Any]:
    """An event's facts without their values (comment bodies, fields' values before and after,
    labels): what a viewer who may no longer read the record still sees of it."""
    shown: dict[str, Any] = {name: None for name in stored if name not in (FIELDS, LABELS)}
    fields_ = {
        name: {"from": None, "to": None, "from_label": None, "to_label": None}
        for name in stored.get(FIELDS, {})
    }
    if fields_:
        shown[FIELDS] = fields_
    return shown


async def unreadable_records(ctx: RequestContext, events: list[Event]) -> list[bool]:
    """Whether the viewer may not read each event's record now (under its current read rule:
    one reached through an old notification, say), through the request's loaders."""
    from resolvers.access import EVENTS  # resolvers.access reads the deals' followers: import late

    records = sorted({(event.record_type, event.record_id) for event in events})
    found = await asyncio.gather(*(EVENTS.records[name].get(ctx, pk) for name, pk in records))
    readable = {record for record, row in zip(records, found, strict=True) if row is not None}
    return [(event.record_type, event.record_id) not in readable for event in events]


async def record_event(
    ctx: RequestContext,
    kind: FollowedKind[Any],
    record_id: int,
    event_kind: EventKind,
    *,
    diff: dict[str, tuple[Any, Any]] | None = None,
    details: dict[str, Any] | None = None,
    notify: bool = True,
    mentioned: Iterable[int] = (),
) -> Event:
    """Append an event on a followed record (`kind`: a lead, an opportunity, an account or a
    contact), with the fields that changed (`diff`: model field -> (old, new)) and its
    `details`, in the models' terms; and (unless `notify` is off, where another event of the
    same change tells the same people) its followers' notifications, and those of the users
    `mentioned` (who the caller checked may read the record). Call it last in the
    transaction."""
    viewer = ctx.require_viewer()
    stored = await facts(viewer.organization_id, diff, details)
    await lock_organization_log(viewer.organization_id)
    event = await Event.create(
        organization_id=viewer.organization_id,
        record_type=kind.name,
        record_id=record_id,
        kind=event_kind,
        actor_id=viewer.id,
        changes=stored,
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
    await lock_organization(ORGANIZATION_LOG_LOCK, organization_id)


async def lock_organization(namespace: int, organization_id: int) -> None:
    """`pg_advisory_xact_lock(namespace, organization)`: this organization's holders of the
    namespace, one at a time until this transaction ends; other organizations go on
    (PostgreSQL; SQLite writes one transaction at a time)."""
    connection = connections.get("default")
    if connection.capabilities.dialect == "postgres":
        await connection.execute_query(
            "SELECT pg_advisory_xact_lock($1, $2)", [namespace, organization_id]
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
    from resolvers.access import EVENTS  # resolvers.access reads the deals' followers: import late

    return await EVENTS.record(ctx, event)


def event_cursor(event_id: int) -> str:
    """Where a reader of the log stands: after the event with this id. The same cursors as the
    `history` connection's, so an edge cursor of `history` is a valid `after` too."""
    return id_cursor(event_id)


def parse_event_cursor(cursor: str, field: str) -> int:
    return decode_cursor(BY_ID, cursor, field, min_id=0, max_id=_MAX_EVENT_ID)[1]
