"""The live feeds: replay from the event log after a cursor, then what the hub hands over.

Opening a feed checks everything first (session, arguments, access) and only then returns the
stream, so that a refusal is the subscription's `error` message rather than a first result.

Each feed is a rule (which events it wants, for whom) and a replay query over the log. The hub
applies the rule to every new event, on the rows of the moment, so following or unfollowing a
record, a change of visibility or of team takes effect on an open subscription at the next event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, nullcontext
from typing import Any

from tortoise.expressions import Q, Subquery
from tortoise.queryset import QuerySet

from models import Campaign, CampaignStatus, Event, Notification, User
from resolvers.access import followed_rule
from resolvers.campaign import get_campaign
from resolvers.context import RequestContext
from resolvers.deal_kinds import FOLLOWED, FollowedKind
from resolvers.errors import ApiError, ErrorCode, bad_input, not_found, unauthenticated
from resolvers.events import event_cursor, parse_event_cursor
from subscriptions.hub import (
    Delivery,
    Hub,
    Snapshot,
    Subscriber,
    SubscriptionEnded,
    Wants,
    log_head,
)

REPLAY_PAGE = 200
REVOKED = "Your session was revoked or has expired, or your user was deactivated: sign in again."


async def record_events(
    ctx: RequestContext, kind: FollowedKind[Any], record_id: int, after: str | None
) -> AsyncIterator[Event]:
    """The events of one record the viewer may read (a lead, an opportunity, an account or a
    contact). Once an event of the record finds it out of the viewer's reach (they were
    unfollowed from a private deal, it went private, it was reassigned), the subscription ends
    with RECORD_UNREADABLE."""
    viewer = ctx.require_viewer()
    start_after = await _start_after(viewer.organization_id, after)
    if await followed_rule(kind).get(ctx, record_id) is None:
        raise not_found(kind.label, "recordId")

    def wants(snapshot: Snapshot, user: User, event: Event) -> Event | None:
        if event.record_type != kind.name or event.record_id != record_id:
            return None
        if not snapshot.may_read(user, event):
            raise SubscriptionEnded("unreadable")
        return event

    replay = Event.filter(
        organization_id=viewer.organization_id, record_type=kind.name, record_id=record_id
    )
    _check_room(ctx)
    return _stream(ctx, wants, replay, start_after)


async def followed_events(ctx: RequestContext, after: str | None) -> AsyncIterator[Event]:
    """The events of every record the viewer follows at the time of the event."""
    viewer = ctx.require_viewer()
    start_after = await _start_after(viewer.organization_id, after)

    def wants(snapshot: Snapshot, user: User, event: Event) -> Event | None:
        return event if snapshot.follows(user.id, event) else None

    followed = Q(
        *(
            Q(
                record_type=kind.name,
                record_id__in=Subquery(kind.follower.filter(user_id=viewer.id).values("record_id")),
            )
            for kind in FOLLOWED.values()
        ),
        join_type=Q.OR,
    )
    replay = Event.filter(followed, organization_id=viewer.organization_id)
    _check_room(ctx)
    return _stream(ctx, wants, replay, start_after)


async def notification_added(ctx: RequestContext) -> AsyncIterator[Notification]:
    """The viewer's new notifications, as they are written."""
    ctx.require_viewer()

    def wants(snapshot: Snapshot, user: User, event: Event) -> Notification | None:
        return snapshot.notifications.get(event.id, {}).get(user.id)

    _check_room(ctx)
    return _stream(ctx, wants, None, None, notifications=True)


async def live_cursor(ctx: RequestContext) -> str:
    """Where the viewer's organization's event log stands now."""
    return event_cursor(await log_head(ctx.require_viewer().organization_id))


async def campaign_progress(ctx: RequestContext, campaign_id: int) -> AsyncIterator[Campaign]:
    """A campaign readable by the viewer, each time its status or progress changes; the stream
    ends once it is launched (neither PLANNED nor LAUNCHING).

    The row is re-read when the hub hears the campaign's doorbell (its job rings after each
    commit that moves the counts, from this process or over the bus from a worker), at most
    once per CAMPAIGN_PROGRESS_MIN_SECONDS (the rings meanwhile make one re-read), and every
    CAMPAIGN_PROGRESS_SECONDS without a ring (a doorbell the bus lost)."""
    first = await get_campaign(ctx, campaign_id)
    _check_room(ctx)
    return _progress(ctx, first)


def _progress_of(row: Campaign) -> tuple[object, ...]:
    return (row.status, row.members_count, row.messaged_count, row.skipped_count,
            row.sent_count, row.failed_count)  # fmt: skip


