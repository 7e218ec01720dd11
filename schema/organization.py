"""The organization (tenant) and its pipeline stages."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry import relay

from models import Organization as OrganizationRow
from models import PipelineStage as PipelineStageRow
from resolvers.organization import list_stages
from schema.base import Info, context


@strawberry.type(description="A stage of the sales pipeline, configured per organization.")
class PipelineStage(relay.Node):
    id: relay.NodeID[int]
    name: str
    position: int = strawberry.field(description="Order of the stage in the pipeline, from 1.")
    probability: int = strawberry.field(
        description="Default probability (percent) of an opportunity at this stage."
    )
    is_won: bool = strawberry.field(description="Moving an opportunity here wins it.")
    is_lost: bool = strawberry.field(description="Moving an opportunity here loses it.")

    @classmethod
    def from_row(cls, row: PipelineStageRow) -> PipelineStage:
        return cls(
            id=row.id,
            name=row.name,
            position=row.position,
            probability=row.probability,
            is_won=row.is_won,
            is_lost=row.is_lost,
        )


@strawberry.type(description="The tenant: every record belongs to exactly one organization.")
class Organization(relay.Node):
    id: relay.NodeID[int]
    name: str
    created_at: datetime
    inactive_client_after_days: int = strawberry.field(
        description="An active client with no win for this many days becomes inactive."
    )

    @classmethod
    def from_row(cls, row: OrganizationRow) -> Organization:
        return cls(
            id=row.id,
            name=row.name,
            created_at=row.created_at,
            inactive_client_after_days=row.inactive_client_after_days,
        )

    @strawberry.field(description="The pipeline stages, in order.")
    async def stages(self) -> list[PipelineStage]:
        return [PipelineStage.from_row(row) for row in await list_stages(self.id)]


@strawberry.type
class OrganizationQueries:
    @strawberry.field(description="The viewer's organization.")
    async def organization(self, info: Info) -> Organization:
        viewer = context(info).require_viewer()
        return Organization.from_row(await OrganizationRow.get(id=viewer.organization_id))

    @strawberry.field(description="The pipeline stages of the viewer's organization, in order.")
    async def pipeline_stages(self, info: Info) -> list[PipelineStage]:
        viewer = context(info).require_viewer()
        return [PipelineStage.from_row(row) for row in await list_stages(viewer.organization_id)]
