"""Quotas and the forecast: what each seller, team and the organization expect to win in a period.

Definitions (README, "Forecast"): an open opportunity counts in the period of its expected close
date, a won one in the period of the day it was won (UTC). Amounts are summed as integers (cents,
and cents x percent for the weighted pipeline), so every figure is exact. Only the organization's
currency is added up; other currencies are reported apart, one total each.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_EVEN, Decimal

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models import (
    ForecastCategory,
    Opportunity,
    OpportunityStatus,
    Organization,
    PeriodKind,
    Quota,
    Role,
    User,
)
from models.base import from_cents
from resolvers import validation
from resolvers.context import RequestContext
from resolvers.errors import bad_input, forbidden, not_found
from resolvers.permissions import reporting_lines, reports_of, team_ids

_PERIOD_RE = re.compile(r"^(\d{4})-(?:(0[1-9]|1[0-2])|Q([1-4]))$")


@dataclass(frozen=True)
class Period:
    """A calendar month ("2026-11") or quarter ("2026-Q4")."""

    kind: PeriodKind
    start: date

    @property
    def months(self) -> list[date]:
        count = 3 if self.kind == PeriodKind.QUARTER else 1
        return [_add_months(self.start, offset) for offset in range(count)]

    @property
    def end(self) -> date:
        """The last day."""
        following = _add_months(self.months[-1], 1)
        return date.fromordinal(following.toordinal() - 1)

    @property
    def label(self) -> str:
        if self.kind == PeriodKind.QUARTER:
            return f"{self.start.year}-Q{(self.start.month - 1) // 3 + 1}"
        return f"{self.start.year}-{self.start.month:02d}"


def _add_months(day: date, months: int) -> date:
    index = day.month - 1 + months
    return date(day.year + index // 12, index % 12 + 1, 1)


def month_label(start: date) -> str:
    return Period(PeriodKind.MONTH, start).label


def parse_period(text: str, field: str = "period") -> Period:
    found = _PERIOD_RE.match(text.strip())
    if found is None or not 2000 <= int(found.group(1)) <= 2199:
        raise bad_input(
            field, f"{field} is a month like 2026-11 or a quarter like 2026-Q4 (years 2000-2199)."
        )
    year = int(found.group(1))
    if found.group(3):
        return Period(PeriodKind.QUARTER, date(year, 3 * int(found.group(3)) - 2, 1))
    return Period(PeriodKind.MONTH, date(year, int(found.group(2)), 1))


# Quotas


async def _quota_target(ctx: RequestContext, user_id: int) -> User:
    """The seller whose quota the viewer sets: admins set anyone's, managers their team's."""
    viewer = ctx.require_viewer()
    user = await User.get_or_none(id=user_id, organization_id=viewer.organization_id)
    if user is None:
        raise bad_input("userId", "No user with this id.")
    if viewer.role == Role.ADMIN:
        return user
    if viewer.role == Role.SELLER:
        raise forbidden("Quotas are set by a seller's manager or an admin.")
    if user.id not in await team_ids(ctx):
        raise forbidden("Sales managers set the quotas of their team only (not their own).")
    return user


async def set_quota(ctx: RequestContext, user_id: int, period_text: str, amount: Decimal) -> Quota:
    period = parse_period(period_text)
    cents = validation.amount_cents(amount, "amount")
    user = await _quota_target(ctx, user_id)
    if not user.is_active:
        raise bad_input("userId", "This user is deactivated.")
    viewer = ctx.require_viewer()
    async with in_transaction():
        # The organization's row lock: its currency does not change under a new quota.
        await Organization.filter(id=viewer.organization_id).select_for_update().first()
        quota, created = await Quota.get_or_create(
            user_id=user.id,
            period_kind=period.kind,
            period_start=period.start,
            defaults={
                "organization_id": user.organization_id,
                "amount_cents": cents,
                "set_by_id": viewer.id,
            },
        )
        if not created:
            quota.amount_cents = cents
            quota.set_by_id = viewer.id
            await quota.save()
        return quota


async def delete_quota(ctx: RequestContext, user_id: int, period_text: str) -> Quota:
    period = parse_period(period_text)
    user = await _quota_target(ctx, user_id)
    quota = await Quota.get_or_none(
        user_id=user.id, period_kind=period.kind, period_start=period.start
    )
    if quota is None:
        raise not_found("quota", "period")
    await quota.delete()
    return quota


async def list_quotas(ctx: RequestContext, year: int, user_id: int | None) -> list[Quota]:
    """The quotas of a year the viewer may see (their own, their team's; admins all)."""
    if not 2000 <= year <= 2199:
        raise bad_input("year", "year must be between 2000 and 2199.")
    members = await _scope_members(ctx, user_id)
    return (
        await Quota.filter(
            user_id__in=members,
            period_start__gte=date(year, 1, 1),
            period_start__lte=date(year, 12, 31),
        )
        .order_by("user_id", "period_start", "period_kind")
        .all()
    )


# Scope: whose figures the viewer sees


@dataclass
class Scope:
    members: dict[int, User]  # everyone counted, by id
    lines: dict[int, list[int]]  # reporting lines among them (manager id -> direct reports)
    root: User | None  # the user the forecast is about; None: the whole organization


async def _load_scope(ctx: RequestContext, user_id: int | None) -> Scope:
    viewer = ctx.require_viewer()
    users = {
        user.id: user for user in await User.filter(organization_id=viewer.organization_id).all()
    }
    lines = reporting_lines((user.id, user.manager_id) for user in users.values())
    if user_id is None and viewer.role == Role.ADMIN:
        return Scope(users, lines, None)
    root_id = viewer.id if user_id is None else user_id
    if root_id not in users:
        raise bad_input("userId", "No user with this id.")
    visible = viewer.role == Role.ADMIN or root_id == viewer.id
    if not visible and root_id not in reports_of(viewer.id, lines):
        raise forbidden("A forecast covers the viewer and, for a manager, their team.")
    member_ids = {root_id, *reports_of(root_id, lines)}
    return Scope({pk: users[pk] for pk in member_ids}, lines, users[root_id])


async def _scope_members(ctx: RequestContext, user_id: int | None) -> list[int]:
    return list((await _load_scope(ctx, user_id)).members)


# Figures


def weighted_money(cents_times_percent: int) -> Decimal:
    """Sum of amount x probability / 100, from the exact sum of cents x percent: two decimals,
    or up to four when the cents do not divide."""
    exact = Decimal(cents_times_percent).scaleb(-4)
    cents = exact.quantize(Decimal("0.01"))
    return cents if cents == exact else exact.normalize()


@dataclass
class Tally:
    """Exact sums: cents, and cents x percent for the weighted pipeline."""

    open_cents: int = 0
    weighted: int = 0
    commit_cents: int = 0  # open COMMIT only
    best_case_cents: int = 0  # open BEST_CASE only
    pipeline_cents: int = 0  # open PIPELINE only
    won_cents: int = 0
    open_count: int = 0
    won_count: int = 0

    def add(self, other: Tally) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Figures:
    """One line of the forecast, for one period (a month, or the whole period with its months)."""

    label: str
    start: date
    end: date
    currency: str
    tally: Tally
    quota_cents: int | None
    months: list[Figures] = field(default_factory=list)

    @property
    def open_pipeline(self) -> Decimal:
        return _money(self.tally.open_cents)

    @property
    def weighted_pipeline(self) -> Decimal:
        return weighted_money(self.tally.weighted)

    @property
    def pipeline(self) -> Decimal:
        return _money(self.tally.pipeline_cents)

    @property
    def closed_won(self) -> Decimal:
        return _money(self.tally.won_cents)

    @property
    def commit(self) -> Decimal:
        return _money(self.tally.won_cents + self.tally.commit_cents)

    @property
    def best_case(self) -> Decimal:
        return _money(self.tally.won_cents + self.tally.commit_cents + self.tally.best_case_cents)

    @property
    def quota(self) -> Decimal | None:
        return None if self.quota_cents is None else _money(self.quota_cents)

    @property
    def attainment(self) -> Decimal | None:
        if not self.quota_cents:
            return None
        percent = Decimal(self.tally.won_cents * 100) / Decimal(self.quota_cents)
        return percent.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


def _money(cents: int) -> Decimal:
    amount = from_cents(cents)
    assert amount is not None
    return amount


@dataclass
class Line:
    user: User | None  # the seller, or the team's manager; None for the organization
    figures: Figures
    other_currencies: list[Figures]
    member_count: int = 1


@dataclass
class Forecast:
    period: Period
    currency: str
    root: User | None
    total: Line
    sellers: list[Line]
    teams: list[Line]


# (owner id, currency, first day of the month) -> tally
Tallies = dict[tuple[int, str, date], Tally]


async def _tallies(organization_id: int, owner_ids: Iterable[int], period: Period) -> Tallies:
    """Two statements: the open opportunities expected to close in the period, and the ones won
    in it."""
    owners = list(owner_ids)
    tallies: Tallies = defaultdict(Tally)
    live = Opportunity.filter(
        organization_id=organization_id, owner_id__in=owners, deleted_at__isnull=True
    )
    open_rows = (
        await live.filter(
            status=OpportunityStatus.OPEN,
            expected_close_date__gte=period.start,
            expected_close_date__lte=period.end,
        )
        .exclude(forecast_category=ForecastCategory.OMITTED)
        .values_list(
            "owner_id",
            "currency",
            "expected_close_date",
            "forecast_category",
            "amount_cents",
            "probability",
        )
    )
    for owner_id, currency, close_date, category, cents, probability in open_rows:
        tally = tallies[(owner_id, currency, close_date.replace(day=1))]
        tally.open_cents += cents
        tally.open_count += 1
        tally.weighted += cents * probability
        if category == ForecastCategory.COMMIT:
            tally.commit_cents += cents
        elif category == ForecastCategory.BEST_CASE:
            tally.best_case_cents += cents
        else:
            tally.pipeline_cents += cents
    since = datetime.combine(period.start, time(), tzinfo=UTC)
    until = datetime.combine(_add_months(period.months[-1], 1), time(), tzinfo=UTC)
    won_rows = await live.filter(
        status=OpportunityStatus.WON, closed_at__gte=since, closed_at__lt=until
    ).values_list("owner_id", "currency", "closed_at", "amount_cents")
    for owner_id, currency, closed_at, cents in won_rows:
        day = closed_at.astimezone(UTC).date()
        tally = tallies[(owner_id, currency, day.replace(day=1))]
        tally.won_cents += cents
        tally.won_count += 1
    return tallies


async def _quotas(owner_ids: Iterable[int], period: Period) -> dict[tuple[int, str], int]:
    """(user id, period label) -> quota cents, for the period and each of its months. A quarter
    with no quarterly quota has the sum of its monthly ones, if any."""
    wanted = Q(period_kind=PeriodKind.MONTH, period_start__in=period.months)
    if period.kind == PeriodKind.QUARTER:
        wanted |= Q(period_kind=PeriodKind.QUARTER, period_start=period.start)
    rows = await Quota.filter(wanted, user_id__in=list(owner_ids)).values_list(
        "user_id", "period_kind", "period_start", "amount_cents"
    )
    quotas: dict[tuple[int, str], int] = {}
    monthly: dict[int, int] = defaultdict(int)
    for user_id, kind, start, cents in rows:
        if kind == PeriodKind.QUARTER:
            quotas[(user_id, period.label)] = cents
        else:
            quotas[(user_id, month_label(start))] = cents
            monthly[user_id] += cents
    if period.kind == PeriodKind.QUARTER:
        for user_id, cents in monthly.items():
            quotas.setdefault((user_id, period.label), cents)
    return quotas


def _quota_sum(quotas: dict[tuple[int, str], int], users: set[int], label: str) -> int | None:
    found = [quotas[(user, label)] for user in users if (user, label) in quotas]
    return sum(found) if found else None


def _line(
    user: User | None,
    users: set[int],
    period: Period,
    currency: str,
    tallies: Tallies,
    quotas: dict[tuple[int, str], int],
) -> Line:
    by_currency: dict[str, dict[date, Tally]] = defaultdict(lambda: defaultdict(Tally))
    for (owner_id, money, month), tally in tallies.items():
        if owner_id in users:
            by_currency[money][month].add(tally)

    def figures(money: str) -> Figures:
        months = []
        whole = Tally()
        for month in period.months:
            tally = by_currency[money][month]
            whole.add(tally)
            quota = _quota_sum(quotas, users, month_label(month)) if money == currency else None
            end = Period(PeriodKind.MONTH, month).end
            months.append(Figures(month_label(month), month, end, money, tally, quota))
        quota = _quota_sum(quotas, users, period.label) if money == currency else None
        return Figures(period.label, period.start, period.end, money, whole, quota, months)

    others = [figures(money) for money in sorted(by_currency) if money != currency]
    return Line(user, figures(currency), others, len(users))


def _has_figures(line: Line) -> bool:
    return bool(
        line.other_currencies
        or line.figures.quota_cents is not None
        or line.figures.tally.open_count
        or line.figures.tally.won_count
    )


async def forecast(ctx: RequestContext, period_text: str, user_id: int | None) -> Forecast:
    """The viewer's forecast: a seller's own, a manager's team's, an admin's whole organization's
    (or, with `user_id`, one user's and their team's within what the viewer may see). Four
    statements whatever the size of the organization."""
    period = parse_period(period_text)
    scope = await _load_scope(ctx, user_id)
    viewer = ctx.require_viewer()
    organization = await Organization.get(id=viewer.organization_id)
    currency = organization.currency
    members = set(scope.members)
    tallies = await _tallies(organization.id, members, period)
    quotas = await _quotas(members, period)

    def line(user: User | None, users: set[int]) -> Line:
        return _line(user, users, period, currency, tallies, quotas)

    by_name = sorted(scope.members.values(), key=lambda user: (user.full_name.casefold(), user.id))
    sellers = [line(user, {user.id}) for user in by_name]
    sellers = [
        seller
        for seller in sellers
        if seller.user and (seller.user.is_active or _has_figures(seller))
    ]
    teams = [
        line(user, {user.id, *(reports_of(user.id, scope.lines) & members)})
        for user in by_name
        if reports_of(user.id, scope.lines) & members
    ]
    return Forecast(period, currency, scope.root, line(scope.root, members), sellers, teams)
