"""Segments: saved filters over contacts (and through them accounts), run as SQL.

A filter is a tree. A node's conditions must all match; `all` and `any` combine child nodes; `not`
negates one. Every condition becomes a condition on the contact's own columns or a subquery
(`account_id IN (...)`, `id IN (...)`), and a negation is `id NOT IN (the contacts matching the
child)`: contact ids are never null, so NOT means exactly "the others", contacts without an
account included.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from tortoise.expressions import Q, Subquery
from tortoise.functions import Sum
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from models import (
    Account,
    Contact,
    ContactTag,
    LifecycleStage,
    LineItem,
    Opportunity,
    OpportunityStatus,
    Organization,
    Product,
    Role,
    Segment,
    User,
)
from resolvers import validation
from resolvers.contact import clean_tags
from resolvers.context import RequestContext
from resolvers.errors import bad_input, conflict, forbidden, not_found
from resolvers.events import camel
from resolvers.pagination import BY_ID, Page, PageRequest, paginate
from resolvers.product import period_bounds
from resolvers.records import require_unique, scoped

MAX_DEPTH = 6
MAX_CONDITIONS = 200  # conditions and list values together
LOCATIONS = {
    "industries": "industry",
    "countries": "country",
    "regions": "region",
    "cities": "city",
}
KEYS = {
    "all",
    "any",
    "not",
    *LOCATIONS,
    "product_ids",
    "billing",
    "lifecycle_stages",
    "owner_ids",
    "tags",
    "has_email",
}


@dataclass
class Compiler:
    """Validates a filter (raising BAD_USER_INPUT naming the part at fault) and compiles it."""

    organization_id: int
    currency: str
    conditions: int = 0

    def contacts(self) -> QuerySet[Contact]:
        return Contact.filter(organization_id=self.organization_id, deleted_at__isnull=True)

    async def compile(self, node: dict[str, Any], path: str = "filter", depth: int = 1) -> Q:
        """The condition a filter puts on contacts (an empty filter: every contact)."""
        found = await self._compile(node, path, depth)
        return Q() if found is None else found

    async def _compile(self, node: dict[str, Any], path: str, depth: int) -> Q | None:
        """None stands for "no condition": every contact."""
        if depth > MAX_DEPTH:
            raise bad_input(path, f"Filters nest at most {MAX_DEPTH} levels deep.")
        unknown = set(node) - KEYS
        if unknown:
            raise bad_input(path, f"Unknown filter field(s): {', '.join(sorted(unknown))}.")
        parts: list[Q] = []
        for key, value in node.items():
            if value is None:
                continue
            where = f"{path}.{camel(key)}"
            self.conditions += len(value) if isinstance(value, list) else 1
            if self.conditions > MAX_CONDITIONS:
                raise bad_input(
                    where, f"A filter has at most {MAX_CONDITIONS} conditions and values."
                )
            part = await self._condition(key, value, where, depth)
            if part is not None:
                parts.append(part)
        return Q(*parts) if parts else None

    async def _condition(self, key: str, value: Any, path: str, depth: int) -> Q | None:
        if key in ("all", "any"):
            if not value:
                raise bad_input(path, f"{path} needs at least one filter.")
            children = [
                await self._compile(child, f"{path}[{index}]", depth + 1)
                for index, child in enumerate(value)
            ]
            if key == "all":
                kept = [child for child in children if child is not None]
                return Q(*kept) if kept else None
            if any(child is None for child in children):
                return None  # one alternative selects everyone
            return Q(*[child for child in children if child is not None], join_type="OR")
        if key == "not":
            inner = await self._compile(value, path, depth + 1)
            if inner is None:
                return Q(id__isnull=True)  # not everyone: no one
            return ~Q(id__in=Subquery(self.contacts().filter(inner).values("id")))
        if key in LOCATIONS:
            names = [validation.single_line(name, path, max_length=100) for name in value]
            if not names:
                raise bad_input(path, f"{path} needs at least one value.")
            column = LOCATIONS[key]
            matching = Q(*[Q(**{f"{column}__iexact": name}) for name in names], join_type="OR")
            return Q(account_id__in=Subquery(self._accounts().filter(matching).values("id")))
        if key == "product_ids":
            return await self._products(value, path)
        if key == "billing":
            return self._billing(value, path)
        if key == "lifecycle_stages":
            stages = [LifecycleStage(stage) for stage in value]
            if not stages:
                raise bad_input(path, f"{path} needs at least one value.")
            return Q(lifecycle_stage__in=stages)
        if key == "owner_ids":
            owners = [_pk(owner, path, "User") for owner in value]
            found = await User.filter(id__in=owners, organization_id=self.organization_id).count()
            if not owners or found != len(set(owners)):
                raise bad_input(path, "No user with one of these ids.")
            return Q(owner_id__in=owners)
        if key == "tags":
            tags = clean_tags(value, path)
            if not tags:
                raise bad_input(path, f"{path} needs at least one tag.")
            tagged = ContactTag.filter(tag__in=tags, contact__organization_id=self.organization_id)
            return Q(id__in=Subquery(tagged.values("contact_id")))
        assert key == "has_email"
        if not isinstance(value, bool):
            raise bad_input(path, f"{path} is true or false.")
        return Q(email__isnull=not value)

    def _accounts(self) -> QuerySet[Account]:
        return Account.filter(organization_id=self.organization_id, deleted_at__isnull=True)

    def _won(self) -> QuerySet[Opportunity]:
        return Opportunity.filter(
            organization_id=self.organization_id,
            status=OpportunityStatus.WON,
            deleted_at__isnull=True,
        )

    async def _products(self, value: list[str], path: str) -> Q:
        ids = [_pk(product, path, "Product") for product in value]
        found = await Product.filter(id__in=ids, organization_id=self.organization_id).count()
        if not ids or found != len(set(ids)):
            raise bad_input(path, "No product with one of these ids.")
        lines = LineItem.filter(product_id__in=ids).values("opportunity_id")
        won = self._won().filter(id__in=Subquery(lines))
        return Q(account_id__in=Subquery(won.values("account_id")))

    def _billing(self, value: dict[str, Any], path: str) -> Q:
        """Accounts whose won amount (in the organization's currency, won between since and
        until) is within [min, max]; with no min (or 0), accounts that won nothing too."""
        unknown = set(value) - {"min", "max", "since", "until"}
        if unknown:
            raise bad_input(path, f"Unknown billing field(s): {', '.join(sorted(unknown))}.")
        low = _money(value.get("min"), f"{path}.min")
        high = _money(value.get("max"), f"{path}.max")
        if low is not None and high is not None and low > high:
            raise bad_input(f"{path}.max", "max must not be below min.")
        since = _day(value.get("since"), f"{path}.since")
        until = _day(value.get("until"), f"{path}.until")
        bounds = period_bounds(since, until, f"{path}.")
        assert bounds is not None
        won = self._won().filter(
            currency=self.currency, closed_at__gte=bounds[0], closed_at__lt=bounds[1]
        )
        totals = won.annotate(total=Sum("amount_cents")).group_by("account_id")
        if low:
            totals = totals.filter(total__gte=low)
        if high is not None:
            totals = totals.filter(total__lte=high)
        within = Q(account_id__in=Subquery(totals.values("account_id")))
        if low:
            return within
        winners = Subquery(won.values("account_id"))
        nothing = self._accounts().filter(~Q(id__in=winners)).values("id")
        return within | Q(account_id__in=Subquery(nothing))


def _pk(value: str, path: str, type_name: str) -> int:
    from schema.base import pk_of  # the global id format belongs to the schema

    return pk_of(value, path, type_name)


def _money(value: Any, path: str) -> int | None:
    if value is None:
        return None
    try:
        return validation.amount_cents(Decimal(str(value)), path)
    except InvalidOperation:
        raise bad_input(path, f"{path} is not a valid amount.") from None


def _day(value: Any, path: str) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise bad_input(path, f"{path} is a date like 2026-11-23.") from None


def plain(node: dict[str, Any]) -> dict[str, Any]:
    """A filter as stored and shown: camelCase keys, no nulls, dates and amounts as strings."""
    shown: dict[str, Any] = {}
    for key, value in node.items():
        if value is None:
            continue
        if key in ("all", "any"):
            value = [plain(child) for child in value]
        elif key in ("not", "billing"):
            value = plain(value)
        elif isinstance(value, date | Decimal):
            value = str(value)
        elif isinstance(value, list):
            value = [getattr(item, "value", item) for item in value]
        shown[camel(key)] = value
    return shown


def _snake(node: dict[str, Any]) -> dict[str, Any]:
    """The stored (camelCase) form back to the compiler's keys."""
    result: dict[str, Any] = {}
    for key, value in node.items():
        name = "".join(f"_{c.lower()}" if c.isupper() else c for c in key)
        if name in ("all", "any"):
            value = [_snake(child) for child in value]
        elif name in ("not",):
            value = _snake(value)
        result[name] = value
    return result