async def _progress(ctx: RequestContext, row: Campaign) -> AsyncIterator[Campaign]:
    every = ctx.settings.campaign_progress_seconds
    least = ctx.settings.campaign_progress_min_seconds
    hub: Hub | None = ctx.hub
    watching = hub.watch_campaign(row.id) if hub is not None else nullcontext(asyncio.Event())
    loop = asyncio.get_running_loop()
    ctx.open_feeds += 1
    try:
        with watching as rung:
            rung.set()  # a ring between the first read and the watch is not lost: read again
            yield row
            seen, sent = _progress_of(row), loop.time()
            while row.status in (CampaignStatus.PLANNED, CampaignStatus.LAUNCHING):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(every):
                        await rung.wait()
                pause = sent + least - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)
                rung.clear()  # (before the read: a ring during it wakes us again)
                found = await Campaign.filter(id=row.id).first()
                if found is None:
                    return
                row = found
                if _progress_of(row) != seen:
                    seen, sent = _progress_of(row), loop.time()
                    yield row
    finally:
        ctx.open_feeds -= 1


def _check_room(ctx: RequestContext) -> None:
    """At most MAX_SUBSCRIPTIONS_PER_CONNECTION live subscriptions on one websocket."""
    limit = ctx.settings.max_subscriptions_per_connection
    if limit and ctx.open_feeds >= limit:
        raise ApiError(
            ErrorCode.TOO_MANY_SUBSCRIPTIONS,
            f"This connection has {ctx.open_feeds} live subscriptions, the most it may hold: "
            "complete one first, or open another connection.",
            limit=limit,
        )


def _sign_out(ctx: RequestContext) -> None:
    ctx.viewer = None
    ctx.auth_error = REVOKED
    raise unauthenticated(REVOKED)


async def _start_after(organization_id: int, after: str | None) -> int:
    """Where an event feed starts: after the client's cursor, or after the newest event of the
    organization's log (read before the feed registers, so that nothing committed meanwhile is
    skipped)."""
    head = await log_head(organization_id)
    if after is None:
        return head
    position = parse_event_cursor(after, "after")
    if position > head:
        raise bad_input(
            "after",
            "This cursor is ahead of the event log (from another deployment, or a restored "
            "database): reload the view and subscribe without `after`.",
        )
    return position


async def _stream(
    ctx: RequestContext,
    wants: Wants,
    replay: QuerySet[Event] | None,
    after: int | None,
    *,
    notifications: bool = False,
) -> AsyncIterator[Any]:
    """`after` with a `replay` query: the events after it, then live. Without (notifications):
    what the hub hands over from the moment the feed registers."""
    viewer = ctx.require_viewer()
    hub: Hub = ctx.hub
    ctx.open_feeds += 1
    try:
        async with aclosing(_feed(ctx, hub, viewer, wants, replay, after, notifications)) as items:
            async for item in items:
                yield item
    finally:
        ctx.open_feeds -= 1


async def _feed(
    ctx: RequestContext,
    hub: Hub,
    viewer: User,
    wants: Wants,
    replay: QuerySet[Event] | None,
    after: int | None,
    notifications: bool,
) -> AsyncGenerator[Any, None]:
    async with hub.subscribe(
        viewer.organization_id, viewer.id, ctx.token_hash, wants, notifications=notifications
    ) as feed:
        last = feed.start if after is None else after
        if replay is not None and after is not None:
            while last < feed.start:
                page = (
                    await replay.filter(id__gt=last, id__lte=feed.start)
                    .order_by("id")
                    .limit(REPLAY_PAGE)
                )
                for event in page:
                    ctx.forget_cached()
                    yield event
                    last = event.id
                if len(page) < REPLAY_PAGE:
                    break
            last = max(last, feed.start)
        # The feed lives as long as the subscription: it does not keep the replay's query
        # (its querysets were some 3 KiB of each idle subscription's memory).
        replay = None
        while True:
            delivery = await _next(ctx, feed, last, notifications)
            if delivery.event.id <= last:
                continue  # the client had it already (a cursor ahead of this process)
            ctx.forget_cached()
            ctx.loaders.event.prime(delivery.event.id, delivery.event)
            if delivery.actor is not None:
                ctx.loaders.user.prime(delivery.actor.id, delivery.actor)
            yield delivery.item
            last = delivery.event.id


async def _next(ctx: RequestContext, feed: Subscriber, last: int, notifications: bool) -> Delivery:
    try:
        return await feed.next()
    except SubscriptionEnded as ended:
        if ended.reason == "revoked":
            _sign_out(ctx)
        if ended.reason == "unreadable":
            raise ApiError(
                ErrorCode.RECORD_UNREADABLE,
                "You can no longer read this record (you were removed from its followers, or "
                "its visibility or owner changed): this subscription has ended.",
            ) from None
        if notifications:
            raise ApiError(
                ErrorCode.SUBSCRIPTION_OVERFLOW,
                f"This subscription fell more than {feed.limit} notifications behind and was "
                "ended: subscribe again, and read what you missed in `notifications`.",
            ) from None
        raise ApiError(
            ErrorCode.SUBSCRIPTION_OVERFLOW,
            f"This subscription fell more than {feed.limit} events behind and was ended: "
            "subscribe again with `after` set to `resumeAfter` to get the rest.",
            resumeAfter=event_cursor(last),
        ) from None
