"""The product catalogue, opportunities' line items, and what accounts and contacts use and pay."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from tortoise.functions import Count, Sum
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from models import (
    EventKind,
    LineItem,
    Opportunity,
    OpportunityStatus,
    Organization,
    Product,
    Role,
)
from resolvers import validation
from resolvers.access import OPPORTUNITIES
from resolvers.context import RequestContext
from resolvers.deal import get_editable, save_versioned, touch
from resolvers.deal_kinds import OPPORTUNITY
from resolvers.errors import bad_input, forbidden, not_found
from resolvers.events import record_event
from resolvers.pagination import Page, PageRequest, SortKey, paginate, search_condition
from resolvers.records import referenced, require_unique, scoped

MAX_QUANTITY = 1_000_000
BASIS = 10_000  # basis points in 100 percent

# Catalogue


def _require_catalogue_editor(ctx: RequestContext) -> None:
    if ctx.require_viewer().role == Role.SELLER:
        raise forbidden("Admins and sales managers manage the product catalogue.")


async def _clean_product(
    ctx: RequestContext, values: dict[str, Any], row: Product | None
) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    if "name" in values:
        cleaned["name"] = validation.text(values["name"] or "", "name")
    if "code" in values:
        cleaned["code"] = validation.single_line(values["code"] or "", "code", max_length=50)
        await require_unique(
            ctx, Product, "code", cleaned["code"], row.id if row else None, "product"
        )
    if "category" in values:
        cleaned["category"] = validation.optional_text(
            values["category"], "category", max_length=100
        )
    if "unit_price" in values:
        if values["unit_price"] is None:
            raise bad_input("unitPrice", "unitPrice must not be null.")
        cleaned["unit_price_cents"] = validation.amount_cents(values["unit_price"], "unitPrice")
    if "currency" in values:
        cleaned["currency"] = validation.currency(values["currency"] or "")
    if values.get("active") is not None:
        cleaned["active"] = values["active"]
    return cleaned


async def create_product(ctx: RequestContext, values: dict[str, Any]) -> Product:
    _require_catalogue_editor(ctx)
    viewer = ctx.require_viewer()
    if not values.get("currency"):
        organization = await Organization.get(id=viewer.organization_id)
        values = {**values, "currency": organization.currency}
    async with in_transaction():
        # The organization's row lock: codes stay unique (case aside) under concurrent creates.
        await Organization.filter(id=viewer.organization_id).select_for_update().first()
        cleaned = await _clean_product(ctx, values, None)
        return await Product.create(organization_id=viewer.organization_id, **cleaned)


async def update_product(ctx: RequestContext, product_id: int, values: dict[str, Any]) -> Product:
    _require_catalogue_editor(ctx)
    async with in_transaction():
        row = await scoped(ctx, Product).filter(id=product_id).select_for_update().first()
        if row is None:
            raise not_found("product")
        cleaned = await _clean_product(ctx, values, row)
        row.update_from_dict(cleaned)
        await row.save()
        return row


async def get_product(ctx: RequestContext, product_id: int) -> Product:
    row = await scoped(ctx, Product).filter(id=product_id).first()
    if row is None:
        raise not_found("product")
    return row


PRODUCT_ORDER = SortKey("NAME", "name")


async def list_products(
    ctx: RequestContext, page: PageRequest, filters: dict[str, Any]
) -> Page[Product]:
    query = scoped(ctx, Product)
    if filters.get("search"):
        query = query.filter(search_condition(filters["search"], ["name", "code"]))
    if filters.get("categories"):
        query = query.filter(category__in=filters["categories"])
    if filters.get("active") is not None:
        query = query.filter(active=filters["active"])
    if filters.get("updated_since") is not None:
        query = query.filter(updated_at__gte=filters["updated_since"])
    return await paginate(query, page, PRODUCT_ORDER)


# Line items


def discount_basis_points(value: Decimal | None) -> int:
    if value is None:
        return 0
    try:
        if not value.is_finite() or not 0 <= value <= 100:
            raise bad_input("discount", "discount is a percent between 0 and 100.")
        if value != value.quantize(Decimal("0.01")):
            raise bad_input("discount", "discount has at most two decimal places.")
    except InvalidOperation:
        raise bad_input("discount", "discount is not a valid percent.") from None
    return int(value * 100)


def line_total(quantity: int, unit_price_cents: int, discount_bp: int) -> int:
    """quantity x unit price x (1 - discount), to the cent, half to even; at most the largest
    amount the API takes (BAD_USER_INPUT on quantity beyond)."""
    exact = Decimal(quantity * unit_price_cents * (BASIS - discount_bp)) / BASIS
    total = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    if total > validation.MAX_AMOUNT * 100:
        raise bad_input("quantity", f"A line's total must be at most {validation.MAX_AMOUNT}.")
    return total


def _quantity(value: Any) -> int:
    if value is None or not 1 <= value <= MAX_QUANTITY:
        raise bad_input("quantity", f"quantity is a whole number from 1 to {MAX_QUANTITY}.")
    return int(value)


def _describe_line(line: LineItem) -> dict[str, Any]:
    return {
        "line_item_id": line.id,
        "product_id": line.product_id,
        "quantity": line.quantity,
        "unit_price_cents": line.unit_price_cents,
        "discount_basis_points": line.discount_basis_points,
        "total_cents": line.total_cents,
    }


async def _reprice(
    ctx: RequestContext, row: Opportunity, kind: EventKind, line: LineItem
) -> Opportunity:
    """The opportunity's amount becomes its lines' total; the change is one event."""
    totals: list[int] = await LineItem.filter(opportunity_id=row.id).values_list(
        "total_cents", flat=True
    )  # type: ignore[assignment]
    details = {"line_item": _describe_line(line)}
    amount = sum(totals) if totals else row.amount_cents
    if amount > validation.MAX_AMOUNT * 100:
        raise bad_input("quantity", "The opportunity's total would be too large.")
    if amount != row.amount_cents:
        return await save_versioned(
            ctx, OPPORTUNITY, row, {"amount_cents": amount}, None, event_kind=kind, details=details
        )
    await touch(ctx, OPPORTUNITY, row)
    await record_event(ctx, OPPORTUNITY, row.id, kind, details=details)
    return row


async def add_line_item(
    ctx: RequestContext, opportunity_id: int, values: dict[str, Any]
) -> tuple[LineItem, Opportunity]:
    quantity = _quantity(values.get("quantity"))
    discount = discount_basis_points(values.get("discount"))
    async with in_transaction():
        row = await get_editable(ctx, OPPORTUNITY, opportunity_id, lock=True, field="opportunityId")
        product = await referenced(ctx, Product, values["product_id"], "productId", "product")
        if not product.active:
            raise bad_input("productId", "This product is no longer sold (inactive).")
        unit = _unit_price(values.get("unit_price"), product, row)
        line = await LineItem.create(
            opportunity_id=row.id,
            product_id=product.id,
            quantity=quantity,
            unit_price_cents=unit,
            discount_basis_points=discount,
            total_cents=line_total(quantity, unit, discount),
        )
        row = await _reprice(ctx, row, EventKind.LINE_ITEM_ADDED, line)
        return line, row


def _unit_price(value: Decimal | None, product: Product, row: Opportunity) -> int:
    if value is not None:
        return validation.amount_cents(value, "unitPrice")
    if product.currency != row.currency:
        raise bad_input(
            "unitPrice",
            f"The product is priced in {product.currency} and the opportunity is in "
            f"{row.currency}: give the unit price in {row.currency}.",
        )
    return product.unit_price_cents


async def _editable_line(ctx: RequestContext, line_id: int) -> tuple[LineItem, Opportunity]:
    """The line and its opportunity, locked, if the viewer may change that opportunity."""
    organization_id = ctx.require_viewer().organization_id
    line = await LineItem.filter(id=line_id, opportunity__organization_id=organization_id).first()
    if line is None:
        raise not_found("line item")
    row = await get_editable(ctx, OPPORTUNITY, line.opportunity_id, lock=True, field="id")
    return line, row


async def update_line_item(
    ctx: RequestContext, line_id: int, values: dict[str, Any]
) -> tuple[LineItem, Opportunity]:
    async with in_transaction():
        line, row = await _editable_line(ctx, line_id)
        if "quantity" in values:
            line.quantity = _quantity(values["quantity"])
        if "discount" in values:
            line.discount_basis_points = discount_basis_points(values["discount"])
        if "unit_price" in values:
            if values["unit_price"] is None:
                raise bad_input("unitPrice", "unitPrice must not be null.")
            line.unit_price_cents = validation.amount_cents(values["unit_price"], "unitPrice")
        line.total_cents = line_total(
            line.quantity, line.unit_price_cents, line.discount_basis_points
        )
        await line.save()
        row = await _reprice(ctx, row, EventKind.LINE_ITEM_CHANGED, line)
        return line, row


async def remove_line_item(ctx: RequestContext, line_id: int) -> Opportunity:
    async with in_transaction():
        line, row = await _editable_line(ctx, line_id)
        await line.delete()
        return await _reprice(ctx, row, EventKind.LINE_ITEM_REMOVED, line)


async def has_line_items(opportunity_id: int) -> bool:
    return await LineItem.filter(opportunity_id=opportunity_id).exists()


# What accounts and contacts use and pay: from their won opportunities


async def won_opportunities(ctx: RequestContext) -> QuerySet[Opportunity]:
    """The won opportunities the viewer may read: billing never shows a private deal's amount
    to someone who may not read it."""
    return (await OPPORTUNITIES.query(ctx)).filter(status=OpportunityStatus.WON)


def period_bounds(
    since: date | None, until: date | None, path: str = ""
) -> tuple[datetime, datetime] | None:
    if since is not None:
        validation.close_date(since, f"{path}since")
    if until is not None:
        validation.close_date(until, f"{path}until")
    if since is not None and until is not None and since > until:
        raise bad_input(f"{path}until", "until must not be before since.")
    start = datetime.combine(since or date(2000, 1, 1), time(), tzinfo=UTC)
    end = datetime.combine((until or date(2199, 12, 31)) + timedelta(days=1), time(), tzinfo=UTC)
    return start, end


async def billing(
    ctx: RequestContext, field: str, owner_id: int, since: date | None, until: date | None
) -> list[tuple[str, int, int]]:
    """(currency, won cents, count) of an account's or contact's won opportunities, won between
    since and until (UTC days, both included), one entry per currency."""
    bounds = period_bounds(since, until)
    assert bounds is not None
    won = await won_opportunities(ctx)
    rows = await (
        won.filter(**{field: owner_id}, closed_at__gte=bounds[0], closed_at__lt=bounds[1])
        .annotate(total=Sum("amount_cents"), count=Count("id"))
        .group_by("currency")
        .order_by("currency")
        .values_list("currency", "total", "count")
    )
    return [(currency, int(total or 0), int(count)) for currency, total, count in rows]
