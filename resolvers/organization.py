"""Organizations and their pipeline stages."""

from __future__ import annotations

from models import DEFAULT_STAGES, Organization, PipelineStage


async def create_default_stages(organization: Organization) -> list[PipelineStage]:
    stages = [
        PipelineStage(
            organization=organization,
            name=name,
            position=position,
            probability=probability,
            is_won=won,
            is_lost=lost,
        )
        for position, (name, probability, won, lost) in enumerate(DEFAULT_STAGES, start=1)
    ]
    await PipelineStage.bulk_create(stages)
    return await PipelineStage.filter(organization=organization).order_by("position")


async def list_stages(organization_id: int) -> list[PipelineStage]:
    return await PipelineStage.filter(organization_id=organization_id).order_by("position", "id")
