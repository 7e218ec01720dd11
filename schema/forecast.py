"""Quotas and the forecast of sellers, teams and the organization."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

import strawberry

from models import PeriodKind
from models import Quota as QuotaRow
from models.base import from_cents
from resolvers import forecast as forecasts
from schema.base import Info, context, pk_of
from schema.records import Declared, column, derived, given, record
from schema.user import User, load_optional_user, load_user

PERIOD_HELP = "A month like 2026-11 or a quarter like 2026-Q4."


def _period(row: QuotaRow) -> forecasts.Period:
    return forecasts.Period(row.period_kind, row.period_start)


@record(QuotaRow, read=None, node=False)
@strawberry.type(description="A seller's target of won amount for a month or a quarter.")
class Quota(Declared):
    period: str = derived(lambda row: _period(row).label, description=PERIOD_HELP)
    period_kind: PeriodKind
    start_date: date = derived(lambda row: _period(row).start)
    end_date: date = derived(lambda row: _period(row).end)
    amount: Decimal = column(
        source="amount_cents", convert=from_cents, description="In the organization's currency."
    )
    currency: str = given()
    updated_at: datetime
    user_id: strawberry.Private[int]
    set_by_id: strawberry.Private[int | None]

    @strawberry.field(description="The seller.")
    async def user(self, info: Info) -> User:
        return await load_user(info, self.user_id)

    @strawberry.field(description="Who set it last.")
    async def set_by(self, info: Info) -> User | None:
        return await load_optional_user(info, self.set_by_id)


@strawberry.type(
    description="Forecast figures for a period, in one currency. Exact decimals. Open "
    "opportunities count in the period of their expected close date, won ones in the period "
    "they were won in (UTC); lost and OMITTED ones not at all."
)
class ForecastFigures:
    period: str = strawberry.field(description=PERIOD_HELP)
    start_date: date
    end_date: date
    currency: str
    open_pipeline: Decimal = strawberry.field(
        description="Sum of the open opportunities' amounts (OMITTED ones aside)."
    )
    weighted_pipeline: Decimal = strawberry.field(
        description="Sum of amount x probability / 100 over the same opportunities, exact: it "
        "can carry up to four decimals."
    )
    pipeline: Decimal = strawberry.field(description="Open opportunities in PIPELINE.")
    commit: Decimal = strawberry.field(description="closedWon + open opportunities in COMMIT.")
    best_case: Decimal = strawberry.field(description="commit + open opportunities in BEST_CASE.")
    closed_won: Decimal = strawberry.field(description="Won in the period.")
    open_count: int = strawberry.field(description="Open opportunities counted.")
    won_count: int = strawberry.field(description="Opportunities won in the period.")
    quota: Decimal | None = strawberry.field(
        description="Sum of the quotas set for the period (a quarter with no quarterly quota: its "
        "monthly ones); null when none is set, or in another currency than the organization's."
    )
    attainment: Decimal | None = strawberry.field(
        description="closedWon / quota, in percent with two decimals (half-even); null without "
        "a quota."
    )
    months: list[ForecastFigures] = strawberry.field(
        description="The period month by month (empty on a month's own figures)."
    )

    @classmethod
    def from_figures(cls, figures: forecasts.Figures) -> ForecastFigures:
        return cls(
            period=figures.label,
            start_date=figures.start,
            end_date=figures.end,
            currency=figures.currency,
            open_pipeline=figures.open_pipeline,
            weighted_pipeline=figures.weighted_pipeline,
            pipeline=figures.pipeline,
            commit=figures.commit,
            best_case=figures.best_case,
            closed_won=figures.closed_won,
            open_count=figures.tally.open_count,
            won_count=figures.tally.won_count,
            quota=figures.quota,
            attainment=figures.attainment,
            months=[cls.from_figures(month) for month in figures.months],
        )


@strawberry.type(
    description="The figures of a seller (their own opportunities), of a team (a manager and "
    "everyone reporting to them, directly or not) or of the whole scope."
)
class ForecastLine:
    figures: ForecastFigures = strawberry.field(description="In the organization's currency.")
    other_currencies: list[ForecastFigures] = strawberry.field(
        description="Opportunities in other currencies, one entry per currency: reported "
        "apart, never converted nor added in."
    )
    member_count: int = strawberry.field(description="How many users the line adds up.")
    user_id: strawberry.Private[int | None]

    @classmethod
    def from_line(cls, line: forecasts.Line) -> ForecastLine:
        return cls(
            figures=ForecastFigures.from_figures(line.figures),
            other_currencies=[ForecastFigures.from_figures(f) for f in line.other_currencies],
            member_count=line.member_count,
            user_id=line.user.id if line.user else None,
        )

    @strawberry.field(
        description="The seller, or the team's manager; null on the organization's total."
    )
    async def user(self, info: Info) -> User | None:
        return await load_optional_user(info, self.user_id)


@strawberry.type(
    description="A forecast: per seller, rolled up per manager's team, and in total. A seller "
    "sees their own; a manager their team's; an admin everyone's."
)
class Forecast:
    period: str = strawberry.field(description=PERIOD_HELP)
    period_kind: PeriodKind
    start_date: date
    end_date: date
    currency: str = strawberry.field(description="The organization's currency.")
    total: ForecastLine = strawberry.field(
        description="The whole scope: the organization, or the user asked for and their team."
    )
    sellers: list[ForecastLine] = strawberry.field(
        description="Each user in the scope with their own opportunities, by name (deactivated "
        "users only when they have figures)."
    )
    teams: list[ForecastLine] = strawberry.field(
        description="Each manager in the scope, with everyone reporting to them, by name."
    )

    @classmethod
    def from_forecast(cls, forecast: forecasts.Forecast) -> Forecast:
        return cls(
            period=forecast.period.label,
            period_kind=forecast.period.kind,
            start_date=forecast.period.start,
            end_date=forecast.period.end,
            currency=forecast.currency,
            total=ForecastLine.from_line(forecast.total),
            sellers=[ForecastLine.from_line(line) for line in forecast.sellers],
            teams=[ForecastLine.from_line(line) for line in forecast.teams],
        )


async def _currency(info: Info) -> str:
    return (await context(info).loaders.organization()).currency


@strawberry.type
class ForecastQueries:
    @strawberry.field(
        description="The forecast of a period. Without userId: the viewer's (an admin's is the "
        "organization's); with it, that user's and their team's, which a manager may ask for "
        "anyone in their team and an admin for anyone."
    )
    async def forecast(
        self,
        info: Info,
        period: Annotated[str, strawberry.argument(description=PERIOD_HELP)],
        user_id: strawberry.ID | None = None,
    ) -> Forecast:
        user = pk_of(user_id, "userId", "User") if user_id is not None else None
        return Forecast.from_forecast(await forecasts.forecast(context(info), period, user))

    @strawberry.field(
        description="The quotas of a year: the viewer's own, a manager's team's, all for an "
        "admin; with userId, that user's and their team's."
    )
    async def quotas(
        self, info: Info, year: int, user_id: strawberry.ID | None = None
    ) -> list[Quota]:
        user = pk_of(user_id, "userId", "User") if user_id is not None else None
        rows = await forecasts.list_quotas(context(info), year, user)
        currency = await _currency(info)
        return [Quota.from_row(row, currency=currency) for row in rows]


@strawberry.type
class ForecastMutations:
    @strawberry.mutation(
        description="Set a seller's quota for a month or a quarter, replacing any set before "
        "(their manager, up the chain, or an admin)."
    )
    async def set_quota(
        self,
        info: Info,
        user_id: strawberry.ID,
        period: Annotated[str, strawberry.argument(description=PERIOD_HELP)],
        amount: Annotated[
            Decimal, strawberry.argument(description="In the organization's currency.")
        ],
    ) -> Quota:
        row = await forecasts.set_quota(
            context(info), pk_of(user_id, "userId", "User"), period, amount
        )
        return Quota.from_row(row, currency=await _currency(info))

    @strawberry.mutation(description="Remove a quota (same rule as setQuota).")
    async def delete_quota(
        self,
        info: Info,
        user_id: strawberry.ID,
        period: Annotated[str, strawberry.argument(description=PERIOD_HELP)],
    ) -> Quota:
        row = await forecasts.delete_quota(context(info), pk_of(user_id, "userId", "User"), period)
        return Quota.from_row(row, currency=await _currency(info))