async def compiler_for(ctx: RequestContext) -> Compiler:
    viewer = ctx.require_viewer()
    organization = await Organization.get(id=viewer.organization_id)
    return Compiler(viewer.organization_id, organization.currency)


async def matching(ctx: RequestContext, conditions: dict[str, Any]) -> QuerySet[Contact]:
    """The live contacts a filter (in its stored form) selects."""
    compiler = await compiler_for(ctx)
    return compiler.contacts().filter(await compiler.compile(_snake(conditions)))


# Saved segments


def require_editor(ctx: RequestContext) -> None:
    if ctx.require_viewer().role == Role.SELLER:
        raise forbidden("Admins and sales managers manage segments.")


async def _clean(ctx: RequestContext, values: dict[str, Any], row: Segment | None) -> dict:
    cleaned: dict[str, Any] = {}
    if "name" in values:
        cleaned["name"] = validation.text(values["name"] or "", "name")
        own_id = row.id if row else None
        await require_unique(ctx, Segment, "name", cleaned["name"], own_id, "segment")
    if "description" in values:
        cleaned["description"] = validation.optional_text(
            values["description"], "description", max_length=2000
        )
    if "filter" in values:
        if values["filter"] is None:
            raise bad_input("filter", "A segment has a filter (an empty one selects everyone).")
        stored = plain(values["filter"])
        await matching(ctx, stored)  # validates it
        cleaned["conditions"] = stored
    return cleaned


