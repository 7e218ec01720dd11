"""What leads and opportunities share: reading, deleting, and their three roles and comments;
following, which accounts and contacts have too."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import partial
from typing import Any

from strawberry import relay
from tortoise.expressions import F, Q, Subquery
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from models import Account, Campaign, Comment, Contact, EventKind, OpportunityStatus, User
from resolvers import lifecycle, validation
from resolvers.access import deals_of, followed_rule, user_reads
from resolvers.context import RequestContext
from resolvers.deal_kinds import D, DealKind, FollowedKind
from resolvers.errors import bad_input, conflict, not_found
from resolvers.events import record_event
from resolvers.pagination import BY_ID, Page, PageRequest, paginate, search_condition
from resolvers.permissions import check_assignable, require_edit
from resolvers.records import (
    get_or_not_found,
    referenced,
    referenced_account,
    referenced_contact,
    referenced_user,
    scoped,
)


def _in_related_names(ctx: RequestContext, word: str) -> list[Q]:
    """A search word in the name of the record's account or of its primary contact."""
    accounts = scoped(ctx, Account).filter(name__icontains=word)
    contacts = scoped(ctx, Contact).filter(
        Q(first_name__icontains=word) | Q(last_name__icontains=word)
    )
    return [
        Q(account_id__in=Subquery(accounts.values("id"))),
        Q(contact_id__in=Subquery(contacts.values("id"))),
    ]


def filter_deals(
    ctx: RequestContext, kind: DealKind[D], query: QuerySet[Any], filters: dict[str, Any]
) -> QuerySet[Any]:
    """The filters leads and opportunities have in common."""
    if filters.get("search"):
        names = partial(_in_related_names, ctx)
        query = query.filter(search_condition(filters["search"], [kind.title_field], names))
    if filters.get("owner_ids"):
        query = query.filter(owner_id__in=filters["owner_ids"])
    if filters.get("account_id") is not None:
        query = query.filter(account_id=filters["account_id"])
    if filters.get("campaign_id") is not None:
        query = query.filter(campaign_id=filters["campaign_id"])
    if filters.get("contact_id") is not None:
        query = query.filter(contact_id=filters["contact_id"])
    if filters.get("statuses"):
        query = query.filter(status__in=filters["statuses"])
    if filters.get("followed_by_viewer") is not None:
        followed = Subquery(
            kind.follower.filter(user_id=ctx.require_viewer().id).values("record_id")
        )
        if filters["followed_by_viewer"]:
            query = query.filter(id__in=followed)
        else:
            query = query.exclude(id__in=followed)
    if filters.get("visibility") is not None:
        query = query.filter(visibility=filters["visibility"])
    if filters.get("updated_since") is not None:
        query = query.filter(updated_at__gte=filters["updated_since"])
    return query


async def get_readable(
    ctx: RequestContext, kind: DealKind[D], record_id: int, field: str | None = "recordId"
) -> D:
    """A lead or opportunity the viewer may read, or NOT_FOUND (never a hint that it exists);
    `field`: the argument that named it."""
    row = await deals_of(kind).get(ctx, record_id)
    if row is None:
        raise not_found(kind.label, field)
    return row  # type: ignore[no-any-return]


async def get_editable(
    ctx: RequestContext,
    kind: DealKind[D],
    record_id: int,
    *,
    lock: bool = False,
    field: str = "recordId",
) -> D:
    query = scoped(ctx, kind.model).filter(id=record_id)
    if lock:
        query = query.select_for_update()
    row = await query.first()
    if row is None or not await deals_of(kind).reads(ctx, row):
        raise not_found(kind.label, field)
    await require_edit(ctx, row.owner_id, kind.label)
    return row


async def lock(kind: FollowedKind[Any], row: Any) -> None:
    """Take the record's row lock until the transaction ends (PostgreSQL; SQLite serializes
    transactions anyway), so that role changes to one record happen one after the other."""
    # (values_list would drop the FOR UPDATE: Tortoise adds it to model queries only.)
    await kind.model.filter(id=row.id).select_for_update().first()


