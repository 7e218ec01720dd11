"""Who may read or change what. One check per record kind; every rule is tested."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tortoise.expressions import Q, Subquery

from models import Role, User, Visibility
from models.deal import Deal
from resolvers.context import RequestContext
from resolvers.deal_kinds import DealKind
from resolvers.errors import bad_input, forbidden
from resolvers.loaders import select_values


def reporting_lines(managers: Iterable[tuple[int, int | None]]) -> dict[int, list[int]]:
    """Manager id -> direct reports, from (user id, manager id) pairs."""
    reports: dict[int, list[int]] = {}
    for member_id, manager_id in managers:
        if manager_id is not None:
            reports.setdefault(manager_id, []).append(member_id)
    return reports


def reports_of(user_id: int, lines: dict[int, list[int]]) -> set[int]:
    """The ids of a user's reports, direct and indirect (see reporting_lines)."""
    team: set[int] = set()
    pending = list(lines.get(user_id, []))
    while pending:
        member = pending.pop()
        if member not in team and member != user_id:
            team.add(member)
            pending.extend(lines.get(member, []))
    return team


async def team_ids(ctx: RequestContext) -> set[int]:
    """The ids of the viewer's reports, direct and indirect (one query, cached per request)."""
    if ctx.team_ids is None:
        viewer = ctx.require_viewer()
        rows = await select_values(
            User, ["id", "manager_id"], organization_id=viewer.organization_id
        )
        ctx.team_ids = reports_of(viewer.id, reporting_lines(rows))
    return ctx.team_ids


async def manages_owner(ctx: RequestContext, owner_id: int) -> bool:
    """True for admins, the owner and the owner's managers up the chain."""
    viewer = ctx.require_viewer()
    if viewer.role == Role.ADMIN or owner_id == viewer.id:
        return True
    return owner_id in await team_ids(ctx)


def sees_deal(viewer: User, team: set[int], deal: Deal, is_follower: bool) -> bool:
    """The read rule for a lead or opportunity, deletion aside: the whole organization sees it
    unless it is private; a private one is seen by admins, its owner and the owner's managers,
    and its followers. `team` is the viewer's reports (see reports_of)."""
    if deal.organization_id != viewer.organization_id:
        return False
    return (
        deal.visibility == Visibility.ORGANIZATION
        or viewer.role == Role.ADMIN
        or deal.owner_id == viewer.id
        or deal.owner_id in team
        or is_follower
    )


async def can_read_deal(ctx: RequestContext, kind: DealKind[Any], deal: Deal) -> bool:
    viewer = ctx.require_viewer()
    if deal.deleted_at is not None:
        return False
    # The team is looked up only where it decides.
    needs_team = deal.visibility != Visibility.ORGANIZATION and viewer.role != Role.ADMIN
    team = await team_ids(ctx) if needs_team else set()
    if sees_deal(viewer, team, deal, is_follower=False):
        return True
    if deal.organization_id != viewer.organization_id:
        return False
    followers = await ctx.loaders.follower_ids(kind).load(deal.id)
    return viewer.id in followers


async def user_reads_deal(user: User, kind: DealKind[Any], deal: Deal) -> bool:
    """can_read_deal for a user other than the viewer (say, an owner being assigned)."""
    team: set[int] = set()
    if deal.visibility != Visibility.ORGANIZATION and user.role != Role.ADMIN:
        pairs = await User.filter(organization_id=user.organization_id).values_list(
            "id", "manager_id"
        )
        team = reports_of(user.id, reporting_lines(pairs))
    follows = await kind.follower.filter(record_id=deal.id, user_id=user.id).exists()
    return deal.deleted_at is None and sees_deal(user, team, deal, follows)


async def readable_deals_filter(ctx: RequestContext, kind: DealKind[Any]) -> Q | None:
    """The SQL condition a list of leads or opportunities is filtered by (None: no filter)."""
    viewer = ctx.require_viewer()
    if viewer.role == Role.ADMIN:
        return None
    followed = Subquery(kind.follower.filter(user_id=viewer.id).values("record_id"))
    return (
        Q(visibility=Visibility.ORGANIZATION)
        | Q(owner_id__in=[viewer.id, *await team_ids(ctx)])
        | Q(id__in=followed)
    )


async def require_edit(ctx: RequestContext, owner_id: int, what: str) -> None:
    if not await manages_owner(ctx, owner_id):
        raise forbidden(f"Only admins, the owner and the owner's managers may change this {what}.")


async def check_assignable(ctx: RequestContext, new_owner: User, field: str = "ownerId") -> None:
    """Sellers keep records to themselves; managers assign within their team; admins to anyone."""
    viewer = ctx.require_viewer()
    if new_owner.organization_id != viewer.organization_id:
        raise bad_input(field, "No user with this id.")
    if not new_owner.is_active:
        raise bad_input(field, "Records cannot be assigned to a deactivated user.")
    if viewer.role == Role.ADMIN or new_owner.id == viewer.id:
        return
    if viewer.role == Role.SELLER:
        raise forbidden("Sellers cannot assign records to other users.")
    if new_owner.id not in await team_ids(ctx):
        raise forbidden("Sales managers can assign records only within their team.")


def require_admin(ctx: RequestContext) -> User:
    viewer = ctx.require_viewer()
    if viewer.role != Role.ADMIN:
        raise forbidden("Only admins may do this.")
    return viewer
