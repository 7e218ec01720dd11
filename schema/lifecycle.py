"""The contact lifecycle: its recorded moves, a manager's override, the organization's setting."""

from __future__ import annotations

from datetime import datetime

import strawberry

from models import LifecycleChange as LifecycleChangeRow
from models import LifecycleStage
from resolvers import lifecycle
from resolvers.permissions import require_admin
from schema.base import Info, context, pk_of
from schema.contact import Contact
from schema.organization import Organization
from schema.user import User, load_optional_user


@strawberry.type(description="A contact's move from one lifecycle stage to another, and why.")
class LifecycleChange:
    from_stage: LifecycleStage
    to_stage: LifecycleStage
    cause: str = strawberry.field(
        description="ACTIVITY_COMPLETED, LEAD_QUALIFIED, OPPORTUNITY_OPEN, OPPORTUNITY_WON, "
        "WIN_EXPIRED, NO_CONTACT_YET (an override cleared) or MANAGER_OVERRIDE."
    )
    reason: str
    created_at: datetime
    actor_id: strawberry.Private[int | None]

    @classmethod
    def from_row(cls, row: LifecycleChangeRow) -> LifecycleChange:
        return cls(
            from_stage=row.from_stage,
            to_stage=row.to_stage,
            cause=row.cause,
            reason=row.reason,
            created_at=row.created_at,
            actor_id=row.actor_id,
        )

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
    ) -> Contact:
        row = await lifecycle.set_stage(
            context(info), pk_of(contact_id, "contactId", "Contact"), stage, reason
        )
        return Contact.from_row(row)

    @strawberry.mutation(
        description="Admins: after how many days without a win an active client becomes "
        "inactive (1 to 3650; default 180)."
    )
    async def set_inactive_client_after_days(self, info: Info, days: int) -> Organization:
        admin = require_admin(context(info))
        organization = await lifecycle.set_inactive_after(admin.organization_id, days)
        return Organization.from_row(organization)
