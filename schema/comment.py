"""Comments on leads and opportunities."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry import relay

from models import Comment as CommentRow
from models import User as UserRow
from resolvers import access
from resolvers.deal_kinds import LEAD, OPPORTUNITY
from resolvers.errors import not_found
from schema.base import Info, context
from schema.records import Declared, declared, record, record_of

if TYPE_CHECKING:
    from schema.deal import Deal
    from schema.user import User

DealRef = Annotated["Deal", strawberry.lazy("schema.deal")]
UserRef = Annotated["User", strawberry.lazy("schema.user")]


@record(CommentRow, read=access.COMMENTS)
@strawberry.type(description="A comment on a lead or an opportunity.")
class Comment(relay.Node, Declared):
    id: relay.NodeID[int]
    body: str
    created_at: datetime
    author_id: strawberry.Private[int]
    lead_id: strawberry.Private[int | None]
    opportunity_id: strawberry.Private[int | None]

    @strawberry.field
    async def author(self, info: Info) -> UserRef:
        user = await record_of(info, UserRow, self.author_id)
        assert user is not None, f"user {self.author_id} referenced but missing"
        return user  # type: ignore[no-any-return]

    @strawberry.field(description="The lead or opportunity commented on.")
    async def record(self, info: Info) -> DealRef:
        lead = self.lead_id is not None
        kind, pk = (LEAD, self.lead_id) if lead else (OPPORTUNITY, self.opportunity_id)
        assert pk is not None, "a comment is on a lead or an opportunity"
        row = await access.deals_of(kind).get(context(info), pk)
        if row is None:
            raise not_found(kind.label, None)
        return declared(kind.model).make(row)  # type: ignore[no-any-return]
