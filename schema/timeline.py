"""Timelines on accounts, contacts, leads and opportunities: one connection of what happened."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import strawberry

from resolvers import timeline as timelines
from resolvers.pagination import PageRequest
from resolvers.timeline import EntryKind
from schema.activity import Activity
from schema.base import CountPrecision, precision
from schema.comment import Comment
from schema.event import Event
from schema.lifecycle import LifecycleChange

TimelineItem = Annotated[
    Activity | Comment | Event | LifecycleChange,
    strawberry.union("TimelineItem", description="What a timeline entry holds."),
]

_WRAP: dict[EntryKind, Any] = {
    EntryKind.ACTIVITY: Activity.from_row,
    EntryKind.COMMENT: Comment.from_row,
    EntryKind.CHANGE: Event.from_row,
    EntryKind.LIFECYCLE: LifecycleChange.from_row,
}


@strawberry.type(description="One entry of a timeline.")
class TimelineEdge:
    cursor: str = strawberry.field(description="Pass it as `after` for the entries older than it.")
    kind: EntryKind
    at: datetime = strawberry.field(
        description="When it happened: an activity's scheduled time (so planned ones come first), "
        "else when it was recorded."
    )
    node: TimelineItem


@strawberry.type(description="Whether a timeline has older entries.")
class TimelinePageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type(description="A page of a timeline, newest first.")
class TimelineConnection:
    edges: list[TimelineEdge]
    page_info: TimelinePageInfo
    page: strawberry.Private[timelines.TimelinePage]

    @strawberry.field(
        description="How many entries the timeline has, across all pages: exact up to the "
        "server's limit (COUNT_LIMIT) for each kind of entry, see `totalCountPrecision`."
    )
    async def total_count(self) -> int:
        return (await self.page.total_count()).value

    @strawberry.field(description="Whether `totalCount` is exact or a lower bound.")
    async def total_count_precision(self) -> CountPrecision:
        return precision(await self.page.total_count())


async def timeline_connection(
    sources: list[timelines.Source], page_request: PageRequest, include: list[EntryKind] | None
) -> TimelineConnection:
    page = await timelines.page(sources, page_request, include)
    edges = [
        TimelineEdge(
            cursor=entry.cursor, kind=entry.kind, at=entry.at, node=_WRAP[entry.kind](entry.row)
        )
        for entry in page.entries
    ]
    info = TimelinePageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor)
    return TimelineConnection(edges=edges, page_info=info, page=page)


TIMELINE_HELP = (
    "What happened, newest first, in one connection: activities, comments and changes (pages "
    "forward with first and after; `include` keeps some kinds of entries only)."
)
