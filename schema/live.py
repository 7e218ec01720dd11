"""Live updates over websockets: the events of a record, of followed records, notifications."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated

import strawberry

from models import Campaign as CampaignRow
from models import CampaignStatus
from models import Event as EventRow
from models import Notification as NotificationRow
from schema.base import Info, context, pk_of
from schema.campaign import Campaign, CampaignProgress
from schema.event import Event, Notification
from schema.follow import followed_ref
from subscriptions import feeds

_AFTER = (
    "Replay first every event after this cursor (an event's `cursor`, or a `history` edge "
    "cursor), then continue live, with no gap and no duplicate. Without it: from now on."
)


@strawberry.type
class LiveQueries:
    @strawberry.field(
        description="The newest event of the viewer's organization, as a cursor. Read what a "
        "view needs and this cursor in one query, then subscribe with `after: liveCursor`: "
        "whatever happens in between is replayed, so the view misses nothing."
    )
    async def live_cursor(self, info: Info) -> str:
        return await feeds.live_cursor(context(info))


@strawberry.type(
    description="Live updates, over websockets at /graphql (graphql-transport-ws, or the legacy "
    'graphql-ws). Authenticate in connection_init: {"authorization": "Bearer <token>"}. '
    "A subscription that falls too far behind ends with SUBSCRIPTION_OVERFLOW and a "
    "`resumeAfter` cursor; one whose session is revoked ends with UNAUTHENTICATED."
)
class Subscription:
    @strawberry.subscription(
        description="Every change, comment and development of one record the viewer may read "
        "(a lead, an opportunity, an account or a contact), as it commits. Once an event finds "
        "the record out of the viewer's reach (removed from a private deal's followers, the deal "
        "made private or reassigned), the subscription ends with RECORD_UNREADABLE."
    )
    async def record_events(
        self,
        info: Info,
        record_id: strawberry.ID,
        after: Annotated[str | None, strawberry.argument(description=_AFTER)] = None,
    ) -> AsyncGenerator[Event, None]:
        kind, pk = followed_ref(record_id)
        return _events(await feeds.record_events(context(info), kind, pk, after))

    @strawberry.subscription(
        description="The events of every record the viewer follows (leads, opportunities, "
        "accounts, contacts), the viewer's own changes included. Following or unfollowing a "
        "record takes effect at once."
    )
    async def followed_events(
        self,
        info: Info,
        after: Annotated[str | None, strawberry.argument(description=_AFTER)] = None,
    ) -> AsyncGenerator[Event, None]:
        return _events(await feeds.followed_events(context(info), after))

    @strawberry.subscription(
        description="The viewer's new notifications as they are written (one per event on a "
        "followed record, never for the viewer's own acts). Missed ones are in `notifications`."
    )
    async def notification_added(self, info: Info) -> AsyncGenerator[Notification, None]:
        return _notifications(await feeds.notification_added(context(info)))

    @strawberry.subscription(
        description="A campaign's status and launch progress each time they change (pushed as "
        "the launch's job commits, at most a few times a second), from its current state, for "
        "those who may read the campaign. The stream ends once the launch is through (neither "
        "PLANNED nor LAUNCHING)."
    )
    async def campaign_progress(
        self, info: Info, campaign_id: strawberry.ID
    ) -> AsyncGenerator[CampaignUpdate, None]:
        pk = pk_of(campaign_id, "campaignId", "Campaign")
        return _campaigns(await feeds.campaign_progress(context(info), pk))


@strawberry.type(description="A campaign's status and progress at one moment of its launch.")
class CampaignUpdate:
    status: CampaignStatus
    progress: CampaignProgress
    campaign: Campaign


async def _campaigns(rows: AsyncIterator[CampaignRow]) -> AsyncGenerator[CampaignUpdate, None]:
    # An update has no `id`: each is computed for its subscriber (the plans share the results
    # of a record's events by its id within a second, which would repeat a stale progress).
    async for row in rows:
        yield CampaignUpdate(
            status=row.status, progress=CampaignProgress.of(row), campaign=Campaign.from_row(row)
        )


# The resolvers above check their arguments and access before they return a stream, so that a
# refusal is the operation's `error` message; these turn the rows of that stream into types.
async def _events(rows: AsyncIterator[EventRow]) -> AsyncGenerator[Event, None]:
    async for row in rows:
        yield Event.from_row(row)


async def _notifications(
    rows: AsyncIterator[NotificationRow],
) -> AsyncGenerator[Notification, None]:
    async for row in rows:
        yield Notification.from_row(row)