async def touch(ctx: RequestContext, kind: DealKind[D], row: D, *, version: bool = True) -> None:
    """Record that a role changed: a new updated time and version, for syncs and for CONFLICT,
    and forget what this request's loaders know of the record's roles. `version` off: a change
    beside the record (a follower, a comment), which must not make its editors' saves fail."""
    now = datetime.now(UTC)
    if version:
        await kind.model.filter(id=row.id).update(updated_at=now, version=F("version") + 1)
        row.version += 1
    else:
        await kind.model.filter(id=row.id).update(updated_at=now)
    row.updated_at = now
    ctx.loaders.forget_roles(kind, row.id)


async def delete_deal(ctx: RequestContext, kind: DealKind[D], record_id: int) -> D:
    async with in_transaction():
        row = await get_editable(ctx, kind, record_id, lock=True, field="id")
        row.deleted_at = datetime.now(UTC)
        await row.save(update_fields=["deleted_at", "updated_at"])
        await record_event(ctx, kind, row.id, EventKind.DELETED)
        return row


async def set_primary_contact(
    ctx: RequestContext,
    kind: DealKind[D],
    record_id: int,
    contact_id: int | None,
    *,
    keep_previous: bool = True,
) -> D:
    """Make a contact the primary one. A participant promoted keeps its role (as the primary
    contact's role); the previous primary contact stays a participant, with its role, unless
    `keep_previous` is off. One event."""
    async with in_transaction():
        row = await get_editable(ctx, kind, record_id, lock=True)
        if row.contact_id == contact_id:
            return row
        role = None
        if contact_id is not None:
            await referenced_contact(ctx, contact_id, "contactId")
            # The primary contact is never also a participant: promoting one moves them.
            link = await kind.participant.filter(record_id=row.id, contact_id=contact_id).first()
            if link is not None:
                role = link.role
                await link.delete()
        details: dict[str, Any] = {}
        previous = row.contact_id
        if keep_previous and previous is not None and await _live_contact(ctx, previous):
            await kind.participant.create(
                record_id=row.id, contact_id=previous, role=row.contact_role
            )
            details = {"previous_kept_as_participant": True}
        diff: dict[str, tuple[Any, Any]] = {"contact_id": (previous, contact_id)}
        if row.contact_role != role:
            diff["contact_role"] = (row.contact_role, role)
        row.contact_id, row.contact_role = contact_id, role
        await row.save(update_fields=["contact_id", "contact_role", "updated_at"])
        await touch(ctx, kind, row)
        await record_event(
            ctx, kind, row.id, EventKind.PRIMARY_CONTACT_SET, diff=diff, details=details
        )
        await lifecycle.refresh_deal(ctx, kind, row)
        return row


async def _live_contact(ctx: RequestContext, contact_id: int) -> bool:
    return await scoped(ctx, Contact).filter(id=contact_id).exists()


async def add_participant(
    ctx: RequestContext, kind: DealKind[D], record_id: int, contact_id: int, role: str | None
) -> D:
    label = validation.optional_text(role, "role", max_length=100)
    async with in_transaction():
        row = await get_editable(ctx, kind, record_id, lock=True)
        contact: Contact = await referenced_contact(ctx, contact_id, "contactId")
        if row.contact_id == contact.id:
            raise bad_input("contactId", "This contact is the primary contact already.")
        if await kind.participant.filter(record_id=row.id, contact_id=contact.id).exists():
            raise bad_input("contactId", "This contact is a participant already.")
        await kind.participant.create(record_id=row.id, contact_id=contact.id, role=label)
        await touch(ctx, kind, row)
        details = {"contact_id": contact.id, "role": label}
        await record_event(ctx, kind, row.id, EventKind.PARTICIPANT_ADDED, details=details)
        await lifecycle.refresh_deal(ctx, kind, row)
        return row


