"""node(id:) and nodes(ids:): any record by its global id, within the viewer's organization."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import strawberry
from strawberry import relay

from models import Comment as CommentRow
from resolvers import deal as deals
from resolvers.deal_kinds import KINDS
from resolvers.errors import bad_input, not_found
from schema.account import load_account
from schema.base import Info, context, decode_id
from schema.contact import load_contact
from schema.deal import Comment, deal_from_row
from schema.organization import Organization, PipelineStage
from schema.user import load_optional_user


def _deal(type_name: str) -> Callable[[Info, int], Awaitable[Any]]:
    kind = KINDS[type_name]

    async def load(info: Info, pk: int) -> Any:
        return deal_from_row(kind, await deals.get_readable(context(info), kind, pk))

    return load


async def _stage(info: Info, pk: int) -> Any:
    row = await context(info).loaders.stage.load(pk)
    return PipelineStage.from_row(row) if row else None


async def _organization(info: Info, pk: int) -> Any:
    viewer = context(info).require_viewer()
    if pk != viewer.organization_id:
        return None
    from models import Organization as OrganizationRow

    return Organization.from_row(await OrganizationRow.get(id=pk))


async def _comment(info: Info, pk: int) -> Any:
    ctx = context(info)
    row = await CommentRow.filter(
        id=pk, organization_id=ctx.require_viewer().organization_id
    ).first()
    if row is None:
        return None
    kind, record_id = (
        (KINDS["Lead"], row.lead_id) if row.lead_id else (KINDS["Opportunity"], row.opportunity_id)
    )
    assert record_id is not None, "a comment is on a lead or an opportunity"
    # A comment on a lead or opportunity out of the viewer's reach answers like a missing one.
    if await deals.readable_or_none(ctx, kind, record_id) is None:
        return None
    return Comment.from_row(row)


async def _event(info: Info, pk: int) -> Any:
    from models import Event as EventRow
    from resolvers.events import event_record
    from schema.event import Event

    ctx = context(info)
    row = await EventRow.filter(id=pk, organization_id=ctx.require_viewer().organization_id).first()
    if row is None or await event_record(ctx, row) is None:
        return None
    return Event.from_row(row)


async def _notification(info: Info, pk: int) -> Any:
    from models import Notification as NotificationRow
    from schema.event import Notification

    row = await NotificationRow.filter(id=pk, user_id=context(info).require_viewer().id).first()
    return None if row is None else Notification.from_row(row)


async def _activity(info: Info, pk: int) -> Any:
    from resolvers.activity import get_activity
    from schema.activity import Activity

    return Activity.from_row(await get_activity(context(info), pk))


async def _message(info: Info, pk: int) -> Any:
    from resolvers.message import visible_messages
    from schema.message import Message

    row = await visible_messages(context(info)).filter(id=pk).first()
    return None if row is None else Message.from_row(row)


async def _product(info: Info, pk: int) -> Any:
    from schema.product import Product

    row = await context(info).loaders.product.load(pk)
    return None if row is None else Product.from_row(row)


async def _line_item(info: Info, pk: int) -> Any:
    from models import LineItem as LineItemRow
    from schema.product import LineItem

    ctx = context(info)
    organization_id = ctx.require_viewer().organization_id
    row = await LineItemRow.filter(id=pk, opportunity__organization_id=organization_id).first()
    if row is None:
        return None
    await deals.get_readable(ctx, KINDS["Opportunity"], row.opportunity_id)
    return LineItem.from_row(row)


async def _segment(info: Info, pk: int) -> Any:
    from resolvers.segment import get_segment
    from schema.segment import Segment

    return Segment.from_row(await get_segment(context(info), pk))


async def _campaign(info: Info, pk: int) -> Any:
    from schema.campaign import load_campaign

    return await load_campaign(info, pk)


async def _campaign_cost(info: Info, pk: int) -> Any:
    from models import CampaignCost as CampaignCostRow
    from schema.campaign import CampaignCost

    organization_id = context(info).require_viewer().organization_id
    row = await CampaignCostRow.filter(id=pk, campaign__organization_id=organization_id).first()
    return None if row is None else CampaignCost.from_row(row)


RESOLVERS: dict[str, Callable[[Info, int], Awaitable[Any]]] = {
    "User": load_optional_user,
    "Account": load_account,
    "Contact": load_contact,
    "Lead": _deal("Lead"),
    "Opportunity": _deal("Opportunity"),
    "PipelineStage": _stage,
    "Organization": _organization,
    "Comment": _comment,
    "Event": _event,
    "Notification": _notification,
    "Activity": _activity,
    "Message": _message,
    "Product": _product,
    "LineItem": _line_item,
    "Segment": _segment,
    "Campaign": _campaign,
    "CampaignCost": _campaign_cost,
}
MAX_NODES = 100


async def resolve_node(info: Info, value: str, field: str) -> relay.Node:
    context(info).require_viewer()
    type_name, pk = decode_id(value, field)
    resolver = RESOLVERS.get(type_name)
    if resolver is None:
        raise bad_input(field, f"{type_name} is not a type of this API.")
    found = await resolver(info, pk)
    if found is None:
        raise not_found(type_name)
    return found


@strawberry.type
class NodeQueries:
    @strawberry.field(description="Any record by its global id (NOT_FOUND outside your reach).")
    async def node(self, info: Info, id: strawberry.ID) -> relay.Node:
        return await resolve_node(info, id, "id")

    @strawberry.field(
        description=f"Records by their global ids, in order (at most {MAX_NODES}); each one "
        "out of reach is null with a NOT_FOUND error at its index."
    )
    async def nodes(self, info: Info, ids: list[strawberry.ID]) -> list[relay.Node | None]:
        context(info).require_viewer()
        if len(ids) > MAX_NODES:
            raise bad_input("ids", f"At most {MAX_NODES} ids at a time.")
        return [resolve_node(info, value, f"ids.{index}") for index, value in enumerate(ids)]  # type: ignore[misc]
