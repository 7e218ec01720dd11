"""Users of an organization: admins create and manage them."""

from __future__ import annotations

from typing import Any

from tortoise.transactions import in_transaction

from models import Organization, Role, User
from resolvers import validation
from resolvers.auth import hash_password, revoke_all_tokens
from resolvers.context import RequestContext
from resolvers.errors import bad_input, conflict
from resolvers.pagination import BY_ID, Page, PageRequest, SortKey, paginate, search_condition
from resolvers.permissions import require_admin
from resolvers.records import get_or_not_found, referenced_user, scoped

USER_ORDER = {
    "CREATED_AT": BY_ID,
    "NAME": SortKey("NAME", "full_name"),
    "EMAIL": SortKey("EMAIL", "email"),
}


async def list_users(
    ctx: RequestContext, page: PageRequest, filters: dict[str, Any], order: str, descending: bool
) -> Page[User]:
    query = scoped(ctx, User)
    if filters.get("search"):
        query = query.filter(search_condition(filters["search"], ["full_name", "email"]))
    if filters.get("roles"):
        query = query.filter(role__in=filters["roles"])
    if filters.get("is_active") is not None:
        query = query.filter(is_active=filters["is_active"])
    if filters.get("manager_id") is not None:
        query = query.filter(manager_id=filters["manager_id"])
    if filters.get("updated_since") is not None:
        query = query.filter(updated_at__gte=filters["updated_since"])
    return await paginate(query, page, USER_ORDER[order], descending=descending)


async def _check_manager(ctx: RequestContext, manager_id: int | None, user_id: int | None) -> None:
    if manager_id is None:
        return
    manager = await referenced_user(ctx, manager_id, "managerId")
    if manager.role == Role.SELLER:
        raise bad_input("managerId", "A manager must be a sales manager or an admin.")
    # Walk up from the new manager: meeting the user again would make a reporting cycle.
    seen: set[int] = set()
    current: User | None = manager
    while current is not None and current.id not in seen:
        if current.id == user_id:
            raise bad_input("managerId", "This would make a user manage themselves.")
        seen.add(current.id)
        current = await User.filter(id=current.manager_id).first() if current.manager_id else None


async def create_user(
    ctx: RequestContext,
    *,
    email: str,
    full_name: str,
    password: str,
    role: Role,
    manager_id: int | None,
) -> User:
    admin = require_admin(ctx)
    address = validation.email(email).lower()
    name = validation.single_line(full_name, "fullName")
    validation.password(password)
    await _check_manager(ctx, manager_id, None)
    password_hash = await hash_password(ctx.settings, password)
    async with in_transaction():
        if await User.filter(email=address).exists():
            raise conflict("A user with this email already exists.", field="email")
        return await User.create(
            organization_id=admin.organization_id,
            email=address,
            full_name=name,
            password_hash=password_hash,
            role=role,
            manager_id=manager_id,
        )


async def _active_admins(organization_id: int) -> int:
    return await User.filter(
        organization_id=organization_id, role=Role.ADMIN, is_active=True
    ).count()


async def update_user(ctx: RequestContext, user_id: int, changes: dict[str, Any]) -> User:
    admin = require_admin(ctx)
    async with in_transaction():
        # One user change at a time per organization: two admins deactivating or demoting each
        # other at once must not both count the other as the remaining active admin.
        await Organization.filter(id=admin.organization_id).select_for_update().first()
        user = await get_or_not_found(ctx, User, user_id, "user")
        updates: dict[str, Any] = {}
        if "full_name" in changes:
            updates["full_name"] = validation.single_line(changes["full_name"] or "", "fullName")
        if "email" in changes:
            address = validation.email(changes["email"] or "").lower()
            if address != user.email and await User.filter(email=address).exists():
                raise conflict("A user with this email already exists.", field="email")
            updates["email"] = address
        if "manager_id" in changes:
            await _check_manager(ctx, changes["manager_id"], user.id)
            updates["manager_id"] = changes["manager_id"]
        if "role" in changes and changes["role"] is not None and changes["role"] != user.role:
            new_role = changes["role"]
            if new_role == Role.SELLER and await User.filter(manager_id=user.id).exists():
                raise conflict("Reassign this user's reports before making them a seller.")
            if (
                user.role == Role.ADMIN
                and user.is_active
                and await _active_admins(admin.organization_id) <= 1
            ):
                raise conflict("An organization keeps at least one active admin.")
            updates["role"] = new_role
        if "is_active" in changes and changes["is_active"] is not None:
            if not changes["is_active"] and user.is_active:
                if user.role == Role.ADMIN and await _active_admins(admin.organization_id) <= 1:
                    raise conflict("An organization keeps at least one active admin.")
                await revoke_all_tokens(ctx, user.id)
            updates["is_active"] = changes["is_active"]
        if updates:
            user.update_from_dict(updates)
            await user.save(update_fields=[*updates, "updated_at"])
        return user


async def change_password(ctx: RequestContext, current: str, new: str) -> None:
    from resolvers.auth import verify_password

    viewer = ctx.require_viewer()
    if not await verify_password(viewer.password_hash, current):
        raise bad_input("currentPassword", "The current password is wrong.")
    validation.password(new, "newPassword")
    viewer.password_hash = await hash_password(ctx.settings, new)
    await viewer.save(update_fields=["password_hash", "updated_at"])
