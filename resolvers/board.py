"""The pipeline board: per stage, and per currency, how many opportunities and how much, for the
same filter as the opportunities list and under the same read rule, in one statement."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from models import PipelineStage
from resolvers.context import RequestContext
from resolvers.forecast import weighted_money
from resolvers.loaders import instance
from resolvers.opportunity import filtered_opportunities

_STAGE_COLUMNS = tuple(PipelineStage._meta.fields_db_projection.values())


@dataclass
class CurrencyTotal:
    """One currency's opportunities at a stage: amounts are never added across currencies."""

    currency: str
    count: int
    amount_cents: int
    weighted: int  # cents x percent: exact

    @property
    def weighted_amount(self) -> Decimal:
        return weighted_money(self.weighted)


@dataclass
class StageSummary:
    stage: PipelineStage
    totals: list[CurrencyTotal] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(total.count for total in self.totals)


async def stage_summary(ctx: RequestContext, filters: dict[str, Any]) -> list[StageSummary]:
    """Every stage of the organization in pipeline order (those with no matching opportunity
    too: a board shows empty columns), with its matching opportunities' figures by currency."""
    organization_id = ctx.require_viewer().organization_id
    matching = (await filtered_opportunities(ctx, filters)).order_by()
    deals = matching.values_list("stage_id", "currency", "amount_cents", "probability")
    deals._choose_db_if_not_chosen()
    deals._make_query()
    inner, params = deals.query.get_parameterized_sql()
    client = deals._db
    postgres = client.capabilities.dialect == "postgres"
    organization = f"${len(params) + 1}" if postgres else "?"
    # values_list names its columns by position: "0" stage, "1" currency, "2" cents, "3" percent.
    stage = ", ".join(f's."{column}"' for column in _STAGE_COLUMNS)
    sql = (
        f'SELECT {stage}, o."1", count(o."0"), coalesce(sum(o."2"), 0), '
        f'coalesce(sum(o."2" * o."3"), 0) '
        f'FROM "pipeline_stage" AS s LEFT JOIN ({inner}) AS o ON o."0" = s."id" '
        f'WHERE s."organization_id" = {organization} '
        f'GROUP BY {stage}, o."1" ORDER BY s."position", s."id", o."1"'
    )
    _, rows = await client.execute_query(sql, [*params, organization_id])
    width = len(_STAGE_COLUMNS)
    summaries: dict[int, StageSummary] = {}
    for row in rows:
        values = list(row.values()) if hasattr(row, "values") else list(row)
        stage_row = instance(PipelineStage, _STAGE_COLUMNS, values[:width])
        summary = summaries.setdefault(stage_row.id, StageSummary(stage_row))
        currency, count, cents, weighted = values[width:]
        if currency is not None:
            summary.totals.append(CurrencyTotal(currency, count, int(cents), int(weighted)))
    return list(summaries.values())
