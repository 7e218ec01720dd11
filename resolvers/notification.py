"""The viewer's notifications: one per event on the records they follow (not their own acts)."""

from __future__ import annotations

from datetime import UTC, datetime

from models import Notification
from resolvers.context import RequestContext
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
