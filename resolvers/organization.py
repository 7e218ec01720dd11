"""Organizations and their pipeline stages."""

from __future__ import annotations

from typing import Any

from tortoise.transactions import in_transaction

from models import (
    DEFAULT_STAGES,
    ForecastCategory,
    Opportunity,
    Organization,
    PipelineStage,
    Quota,
)
from resolvers import validation
from resolvers.context import RequestContext
from resolvers.errors import bad_input, conflict, not_found
from resolvers.permissions import require_admin


async def create_default_stages(organization: Organization) -> list[PipelineStage]:
    stages = [
        PipelineStage(
            organization=organization,
            name=name,
            position=position,
            probability=probability,
            is_won=won,
            is_lost=lost,
            forecast_category=category,
        )
        for position, (name, probability, won, lost, category) in enumerate(DEFAULT_STAGES, start=1)
    ]
    await PipelineStage.bulk_create(stages)
    return await PipelineStage.filter(organization=organization).order_by("position")


async def list_stages(organization_id: int) -> list[PipelineStage]:
    return await PipelineStage.filter(organization_id=organization_id).order_by("position", "id")


async def update_organization(ctx: RequestContext, values: dict[str, Any]) -> Organization:
    admin = require_admin(ctx)
    cleaned: dict[str, Any] = {}
    if "name" in values:
        cleaned["name"] = validation.text(values["name"] or "", "name")
    if "currency" in values:
        cleaned["currency"] = validation.currency(values["currency"] or "")
    async with in_transaction():
        organization = await Organization.filter(id=admin.organization_id).select_for_update().get()
        changing = cleaned.get("currency", organization.currency) != organization.currency
        if changing and await Quota.filter(organization_id=organization.id).exists():
            raise conflict(
                f"Quotas are set in {organization.currency}: delete them before changing the "
                "currency.",
                field="currency",
            )
        organization.update_from_dict(cleaned)
        await organization.save()
        return organization


# Configuring the pipeline (admins). Stage changes of one organization happen one at a time (the
# organization's row lock), and positions stay 1..n in order.


def _clean_stage(values: dict[str, Any], row: PipelineStage | None) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    if "name" in values:
        cleaned["name"] = validation.text(values["name"] or "", "name", max_length=100)
    if values.get("probability") is not None:
        cleaned["probability"] = validation.probability(values["probability"])
    for name in ("is_won", "is_lost", "forecast_category"):
        if values.get(name) is not None:
            cleaned[name] = values[name]
    won = cleaned.get("is_won", row.is_won if row else False)
    lost = cleaned.get("is_lost", row.is_lost if row else False)
    probability = cleaned.get("probability", row.probability if row else None)
    if won and lost:
        raise bad_input("isLost", "A stage cannot both win and lose.")
    if won and probability != 100 or lost and probability != 0:
        raise bad_input("probability", "A won stage has probability 100, a lost stage 0.")
    category = cleaned.get("forecast_category")
    if won or lost:
        closed = ForecastCategory.CLOSED if won else ForecastCategory.OMITTED
        if category is not None and category != closed:
            raise bad_input(
                "forecastCategory", "A won stage's category is CLOSED, a lost stage's OMITTED."
            )
        cleaned["forecast_category"] = closed
    elif category == ForecastCategory.CLOSED:
        raise bad_input("forecastCategory", "CLOSED is for won stages only.")
    elif category is None and (row is None or row.is_won or row.is_lost):
        cleaned["forecast_category"] = default_category(probability or 0)
    return cleaned


def default_category(probability: int) -> ForecastCategory:
    """The forecast category of a new open stage that names none, as the default pipeline has it."""
    if probability >= 75:
        return ForecastCategory.COMMIT
    if probability >= 50:
        return ForecastCategory.BEST_CASE
    return ForecastCategory.PIPELINE


async def _locked_stages(organization_id: int) -> list[PipelineStage]:
    await Organization.filter(id=organization_id).select_for_update().first()
    return await list_stages(organization_id)


async def _check_unique_name(stages: list[PipelineStage], name: str, own_id: int | None) -> None:
    if any(s.name.casefold() == name.casefold() and s.id != own_id for s in stages):
        raise conflict("A stage with this name exists already.", field="name")


async def _renumber(stages: list[PipelineStage]) -> None:
    for position, stage in enumerate(stages, start=1):
        if stage.position != position:
            stage.position = position
            await stage.save(update_fields=["position", "updated_at"])


def _in_range(position: int | None, size: int, field: str = "position") -> int:
    if position is None:
        return size
    if not 1 <= position <= size:
        raise bad_input(field, f"position must be between 1 and {size}.")
    return position


async def create_stage(ctx: RequestContext, values: dict[str, Any]) -> PipelineStage:
    admin = require_admin(ctx)
    cleaned = _clean_stage({"is_won": False, "is_lost": False, **values}, None)
    if "probability" not in cleaned:
        raise bad_input("probability", "probability is required.")
    async with in_transaction():
        stages = await _locked_stages(admin.organization_id)
        await _check_unique_name(stages, cleaned["name"], None)
        position = _in_range(values.get("position"), len(stages) + 1)
        stage = await PipelineStage.create(
            organization_id=admin.organization_id, position=position, **cleaned
        )
        stages.insert(position - 1, stage)
        await _renumber(stages)
        return stage


async def update_stage(ctx: RequestContext, stage_id: int, values: dict[str, Any]) -> PipelineStage:
    admin = require_admin(ctx)
    async with in_transaction():
        stages = await _locked_stages(admin.organization_id)
        stage = next((s for s in stages if s.id == stage_id), None)
        if stage is None:
            raise not_found("pipeline stage")
        cleaned = _clean_stage(values, stage)
        if "name" in cleaned:
            await _check_unique_name(stages, cleaned["name"], stage.id)
        flags = ("is_won", "is_lost")
        meaning = [
            name
            for name in flags
            if cleaned.get(name, getattr(stage, name)) != getattr(stage, name)
        ]
        if meaning and await Opportunity.filter(stage_id=stage.id).exists():
            raise conflict(
                "Opportunities are at this stage: a stage in use cannot start or stop winning "
                "or losing. Create another stage and move them."
            )
        if "position" in values and values["position"] is not None:
            position = _in_range(values["position"], len(stages))
            stages.remove(stage)
            stages.insert(position - 1, stage)
        stage.update_from_dict(cleaned)
        await stage.save()
        await _renumber(stages)
        _check_pipeline(stages)
        return stage


async def delete_stage(ctx: RequestContext, stage_id: int) -> PipelineStage:
    admin = require_admin(ctx)
    async with in_transaction():
        stages = await _locked_stages(admin.organization_id)
        stage = next((s for s in stages if s.id == stage_id), None)
        if stage is None:
            raise not_found("pipeline stage")
        if await Opportunity.filter(stage_id=stage.id).exists():
            raise conflict("Opportunities are at this stage (deleted ones too): move them first.")
        stages.remove(stage)
        _check_pipeline(stages)
        await stage.delete()
        await _renumber(stages)
        return stage


def _check_pipeline(stages: list[PipelineStage]) -> None:
    """A pipeline keeps an open stage, a won stage and a lost stage."""
    if not any(not s.is_won and not s.is_lost for s in stages):
        raise conflict("The pipeline needs at least one open stage.")
    if not any(s.is_won for s in stages):
        raise conflict("The pipeline needs a won stage.")
    if not any(s.is_lost for s in stages):
        raise conflict("The pipeline needs a lost stage.")
