"""Small shared pieces of the record resolvers: lookups scoped to the viewer's organization."""

from __future__ import annotations

from typing import TypeVar

from tortoise.models import Model

from models import Account, Contact, User
from resolvers.access import scoped
from resolvers.context import RequestContext
from resolvers.errors import bad_input, conflict, not_found

M = TypeVar("M", bound=Model)


async def require_unique(
    ctx: RequestContext, model: type[M], column: str, value: str, own_id: int | None, what: str
) -> None:
    """CONFLICT on `column` when another row of the organization has this value, case aside."""
    taken = scoped(ctx, model).filter(**{f"{column}__iexact": value})
    if own_id is not None:
        taken = taken.exclude(id=own_id)
    if await taken.exists():
        raise conflict(f"A {what} with this {column} exists already.", field=column)


async def get_or_not_found(
    ctx: RequestContext, model: type[M], record_id: int, what: str, field: str = "id"
) -> M:
    row = await scoped(ctx, model).filter(id=record_id).first()
    if row is None:
        raise not_found(what, field)
    return row


async def referenced(
    ctx: RequestContext,
    model: type[M],
    record_id: int,
    field: str,
    what: str,
    *,
    lock: bool = False,
) -> M:
    """A row named in an input (accountId, contactId...): a bad input when it is not there."""
    query = scoped(ctx, model).filter(id=record_id)
    if lock:
        query = query.select_for_update()
    row = await query.first()
    if row is None:
        raise bad_input(field, f"No {what} with this id.")
    return row


async def referenced_user(ctx: RequestContext, user_id: int, field: str) -> User:
    return await referenced(ctx, User, user_id, field, "user")


async def referenced_account(ctx: RequestContext, account_id: int, field: str) -> Account:
    return await referenced(ctx, Account, account_id, field, "account")


async def referenced_contact(ctx: RequestContext, contact_id: int, field: str) -> Contact:
    return await referenced(ctx, Contact, contact_id, field, "contact")