async def remove_participant(
    ctx: RequestContext, kind: DealKind[D], record_id: int, contact_id: int
) -> D:
    async with in_transaction():
        row = await get_editable(ctx, kind, record_id, lock=True)
        removed = await kind.participant.filter(record_id=row.id, contact_id=contact_id).delete()
        if not removed:
            raise bad_input("contactId", "This contact is not a participant.")
        await touch(ctx, kind, row)
        details = {"contact_id": contact_id}
        await record_event(ctx, kind, row.id, EventKind.PARTICIPANT_REMOVED, details=details)
        return row


async def update_participant(
    ctx: RequestContext, kind: DealKind[D], record_id: int, contact_id: int, role: str | None
) -> D:
    """Change the role of a participant (or of the primary contact): one event."""
    label = validation.optional_text(role, "role", max_length=100)
    async with in_transaction():
        row = await get_editable(ctx, kind, record_id, lock=True)
        if row.contact_id == contact_id:
            previous = row.contact_role
            if previous != label:
                row.contact_role = label
                await row.save(update_fields=["contact_role", "updated_at"])
        else:
            link = await kind.participant.filter(record_id=row.id, contact_id=contact_id).first()
            if link is None:
                raise bad_input("contactId", "This contact is not a participant.")
            previous = link.role
            if previous != label:
                link.role = label
                await link.save(update_fields=["role", "updated_at"])
        if previous != label:
            await touch(ctx, kind, row)
            await record_event(
                ctx,
                kind,
                row.id,
                EventKind.PARTICIPANT_UPDATED,
                diff={"role": (previous, label)},
                details={"contact_id": contact_id},
            )
        return row


async def follow(
    ctx: RequestContext, kind: FollowedKind[Any], row: Any, user_ids: set[int]
) -> None:
    """Make users follow a record without an event of its own (its owner and creator, at its
    creation; a new owner, whose assignment is the event). The caller holds the row's lock."""
    following = await kind.follower.filter(record_id=row.id, user_id__in=sorted(user_ids))
    new = user_ids - {link.user_id for link in following}
    extra = {} if kind.is_deal else {"organization_id": row.organization_id}
    await kind.follower.bulk_create(
        [kind.follower(record_id=row.id, user_id=user_id, **extra) for user_id in sorted(new)]
    )
    if kind.is_deal:
        ctx.loaders.forget_roles(kind, row.id)  # type: ignore[arg-type]


async def _follow(ctx: RequestContext, kind: FollowedKind[Any], row: Any, user: User) -> None:
    # Callers hold the record's row lock, so the check and the insert cannot interleave.
    if not await kind.follower.filter(record_id=row.id, user_id=user.id).exists():
        await follow(ctx, kind, row, {user.id})
        await _touched_beside(ctx, kind, row)
        await record_event(
            ctx, kind, row.id, EventKind.FOLLOWER_ADDED, details={"user_id": user.id}
        )


async def _unfollow(ctx: RequestContext, kind: FollowedKind[Any], row: Any, user_id: int) -> None:
    if await kind.follower.filter(record_id=row.id, user_id=user_id).delete():
        await _touched_beside(ctx, kind, row)
        await record_event(
            ctx, kind, row.id, EventKind.FOLLOWER_REMOVED, details={"user_id": user_id}
        )


async def _touched_beside(ctx: RequestContext, kind: FollowedKind[Any], row: Any) -> None:
    """A follower came or went: a deal's update time moves (syncs), its version does not."""
    if isinstance(kind, DealKind):
        await touch(ctx, kind, row, version=False)


async def _followed_editable(ctx: RequestContext, kind: FollowedKind[Any], record_id: int) -> Any:
    """A record whose followers the viewer may change: one the viewer may edit."""
    if isinstance(kind, DealKind):
        return await get_editable(ctx, kind, record_id, lock=True)
    row = await get_or_not_found(ctx, kind.model, record_id, kind.label, "recordId")
    await require_edit(ctx, row.owner_id, kind.label)
    await lock(kind, row)
    return row


async def _followed_readable(ctx: RequestContext, kind: FollowedKind[Any], record_id: int) -> Any:
    row = await followed_rule(kind).get(ctx, record_id)
    if row is None:
        raise not_found(kind.label, "recordId")
    await lock(kind, row)
    return row


