"""Segments: saved filters over contacts, their members, and a preview before saving."""

from __future__ import annotations

from dataclasses import fields as dataclass_fields
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

import strawberry
from strawberry import UNSET, relay
from strawberry.scalars import JSON

from models import LifecycleStage
from models import Segment as SegmentRow
from resolvers import access
from resolvers import segment as segments
from schema.base import Connection, Info, connection, context, in_utc, page_request, pk_of
from schema.contact import Contact
from schema.records import Declared, column, record
from schema.user import User, load_user

PREVIEW_SIZE = 10


@strawberry.input(
    description="Won amount of the contact's account, in the organization's currency, between "
    "since and until (UTC days, both included). Without min (or with 0), accounts that won "
    "nothing match too."
)
class BillingRange:
    min: Decimal | None = None
    max: Decimal | None = None
    since: date | None = None
    until: date | None = None


@strawberry.input(
    description="A filter over contacts: every condition given must match. `all` and `any` "
    "combine filters (and, or); `not` keeps the contacts a filter does not select. Account "
    "conditions (industries, places, products, billing) are on the contact's account; text "
    "matches ignore case."
)
class SegmentFilter:
    all: list[SegmentFilter] | None = None
    any: list[SegmentFilter] | None = None
    not_: SegmentFilter | None = strawberry.field(default=None, name="not")
    industries: list[str] | None = None
    countries: list[str] | None = None
    regions: list[str] | None = None
    cities: list[str] | None = None
    product_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="The account won an opportunity with any of these products."
    )
    billing: BillingRange | None = None
    lifecycle_stages: list[LifecycleStage] | None = None
    owner_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="The contact's owner is one of these users."
    )
    tags: list[str] | None = strawberry.field(default=None, description="Any of these tags.")
    has_email: bool | None = None


def filter_dict(value: Any) -> Any:
    """An input filter as a plain tree (snake_case keys, nulls dropped)."""
    if isinstance(value, list):
        return [filter_dict(item) for item in value]
    if not hasattr(value, "__dataclass_fields__"):
        return value
    tree: dict[str, Any] = {}
    for item in dataclass_fields(value):
        found = getattr(value, item.name)
        if found is None or found is UNSET:
            continue
        tree["not" if item.name == "not_" else item.name] = filter_dict(found)
    return tree


@record(SegmentRow, read=access.SEGMENTS)
@strawberry.type(description="A named filter over contacts, and the contacts it selects now.")
class Segment(relay.Node, Declared):
    id: relay.NodeID[int]
    name: str
    description: str | None
    filter: JSON = column(
        source="conditions",
        convert=JSON,
        description="The filter, in the shape SegmentFilter takes (send it back to change it).",
    )
    created_at: datetime
    updated_at: datetime
    owner_id: strawberry.Private[int]
    conditions: strawberry.Private[dict[str, Any]]

    @strawberry.field(description="Who created it.")
    async def owner(self, info: Info) -> User:
        return await load_user(info, self.owner_id)

    @strawberry.field(description="How many contacts it selects now.")
    async def count(self, info: Info) -> int:
        return await (await segments.matching(context(info), self.conditions)).count()

    @strawberry.field(description="The contacts it selects now (live, not a snapshot).")
    async def members(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Contact]:
        page = await segments.members(
            context(info), self.conditions, page_request(info, first, after, last, before)
        )
        return connection(page, Contact.from_row)


@strawberry.type(description="What a filter would select, before saving it.")
class SegmentPreview:
    count: int
    sample: list[Contact] = strawberry.field(
        description=f"The first {PREVIEW_SIZE} contacts it selects."
    )
    filter: JSON = strawberry.field(description="The filter as it would be saved.")


@strawberry.input(description="A new segment (admins and sales managers).")
class CreateSegmentInput:
    name: str
    filter: SegmentFilter
    description: str | None = None


@strawberry.input(description="Changes to a segment; omitted fields stay as they are.")
class UpdateSegmentInput:
    id: strawberry.ID
    name: str | None = UNSET
    description: str | None = UNSET
    filter: SegmentFilter | None = UNSET


def _values(input: Any) -> dict[str, Any]:
    values = {
        item.name: getattr(input, item.name)
        for item in dataclass_fields(input)
        if getattr(input, item.name) is not UNSET
    }
    if "filter" in values and values["filter"] is not None:
        values["filter"] = filter_dict(values["filter"])
    values.pop("id", None)
    return values


@strawberry.type
class SegmentQueries:
    @strawberry.field(description="The organization's segments, oldest first.")
    async def segments(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        updated_since: Annotated[
            datetime | None, strawberry.argument(description="Changed at or after this time.")
        ] = None,
    ) -> Connection[Segment]:
        page = await segments.list_segments(
            context(info), page_request(info, first, after, last, before), in_utc(updated_since)
        )
        return connection(page, Segment.from_row)

    @strawberry.field(
        description="What a filter selects, without saving it (admins and sales managers)."
    )
    async def preview_segment(self, info: Info, filter: SegmentFilter) -> SegmentPreview:
        segments.require_editor(context(info))
        stored = segments.plain(filter_dict(filter))
        query = await segments.matching(context(info), stored)
        sample = await query.order_by("id").limit(PREVIEW_SIZE)
        return SegmentPreview(
            count=await query.count(),
            sample=[Contact.from_row(row) for row in sample],
            filter=JSON(stored),
        )


@strawberry.type
class SegmentMutations:
    @strawberry.mutation(description="Save a filter as a segment (admins, sales managers).")
    async def create_segment(self, info: Info, input: CreateSegmentInput) -> Segment:
        return Segment.from_row(await segments.create_segment(context(info), _values(input)))

    @strawberry.mutation(description="Rename a segment or change its filter.")
    async def update_segment(self, info: Info, input: UpdateSegmentInput) -> Segment:
        segment_id = pk_of(input.id, "id", "Segment")
        row = await segments.update_segment(context(info), segment_id, _values(input))
        return Segment.from_row(row)

    @strawberry.mutation(description="Delete a segment no campaign uses (CONFLICT otherwise).")
    async def delete_segment(self, info: Info, id: strawberry.ID) -> Segment:
        row = await segments.delete_segment(context(info), pk_of(id, "id", "Segment"))
        return Segment.from_row(row)
