"""Who may read or change what. One check per record kind; every rule is tested."""

from __future__ import annotations

from collections.abc import Iterable

from models import Role, User
from resolvers.context import RequestContext
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
    """The ids of the viewer's reports, direct and indirect (one query, cached per request;
    on PostgreSQL the session's statement read them already: resolvers/auth.py)."""
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