async def add_follower(
    ctx: RequestContext, kind: FollowedKind[Any], record_id: int, user_id: int
) -> Any:
    async with in_transaction():
        row = await _followed_editable(ctx, kind, record_id)
        user = await referenced_user(ctx, user_id, "userId")
        if not user.is_active:
            raise bad_input("userId", "A deactivated user cannot follow records.")
        await _follow(ctx, kind, row, user)
        return row


async def remove_follower(
    ctx: RequestContext, kind: FollowedKind[Any], record_id: int, user_id: int
) -> Any:
    async with in_transaction():
        row = await _followed_editable(ctx, kind, record_id)
        await referenced_user(ctx, user_id, "userId")
        await _unfollow(ctx, kind, row, user_id)
        return row


async def follow_record(ctx: RequestContext, kind: FollowedKind[Any], record_id: int) -> Any:
    """Follow a record the viewer may read (following a deal lets one read it from then on;
    following an account or a contact grants nothing)."""
    viewer = ctx.require_viewer()
    async with in_transaction():
        row = await _followed_readable(ctx, kind, record_id)
        await _follow(ctx, kind, row, viewer)
        return row


async def unfollow_record(ctx: RequestContext, kind: FollowedKind[Any], record_id: int) -> Any:
    viewer = ctx.require_viewer()
    async with in_transaction():
        row = await _followed_readable(ctx, kind, record_id)
        await _unfollow(ctx, kind, row, viewer.id)
        return row


# A mention in a comment: `@[display name](user global id)`, as a frontend's picker writes it.
MENTION = re.compile(r"@\[([^\]\n]{1,200})\]\(([A-Za-z0-9+/=]{4,200})\)")


async def mentioned_readers(
    ctx: RequestContext, kind: FollowedKind[Any], row: Any, text: str
) -> set[int]:
    """The active users of the viewer's organization a comment mentions who may read the
    record; the others (unknown ids, other organizations, users who may not read it) are
    ignored, telling no one anything."""
    pks: set[int] = set()
    for _, value in MENTION.findall(text):
        pk = _user_pk(value)
        if pk is not None:
            pks.add(pk)
    if not pks:
        return set()
    users = await scoped(ctx, User).filter(id__in=sorted(pks), is_active=True)
    return {user.id for user in users if await user_reads(user, kind, row)}


def _user_pk(value: str) -> int | None:
    """The id of a user's global id (None for anything else)."""
    try:
        found, pk = relay.from_base64(value)
        return int(pk) if found == "User" else None
    except (ValueError, TypeError):
        return None


async def add_comment(ctx: RequestContext, kind: DealKind[D], record_id: int, body: str) -> Comment:
    viewer = ctx.require_viewer()
    text = validation.text(body, "body", max_length=10_000)
    async with in_transaction():
        row = await get_readable(ctx, kind, record_id)
        target: dict[str, Any] = {kind.comment_field: row.id}
        comment = await Comment.create(
            organization_id=viewer.organization_id, author_id=viewer.id, body=text, **target
        )
        await touch(ctx, kind, row, version=False)
        mentioned = await mentioned_readers(ctx, kind, row, text)
        details = {"comment_id": comment.id, "body": text}
        await record_event(
            ctx, kind, row.id, EventKind.COMMENT_ADDED, details=details, mentioned=mentioned
        )
        return comment


async def list_comments(
    ctx: RequestContext, kind: DealKind[D], record_id: int, page: PageRequest
) -> Page[Comment]:
    """Comments of a record the caller already read, newest first."""
    query = Comment.filter(**{kind.comment_field: record_id})
    return await paginate(query, page, BY_ID, descending=True)


