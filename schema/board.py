"""The pipeline board: per-stage figures of the opportunities a filter matches."""

from __future__ import annotations

from decimal import Decimal

import strawberry

from models import PipelineStage as PipelineStageRow
from models.base import from_cents
from resolvers import board
from schema.base import Info, context, filter_values
from schema.opportunity import FILTER_IDS, OpportunityFilter
from schema.organization import PipelineStage
from schema.records import declared


@strawberry.type(description="The opportunities of one currency at a stage.")
class StageCurrencyTotal:
    currency: str = strawberry.field(description="ISO 4217 code of the amounts.")
    count: int
    amount: Decimal = strawberry.field(description="Sum of their amounts.")
    weighted_amount: Decimal = strawberry.field(
        description="Sum of amount x probability / 100, exact: it can carry up to four decimals."
    )


@strawberry.type(description="A column of the pipeline board: a stage and its opportunities.")
class StageSummary:
    stage: PipelineStage
    count: int = strawberry.field(description="How many opportunities, all currencies.")
    totals: list[StageCurrencyTotal] = strawberry.field(
        description="By currency, alphabetically; amounts are never added across currencies."
    )


@strawberry.type
class BoardQueries:
    @strawberry.field(
        description="Every pipeline stage, in order (empty ones too), with the count, amount and "
        "weighted amount of the opportunities the viewer may read that match the filter (the "
        "same filter as `opportunities`), by currency."
    )
    async def opportunity_stage_summary(
        self, info: Info, filter: OpportunityFilter | None = None
    ) -> list[StageSummary]:
        summaries = await board.stage_summary(context(info), filter_values(filter, FILTER_IDS))
        make = declared(PipelineStageRow).make
        return [
            StageSummary(
                stage=make(summary.stage),
                count=summary.count,
                totals=[
                    StageCurrencyTotal(
                        currency=total.currency,
                        count=total.count,
                        amount=from_cents(total.amount_cents) or Decimal(0),
                        weighted_amount=total.weighted_amount,
                    )
                    for total in summary.totals
                ],
            )
            for summary in summaries
        ]
