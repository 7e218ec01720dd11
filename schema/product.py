"""The product catalogue, opportunities' line items, and billing."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry import UNSET, relay

from models import LineItem as LineItemRow
from models import Opportunity as OpportunityRow
from models import Product as ProductRow
from models.base import from_cents
from resolvers import access
from resolvers import product as products
from schema.base import (
    Connection,
    Info,
    connection,
    context,
    filter_values,
    page_request,
    pk_of,
    values_of,
)
from schema.records import Declared, column, declared, record

if TYPE_CHECKING:
    from schema.opportunity import Opportunity


def percent(basis_points: int) -> Decimal:
    """Basis points (1250) as a percent with two decimals (12.50)."""
    return (Decimal(basis_points) / 100).quantize(Decimal("0.01"))


@record(ProductRow, read=access.PRODUCTS)
@strawberry.type(description="Something the organization sells.")
class Product(relay.Node, Declared):
    id: relay.NodeID[int]
    name: str
    code: str = strawberry.field(description="Unique in the organization (case-insensitively).")
    category: str | None
    unit_price: Decimal = column(
        source="unit_price_cents", convert=from_cents, description="List price, in `currency`."
    )
    currency: str
    active: bool = strawberry.field(
        description="Inactive products cannot be added to opportunities; lines keep them."
    )
    created_at: datetime
    updated_at: datetime


async def load_products(info: Info, ids: list[int]) -> list[Product]:
    rows = await context(info).loaders.product.load_many(ids)
    return [Product.from_row(row) for row in rows if row is not None]


async def products_used_by(info: Info, field: str, owner_id: int) -> list[Product]:
    """The products on the won opportunities, among those the viewer may read, of an account
    (field "account_id") or a primary contact ("contact_id")."""
    ctx = context(info)
    won = await products.won_opportunities(ctx)
    return await load_products(info, await ctx.loaders.products_used(field, won).load(owner_id))


@record(LineItemRow, read=access.LINE_ITEMS)
@strawberry.type(
    description="A product on an opportunity: quantity x unit price, less the discount. An "
    "opportunity with line items is worth their total."
)
class LineItem(relay.Node, Declared):
    id: relay.NodeID[int]
    quantity: int
    unit_price: Decimal = column(
        source="unit_price_cents", convert=from_cents, description="In the opportunity's currency."
    )
    discount: Decimal = column(
        source="discount_basis_points", convert=percent, description="Percent off, 0 to 100."
    )
    total: Decimal = column(
        source="total_cents",
        convert=from_cents,
        description="quantity x unitPrice x (1 - discount / 100), to the cent (half to even).",
    )
    product_id: strawberry.Private[int]

    @strawberry.field(description="What is sold.")
    async def product(self, info: Info) -> Product:
        row = await context(info).loaders.product.load(self.product_id)
        assert row is not None, "products on line items are never deleted"
        return Product.from_row(row)


@strawberry.type(description="What an account or contact paid: won amounts in one currency.")
class Billing:
    currency: str
    amount: Decimal = strawberry.field(description="Sum of the won opportunities' amounts.")
    count: int = strawberry.field(description="How many opportunities were won.")


async def billing_of(
    info: Info, field: str, owner_id: int, since: date | None, until: date | None
) -> list[Billing]:
    rows = await products.billing(context(info), field, owner_id, since, until)
    return [
        Billing(currency=currency, amount=from_cents(cents), count=count)  # type: ignore[arg-type]
        for currency, cents, count in rows
    ]


BILLING_HELP = (
    "Won amounts, one entry per currency, of the opportunities won between since and until "
    "(UTC days, both included; open-ended when omitted)."
)


@strawberry.input(description="Filters on products; all given ones must match.")
class ProductFilter:
    search: str | None = strawberry.field(default=None, description="Words in the name or code.")
    categories: list[str] | None = None
    active: bool | None = None
    updated_since: datetime | None = strawberry.field(
        default=None, description="Changed at or after this time."
    )


@strawberry.input(description="A new product (admins and sales managers).")
class CreateProductInput:
    name: str
    code: str
    unit_price: Decimal
    category: str | None = None
    currency: str | None = strawberry.field(
        default=None, description="Default: the organization's currency."
    )


@strawberry.input(description="Changes to a product; omitted fields stay as they are.")
class UpdateProductInput:
    id: strawberry.ID
    name: str | None = UNSET
    code: str | None = UNSET
    category: str | None = UNSET
    unit_price: Decimal | None = strawberry.field(
        default=UNSET, description="The default for lines added from now on; lines keep theirs."
    )
    currency: str | None = UNSET
    active: bool | None = UNSET


@strawberry.input(description="A product added to an opportunity.")
class AddLineItemInput:
    opportunity_id: strawberry.ID
    product_id: strawberry.ID
    quantity: int = 1
    unit_price: Decimal | None = strawberry.field(
        default=None,
        description="Default: the product's price, when it is in the opportunity's currency "
        "(else it is required).",
    )
    discount: Decimal | None = strawberry.field(
        default=None, description="Percent off, 0 to 100, two decimals at most."
    )


@strawberry.input(description="Changes to a line item; omitted fields stay as they are.")
class UpdateLineItemInput:
    id: strawberry.ID
    quantity: int | None = UNSET
    unit_price: Decimal | None = UNSET
    discount: Decimal | None = UNSET


OpportunityRef = Annotated["Opportunity", strawberry.lazy("schema.opportunity")]


@strawberry.type(description="A line item change: the line, and the opportunity it repriced.")
class LineItemChange:
    line_item: LineItem | None = strawberry.field(description="Null once removed.")
    opportunity: OpportunityRef


@strawberry.type
class ProductQueries:
    @strawberry.field(description="The product catalogue, by name.")
    async def products(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: ProductFilter | None = None,
    ) -> Connection[Product]:
        filters = filter_values(filter)
        page = await products.list_products(
            context(info), page_request(info, first, after, last, before), filters
        )
        return connection(page, Product.from_row)


def _change(line: LineItemRow | None, opportunity: OpportunityRow) -> LineItemChange:
    return LineItemChange(
        line_item=None if line is None else LineItem.from_row(line),
        opportunity=declared(OpportunityRow).make(opportunity),
    )


@strawberry.type
class ProductMutations:
    @strawberry.mutation(description="Add a product to the catalogue (admins, sales managers).")
    async def create_product(self, info: Info, input: CreateProductInput) -> Product:
        row = await products.create_product(context(info), values_of(input))
        return Product.from_row(row)

    @strawberry.mutation(
        description="Change a product (admins, sales managers); `active: false` stops selling it."
    )
    async def update_product(self, info: Info, input: UpdateProductInput) -> Product:
        values = values_of(input)
        product_id = pk_of(values.pop("id"), "id", "Product")
        return Product.from_row(await products.update_product(context(info), product_id, values))

    @strawberry.mutation(
        description="Add a product to an opportunity (its editors); the opportunity's amount "
        "becomes its lines' total."
    )
    async def add_line_item(self, info: Info, input: AddLineItemInput) -> LineItemChange:
        values = values_of(input, {"product_id": ("productId", "Product")})
        opportunity_id = pk_of(values.pop("opportunity_id"), "opportunityId", "Opportunity")
        line, row = await products.add_line_item(context(info), opportunity_id, values)
        return _change(line, row)

    @strawberry.mutation(description="Change a line item's quantity, price or discount.")
    async def update_line_item(self, info: Info, input: UpdateLineItemInput) -> LineItemChange:
        values = values_of(input)
        line_id = pk_of(values.pop("id"), "id", "LineItem")
        line, row = await products.update_line_item(context(info), line_id, values)
        return _change(line, row)

    @strawberry.mutation(
        description="Remove a line item. The opportunity's amount becomes the remaining lines' "
        "total; after the last one it keeps that amount and can be edited again."
    )
    async def remove_line_item(self, info: Info, id: strawberry.ID) -> LineItemChange:
        row = await products.remove_line_item(context(info), pk_of(id, "id", "LineItem"))
        return _change(None, row)
