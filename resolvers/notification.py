"""The viewer's notifications: one per event on the records they follow (not their own acts)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from models import Event, Notification
from resolvers.context import RequestContext
from resolvers.deal_kinds import KINDS
from resolvers.pagination import BY_ID, Page, PageRequest, paginate


async def list_notifications(
    ctx: RequestContext, page: PageRequest, unread_only: bool
) -> Page[Notification]:
    query = Notification.filter(user_id=ctx.require_viewer().id)
    if unread_only:
        query = query.filter(read_at__isnull=True)
    return await paginate(query, page, BY_ID, descending=True)


async def unread_count(ctx: RequestContext) -> int:
    return await Notification.filter(user_id=ctx.require_viewer().id, read_at__isnull=True).count()


async def mark_read(ctx: RequestContext, notification_ids: list[int] | None) -> int:
    """Mark some (or, with None, all) of the viewer's unread notifications read; how many were."""
    query = Notification.filter(user_id=ctx.require_viewer().id, read_at__isnull=True)
    if notification_ids is not None:
        query = query.filter(id__in=notification_ids)
    return await query.update(read_at=datetime.now(UTC))


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
    """The live lead or opportunity of an event, when the viewer may read it."""
    from resolvers.deal import get_readable
    from resolvers.errors import ApiError

    kind = KINDS[event.record_type]
    try:
        return await get_readable(ctx, kind, event.record_id)
    except ApiError:
        return None