async def create_segment(ctx: RequestContext, values: dict[str, Any]) -> Segment:
    require_editor(ctx)
    viewer = ctx.require_viewer()
    async with in_transaction():
        # The organization's row lock: names stay unique (case aside) under concurrent creates.
        await Organization.filter(id=viewer.organization_id).select_for_update().first()
        cleaned = await _clean(ctx, {"filter": {}, **values}, None)
        return await Segment.create(
            organization_id=viewer.organization_id, owner_id=viewer.id, **cleaned
        )


async def get_segment(ctx: RequestContext, segment_id: int) -> Segment:
    row = await scoped(ctx, Segment).filter(id=segment_id).first()
    if row is None:
        raise not_found("segment")
    return row


async def update_segment(ctx: RequestContext, segment_id: int, values: dict[str, Any]) -> Segment:
    require_editor(ctx)
    async with in_transaction():
        row = await get_segment(ctx, segment_id)
        cleaned = await _clean(ctx, values, row)
        row.update_from_dict(cleaned)
        await row.save()
        return row


async def delete_segment(ctx: RequestContext, segment_id: int) -> Segment:
    require_editor(ctx)
    async with in_transaction():
        row = await get_segment(ctx, segment_id)
        from models import Campaign

        if await Campaign.filter(segment_id=row.id).exists():
            raise conflict("Campaigns use this segment: it cannot be deleted.")
        await row.delete()
        return row


async def list_segments(
    ctx: RequestContext, page: PageRequest, updated_since: datetime | None = None
) -> Page[Segment]:
    query = scoped(ctx, Segment)
    if updated_since is not None:
        query = query.filter(updated_at__gte=updated_since)
    return await paginate(query, page, BY_ID)


async def members(
    ctx: RequestContext, conditions: dict[str, Any], page: PageRequest
) -> Page[Contact]:
    return await paginate(await matching(ctx, conditions), page, BY_ID)
