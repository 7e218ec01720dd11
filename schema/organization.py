"""The organization (tenant) and its pipeline stages."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry import relay

from models import ForecastCategory
from models import Organization as OrganizationRow
from models import PipelineStage as PipelineStageRow
from resolvers import access
from resolvers import organization as organizations
from resolvers.organization import list_stages
from schema.base import Info, context, pk_of, values_of
from schema.records import Declared, record


@record(PipelineStageRow, read=access.STAGES)
@strawberry.type(description="A stage of the sales pipeline, configured per organization.")
class PipelineStage(relay.Node, Declared):
    id: relay.NodeID[int]
    name: str
    position: int = strawberry.field(description="Order of the stage in the pipeline, from 1.")
    probability: int = strawberry.field(
        description="Default probability (percent) of an opportunity at this stage."
    )
    is_won: bool = strawberry.field(description="Moving an opportunity here wins it.")
    is_lost: bool = strawberry.field(description="Moving an opportunity here loses it.")
    forecast_category: ForecastCategory = strawberry.field(
        description="The forecast category of opportunities moved here, unless overridden on one: "
        "CLOSED for a won stage, OMITTED for a lost one."
    )


@record(OrganizationRow, read=access.ORGANIZATION)
@strawberry.type(description="The tenant: every record belongs to exactly one organization.")
class Organization(relay.Node, Declared):
    id: relay.NodeID[int]
    name: str
    created_at: datetime
    inactive_client_after_days: int = strawberry.field(
        description="An active client with no win for this many days becomes inactive."
    )
    currency: str = strawberry.field(
        description="ISO 4217 code of the forecast and the quotas. Opportunities in another "
        "currency are reported apart, never added in."
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


@strawberry.input(description="A new pipeline stage (admins).")
class CreatePipelineStageInput:
    name: str
    probability: int = strawberry.field(description="Percent: 100 for a won stage, 0 for lost.")
    position: int | None = strawberry.field(
        default=None, description="Where it goes, from 1 (default: last); later stages move down."
    )
    is_won: bool = False
    is_lost: bool = False
    forecast_category: ForecastCategory | None = strawberry.field(
        default=None,
        description="Default: CLOSED for a won stage, OMITTED for a lost one; for an open stage "
        "COMMIT from probability 75, BEST_CASE from 50, PIPELINE below.",
    )


@strawberry.input(description="Changes to a pipeline stage (admins); omitted fields stay.")
class UpdatePipelineStageInput:
    id: strawberry.ID
    name: str | None = strawberry.UNSET
    probability: int | None = strawberry.field(
        default=strawberry.UNSET,
        description="The default for opportunities moved here from now on; opportunities at "
        "the stage keep theirs.",
    )
    position: int | None = strawberry.field(
        default=strawberry.UNSET, description="Move it to this position, from 1."
    )
    is_won: bool | None = strawberry.UNSET
    is_lost: bool | None = strawberry.UNSET
    forecast_category: ForecastCategory | None = strawberry.field(
        default=strawberry.UNSET,
        description="The default for opportunities moved here from now on; opportunities at the "
        "stage keep theirs.",
    )


@strawberry.input(description="Changes to the organization (admins); omitted fields stay.")
class UpdateOrganizationInput:
    name: str | None = strawberry.UNSET
    currency: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="ISO 4217 code of forecasts and quotas. It cannot change while quotas exist "
        "(they are amounts in the old currency): CONFLICT.",
    )


@strawberry.type
class PipelineMutations:
    @strawberry.mutation(description="Rename the organization or change its currency (admins).")
    async def update_organization(self, info: Info, input: UpdateOrganizationInput) -> Organization:
        row = await organizations.update_organization(context(info), values_of(input))
        return Organization.from_row(row)

    @strawberry.mutation(
        description="Add a pipeline stage (admins). Names are unique in the organization."
    )
    async def create_pipeline_stage(
        self, info: Info, input: CreatePipelineStageInput
    ) -> PipelineStage:
        row = await organizations.create_stage(context(info), values_of(input))
        return PipelineStage.from_row(row)

    @strawberry.mutation(
        description="Rename, re-weight, move or re-flag a stage (admins). A stage in use cannot "
        "start or stop winning or losing (CONFLICT)."
    )
    async def update_pipeline_stage(
        self, info: Info, input: UpdatePipelineStageInput
    ) -> PipelineStage:
        values = values_of(input)
        stage_id = pk_of(values.pop("id"), "id", "PipelineStage")
        return PipelineStage.from_row(
            await organizations.update_stage(context(info), stage_id, values)
        )

    @strawberry.mutation(
        description="Remove a stage no opportunity uses (admins). The pipeline keeps an open, a "
        "won and a lost stage (CONFLICT otherwise)."
    )
    async def delete_pipeline_stage(self, info: Info, id: strawberry.ID) -> PipelineStage:
        row = await organizations.delete_stage(context(info), pk_of(id, "id", "PipelineStage"))
        return PipelineStage.from_row(row)
