"""The contact lifecycle: its recorded moves, a manager's override, the organization's setting."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from models import Contact as ContactRow
from models import LifecycleChange as LifecycleChangeRow
from models import LifecycleStage
from resolvers import lifecycle
from resolvers.permissions import require_admin
from schema.base import Info, context, pk_of
from schema.organization import Organization
from schema.records import Declared, declared, record
from schema.user import User, load_optional_user

if TYPE_CHECKING:
    from schema.contact import Contact

ContactRef = Annotated["Contact", strawberry.lazy("schema.contact")]


@record(LifecycleChangeRow, read=None, node=False)
@strawberry.type(description="A contact's move from one lifecycle stage to another, and why.")
class LifecycleChange(Declared):
    from_stage: LifecycleStage
    to_stage: LifecycleStage
    cause: str = strawberry.field(
        description="ACTIVITY_COMPLETED, LEAD_QUALIFIED, OPPORTUNITY_OPEN, OPPORTUNITY_WON, "
        "WIN_EXPIRED, NO_CONTACT_YET (an override cleared) or MANAGER_OVERRIDE."
    )
    reason: str
    created_at: datetime
    actor_id: strawberry.Private[int | None]

    @strawberry.field(description="Who made it: null for the facts' own moves by the sweep.")
    async def actor(self, info: Info) -> User | None:
        return await load_optional_user(info, self.actor_id)


@strawberry.type
class LifecycleMutations:
    @strawberry.mutation(
        description="Set a contact's lifecycle stage by hand, with a reason (sales managers and "
        "admins who manage its owner). The stage then stays until set back to null, which "
        "returns the contact to the stage its facts give."
    )
    async def set_contact_lifecycle(
        self, info: Info, contact_id: strawberry.ID, stage: LifecycleStage | None, reason: str
    ) -> ContactRef:
        row = await lifecycle.set_stage(
            context(info), pk_of(contact_id, "contactId", "Contact"), stage, reason
        )
        return declared(ContactRow).make(row)  # type: ignore[no-any-return]

    @strawberry.mutation(
        description="Admins: after how many days without a win an active client becomes "
        "inactive (1 to 3650; default 180)."
    )
    async def set_inactive_client_after_days(self, info: Info, days: int) -> Organization:
        admin = require_admin(context(info))
        organization = await lifecycle.set_inactive_after(admin.organization_id, days)
        return Organization.from_row(organization)
