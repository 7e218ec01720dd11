"""Who may read what: one read rule per record kind, used by every path that shows a record.

A rule answers three questions, each from one definition:
- `query(ctx)`: the rows the viewer may read, as a query: lists, counts, node lookups and the
  lookups of records named in another record's fields start from it;
- `get(ctx, pk)`: one of them by its id, or None (the API answers NOT_FOUND, never FORBIDDEN,
  so a record out of reach is as unknown as a missing one);
- `sql(row)`: the same condition on a row of the SQL projections (schema/engine/projections.py), for
  the rules that are the organization's alone (the projections' relations are of those).
The deals' rule also answers in memory (`sees`), for the live hub, which holds the rows of a
batch of events and decides for every subscriber without a query; tests/test_read_rules.py
checks that `sees` and `query` agree for every role.

The rules:
- the organization's records (accounts, contacts, users, stages, products, segments,
  campaigns): everyone in the organization reads its live rows;
- leads and opportunities (DEALS): the organization reads them unless they are PRIVATE; a
  private one is read by admins, its owner, the owner's managers up the chain and its
  followers;
- what belongs to a deal (comments, events, line items, participants, an activity about a
  deal): whoever reads the deal; an activity about no deal: the organization;
- events of an account or a contact: whoever reads it (the organization); following one grants
  nothing more, where following a deal grants reading it;
- notifications: their user; messages: their sender, and admins.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tortoise.expressions import Q, Subquery
from tortoise.models import Model
from tortoise.queryset import QuerySet

from models import (
    Account,
    Activity,
    Campaign,
    CampaignCost,
    Comment,
    Contact,
    Event,
    LineItem,
    Message,
    Notification,
    Organization,
    PipelineStage,
    Product,
    Role,
    Segment,
    User,
    Visibility,
)
from models.deal import Deal
from resolvers.context import RequestContext
from resolvers.deal_kinds import FOLLOWED, KINDS, LEAD, OPPORTUNITY, DealKind, FollowedKind
from resolvers.loaders import select_values
from resolvers.permissions import reporting_lines, reports_of, team_ids

M = TypeVar("M", bound=Model)


class ReadRule:
    """The read rule of one record kind (see the module's docstring)."""

    model: type[Model]

    async def query(self, ctx: RequestContext) -> QuerySet[Any]:
        raise NotImplementedError

    async def get(self, ctx: RequestContext, pk: int) -> Any | None:
        return await (await self.query(ctx)).filter(id=pk).first()

    async def readable_ids(self, ctx: RequestContext, pks: Iterable[int]) -> set[int]:
        """Which of these ids the viewer may read."""
        wanted = sorted(set(pks))
        if not wanted:
            return set()
        found = await (await self.query(ctx)).filter(id__in=wanted).values_list("id", flat=True)
        return {int(pk) for pk in found}  # type: ignore[call-overload]


def _live(model: type[Model]) -> bool:
    return "deleted_at" in model._meta.fields_map


def scoped(ctx: RequestContext, model: type[M]) -> QuerySet[M]:
    """The viewer's organization's live rows of a model: the organization's records' rule, and
    where the others start."""
    query = model.filter(organization_id=ctx.require_viewer().organization_id)
    return query.filter(deleted_at__isnull=True) if _live(model) else query


@dataclass(frozen=True)
class Organizations(ReadRule):
    """The organization's records: everyone in it reads the live ones."""

    model: type[Model]

    @property
    def live(self) -> bool:
        return _live(self.model)

    async def query(self, ctx: RequestContext) -> QuerySet[Any]:
        return scoped(ctx, self.model)

    async def get(self, ctx: RequestContext, pk: int) -> Any | None:
        return await ctx.loaders.rows(self.model, live=self.live).load(pk)

    def sql(self, row: str) -> str:
        """The rule on a row of SQL (`{org}`: the organization's id)."""
        live = f" AND {row}.deleted_at IS NULL" if self.live else ""
        return f"{row}.organization_id = {{org}}{live}"


@dataclass(frozen=True)
class OwnOrganization(ReadRule):
    """The viewer's own organization."""

    model: type[Model] = Organization

    async def query(self, ctx: RequestContext) -> QuerySet[Any]:
        return Organization.filter(id=ctx.require_viewer().organization_id)


@dataclass(frozen=True)
class Deals(ReadRule):
    """Leads and opportunities: see the module's docstring."""

    kind: DealKind[Any]
    model: type[Model] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", self.kind.model)

    async def condition(self, ctx: RequestContext) -> Q | None:
        """The SQL condition of the rule beyond the organization's live rows (None: none)."""
        viewer = ctx.require_viewer()
        if viewer.role == Role.ADMIN:
            return None
        followed = Subquery(self.kind.follower.filter(user_id=viewer.id).values("record_id"))
        return (
            Q(visibility=Visibility.ORGANIZATION)
            | Q(owner_id__in=[viewer.id, *await team_ids(ctx)])
            | Q(id__in=followed)
        )

    async def query(self, ctx: RequestContext) -> QuerySet[Any]:
        viewer = ctx.require_viewer()
        query = self.model.filter(organization_id=viewer.organization_id, deleted_at__isnull=True)
        condition = await self.condition(ctx)
        return query if condition is None else query.filter(condition)

    async def get(self, ctx: RequestContext, pk: int) -> Any | None:
        row = await ctx.loaders.deal(self.kind).load(pk)
        return row if row is not None and await self.reads(ctx, row) else None

    async def reads(self, ctx: RequestContext, row: Deal) -> bool:
        """Whether the viewer may read this row (one the request read already)."""
        viewer = ctx.require_viewer()
        if row.deleted_at is not None or row.organization_id != viewer.organization_id:
            return False
        # The team is looked up only where it decides.
        private = row.visibility != Visibility.ORGANIZATION and viewer.role != Role.ADMIN
        team = await team_ids(ctx) if private else set()
        if sees(viewer, team, row, follows=False):
            return True
        return viewer.id in await ctx.loaders.follower_ids(self.kind).load(row.id)


def sees(viewer: User, team: set[int], row: Deal, *, follows: bool) -> bool:
    """The deals' rule in memory, deletion aside: `team` is the viewer's reports (direct and
    indirect), `follows` whether the viewer follows the record."""
    if row.organization_id != viewer.organization_id:
        return False
    return (
        row.visibility == Visibility.ORGANIZATION
        or viewer.role == Role.ADMIN
        or row.owner_id == viewer.id
        or row.owner_id in team
        or follows
    )


def sees_record(user: User, team: set[int], kind: str, row: Any, *, follows: bool) -> bool:
    """The rule of a followed record (a deal, an account, a contact) in memory, deletion aside:
    the deals' `sees`, or the organization's for accounts and contacts (following one grants
    nothing)."""
    if kind in DEALS:
        return sees(user, team, row, follows=follows)
    return bool(row.organization_id == user.organization_id)


async def user_reads(user: User, kind: FollowedKind[Any], row: Any) -> bool:
    """A record's rule for a user other than the viewer (say, an owner being assigned, or a
    user mentioned in a comment)."""
    if not kind.is_deal:
        return row.deleted_at is None and row.organization_id == user.organization_id
    team: set[int] = set()
    if row.visibility != Visibility.ORGANIZATION and user.role != Role.ADMIN:
        pairs = await select_values(
            User, ["id", "manager_id"], organization_id=user.organization_id
        )
        team = reports_of(user.id, reporting_lines(pairs))
    follows = await kind.follower.filter(record_id=row.id, user_id=user.id).exists()
    return row.deleted_at is None and sees(user, team, row, follows=follows)


LEADS = Deals(LEAD)
OPPORTUNITIES = Deals(OPPORTUNITY)
DEALS: dict[str, Deals] = {LEADS.kind.name: LEADS, OPPORTUNITIES.kind.name: OPPORTUNITIES}


def deals_of(kind: DealKind[Any]) -> Deals:
    return DEALS[kind.name]


async def readable_deal_ids(ctx: RequestContext, kind: DealKind[Any]) -> Subquery:
    """The ids of the deals of a kind the viewer reads, as a subquery."""
    return Subquery((await deals_of(kind).query(ctx)).values("id"))


@dataclass(frozen=True)
class OfDeals(ReadRule):
    """Records belonging to a lead or an opportunity (their `lead_id`/`opportunity_id`
    columns, or one of them): whoever reads the deal reads them. `alone`: rows about no deal
    are the organization's (activities)."""

    model: type[Model]
    columns: tuple[tuple[DealKind[Any], str], ...]
    organization: str = "organization_id"  # how a row names its organization
    alone: bool = False

    async def query(self, ctx: RequestContext) -> QuerySet[Any]:
        query = self.model.filter(**{self.organization: ctx.require_viewer().organization_id})
        if _live(self.model):
            query = query.filter(deleted_at__isnull=True)
        either: list[Q] = []
        if self.alone:
            nowhere: dict[str, Any] = {f"{column}__isnull": True for _, column in self.columns}
            either.append(Q(**nowhere))
        for kind, column in self.columns:
            within: dict[str, Any] = {f"{column}__in": await readable_deal_ids(ctx, kind)}
            either.append(Q(**within))
        return query.filter(Q(*either, join_type=Q.OR))


@dataclass(frozen=True)
class Events(ReadRule):
    """Events: whoever reads their record (a lead, an opportunity, an account or a contact; a
    deleted one's are out of reach). `records`: the rule of each record type with a history."""

    records: dict[str, ReadRule]
    model: type[Model] = Event

    async def query(self, ctx: RequestContext) -> QuerySet[Any]:
        either = [
            Q(record_type=name, record_id__in=Subquery((await rule.query(ctx)).values("id")))
            for name, rule in self.records.items()
        ]
        readable = Q(*either, join_type=Q.OR)
        return Event.filter(readable, organization_id=ctx.require_viewer().organization_id)

    async def get(self, ctx: RequestContext, pk: int) -> Any | None:
        row = await ctx.loaders.event.load(pk)
        if row is None or row.organization_id != ctx.require_viewer().organization_id:
            return None
        return row if await self.record(ctx, row) is not None else None

    async def record(self, ctx: RequestContext, event: Event) -> Any | None:
        """The live record of an event, when the viewer may read it."""
        rule = self.records.get(event.record_type)
        return None if rule is None else await rule.get(ctx, event.record_id)


@dataclass(frozen=True)
class Own(ReadRule):
    """Rows of the viewer's own (their notifications); `admins`: and every row of the
    organization for its admins (messages, by their sender)."""

    model: type[Model]
    column: str
    admins: bool = False

    async def query(self, ctx: RequestContext) -> QuerySet[Any]:
        viewer = ctx.require_viewer()
        if self.admins:
            query = self.model.filter(organization_id=viewer.organization_id)
            return query if viewer.role == Role.ADMIN else query.filter(**{self.column: viewer.id})
        return self.model.filter(**{self.column: viewer.id})


@dataclass(frozen=True)
class Through(ReadRule):
    """Rows belonging to a record of another rule (a campaign's costs): read with it."""

    model: type[Model]
    column: str
    parent: ReadRule

    async def query(self, ctx: RequestContext) -> QuerySet[Any]:
        parents = Subquery((await self.parent.query(ctx)).values("id"))
        return self.model.filter(**{f"{self.column}__in": parents})


ACCOUNTS = Organizations(Account)
CONTACTS = Organizations(Contact)
USERS = Organizations(User)
STAGES = Organizations(PipelineStage)
PRODUCTS = Organizations(Product)
SEGMENTS = Organizations(Segment)
CAMPAIGNS = Organizations(Campaign)
ORGANIZATION = OwnOrganization()
ACTIVITIES = OfDeals(Activity, ((LEAD, "lead_id"), (OPPORTUNITY, "opportunity_id")), alone=True)
COMMENTS = OfDeals(Comment, ((LEAD, "lead_id"), (OPPORTUNITY, "opportunity_id")))
LINE_ITEMS = OfDeals(
    LineItem, ((OPPORTUNITY, "opportunity_id"),), organization="opportunity__organization_id"
)
EVENTS = Events({**DEALS, "Account": ACCOUNTS, "Contact": CONTACTS})
NOTIFICATIONS = Own(Notification, "user_id")
MESSAGES = Own(Message, "sender_id", admins=True)
CAMPAIGN_COSTS = Through(CampaignCost, "campaign_id", CAMPAIGNS)

RULES: dict[type[Model], ReadRule] = {
    rule.model: rule
    for rule in (
        ACCOUNTS,
        CONTACTS,
        USERS,
        STAGES,
        PRODUCTS,
        SEGMENTS,
        CAMPAIGNS,
        ORGANIZATION,
        LEADS,
        OPPORTUNITIES,
        ACTIVITIES,
        COMMENTS,
        LINE_ITEMS,
        EVENTS,
        NOTIFICATIONS,
        MESSAGES,
        CAMPAIGN_COSTS,
    )
}


def organizations(model: type[Model]) -> Organizations:
    """The organization's rule of a model (the projections' relations are of these)."""
    rule = RULES.get(model)
    if not isinstance(rule, Organizations):
        raise TypeError(f"{model.__name__} is not read as the organization's alone")
    return rule


def followed_rules() -> dict[str, ReadRule]:
    """The read rule of each kind of followed record, by its type's name."""
    return EVENTS.records


def followed_rule(kind: FollowedKind[Any] | str) -> ReadRule:
    return followed_rules()[kind if isinstance(kind, str) else kind.name]


def rule_for(kind: DealKind[Any] | str) -> Deals:
    return DEALS[kind if isinstance(kind, str) else kind.name]


__all__ = ["FOLLOWED", "KINDS", "ReadRule", "sees"]