async def clean_common(
    ctx: RequestContext, values: dict[str, Any], row: D | None
) -> dict[str, Any]:
    """Owner, account, primary contact and visibility, as leads and opportunities take them."""
    cleaned: dict[str, Any] = {}
    owner_id = values.get("owner_id")
    if owner_id is not None and (row is None or owner_id != row.owner_id):
        owner = await referenced_user(ctx, owner_id, "ownerId")
        await check_assignable(ctx, owner)
        cleaned["owner_id"] = owner.id
    if "account_id" in values:
        if values["account_id"] is not None:
            await referenced_account(ctx, values["account_id"], "accountId")
        cleaned["account_id"] = values["account_id"]
    if "contact_id" in values:
        if values["contact_id"] is not None:
            await referenced_contact(ctx, values["contact_id"], "contactId")
        cleaned["contact_id"] = values["contact_id"]
        if row is not None and row.contact_id != values["contact_id"]:
            cleaned["contact_role"] = None  # the role was the previous contact's
    if values.get("visibility") is not None:
        cleaned["visibility"] = values["visibility"]
    if "currency" in values:
        cleaned["currency"] = validation.currency(values["currency"] or "")
    if "campaign_id" in values:
        if values["campaign_id"] is not None:
            await referenced(ctx, Campaign, values["campaign_id"], "campaignId", "campaign")
        cleaned["campaign_id"] = values["campaign_id"]
    return cleaned


async def create_deal(ctx: RequestContext, kind: DealKind[D], cleaned: dict[str, Any]) -> D:
    """Create a lead or opportunity and log it, with its initial values, in one transaction."""
    viewer = ctx.require_viewer()
    async with in_transaction():
        row = await kind.model.create(organization_id=viewer.organization_id, **cleaned)
        # Its owner and its creator follow it, as in the CRMs sales teams know.
        await follow(ctx, kind, row, {row.owner_id, viewer.id})
        initial = {name: (None, value) for name, value in cleaned.items()}
        await record_event(ctx, kind, row.id, EventKind.CREATED, diff=initial)
        await lifecycle.refresh_deal(ctx, kind, row)
        return row


# The fields of a lead or opportunity its contacts' lifecycle stage depends on.
LIFECYCLE_FACTS = {"status", "contact_id", "account_id"}


def _update_kind(diff: dict[str, tuple[Any, Any]]) -> EventKind:
    status = diff.get("status", (None, None))[1]
    if status in (OpportunityStatus.WON, OpportunityStatus.LOST):
        return EventKind.WON if status == OpportunityStatus.WON else EventKind.LOST
    return EventKind.STAGE_CHANGED if "stage_id" in diff else EventKind.UPDATED


def check_version(kind: DealKind[D], row: D, expected_version: int | None) -> None:
    if expected_version is not None and expected_version != row.version:
        raise conflict(
            f"This {kind.label} was changed by someone else (version {row.version}, "
            f"you had {expected_version}): reload it and apply your change again.",
            currentVersion=row.version,
        )


async def save_versioned(
    ctx: RequestContext,
    kind: DealKind[D],
    row: D,
    cleaned: dict[str, Any],
    expected_version: int | None,
    *,
    event_kind: EventKind | None = None,
    details: dict[str, Any] | None = None,
) -> D:
    """Write the changed fields unless someone else wrote first (a stale version is a CONFLICT),
    and log the change with each field's old and new value (and `details`), as `event_kind` or
    the kind the change implies."""
    check_version(kind, row, expected_version)
    changes = {name: value for name, value in cleaned.items() if getattr(row, name) != value}
    if not changes:
        return row
    now = datetime.now(UTC)
    written = await kind.model.filter(id=row.id, version=row.version).update(
        **changes, updated_at=now, version=row.version + 1
    )
    if not written:  # (on SQLite the count includes the change log's trigger rows: test for 0)
        raise conflict(f"This {kind.label} was changed concurrently: reload it and try again.")
    diff = {name: (getattr(row, name), value) for name, value in changes.items()}
    row.update_from_dict({**changes, "updated_at": now, "version": row.version + 1})
    if "owner_id" in changes:  # a new owner follows what they are given (and is told of it)
        await follow(ctx, kind, row, {row.owner_id})
    await record_event(
        ctx, kind, row.id, event_kind or _update_kind(diff), diff=diff, details=details
    )
    if diff.keys() & LIFECYCLE_FACTS:
        await lifecycle.refresh_deal(ctx, kind, row)
    return row
