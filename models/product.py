"""The product catalogue, and the line items that price an opportunity."""

from __future__ import annotations

from tortoise import fields

from models.base import TimestampedModel
from models.deal import Opportunity
from models.organization import Organization


class Product(TimestampedModel):
    """Something the organization sells. Inactive products stay on the lines that use them."""

    id = fields.IntField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="products", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    code = fields.CharField(max_length=50)  # unique in the organization, case-insensitively
    category = fields.CharField(max_length=100, null=True)
    unit_price_cents = fields.BigIntField()
    currency = fields.CharField(max_length=3)
    active = fields.BooleanField(default=True)

    organization_id: int

    class Meta:
        table = "product"
        unique_together = (("organization", "code"),)
        indexes = (("organization_id", "name", "id"), ("organization_id", "updated_at", "id"))

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class LineItem(TimestampedModel):
    """A product on an opportunity: quantity x unit price, less a discount."""

    id = fields.IntField(primary_key=True)
    opportunity: fields.ForeignKeyRelation[Opportunity] = fields.ForeignKeyField(
        "models.Opportunity", related_name="line_items", on_delete=fields.CASCADE
    )
    product: fields.ForeignKeyRelation[Product] = fields.ForeignKeyField(
        "models.Product", related_name="line_items", on_delete=fields.RESTRICT
    )
    quantity = fields.IntField()
    unit_price_cents = fields.BigIntField()  # in the opportunity's currency
    discount_basis_points = fields.IntField(default=0)  # 1250 is 12.50 percent
    total_cents = fields.BigIntField()  # quantity x unit price x (1 - discount), half-even

    opportunity_id: int
    product_id: int

    class Meta:
        table = "line_item"
        indexes = (("opportunity_id", "id"), ("product_id", "opportunity_id"))

    def __str__(self) -> str:
        return f"{self.quantity} x product {self.product_id} on opportunity {self.opportunity_id}"
