"""The product catalogue, line items pricing opportunities, products used and billing, and tags."""

from __future__ import annotations

from typing import Any

from tests.helpers import Member, create_account, create_contact, create_opportunity
from tests.test_events import history
from tests.test_forecast import stages, update

CREATE = """mutation($input: CreateProductInput!) {
  createProduct(input: $input) { id name code category unitPrice currency active }
}"""
UPDATE_PRODUCT = """mutation($input: UpdateProductInput!) {
  updateProduct(input: $input) { id code unitPrice active }
}"""
PRODUCTS = """query($filter: ProductFilter) {
  products(first: 50, filter: $filter) { totalCount nodes { id code } }
}"""
LINE = "lineItem { id quantity unitPrice discount total product { id code } }"
DEAL = "opportunity { id amount version lineItems { id total } }"
ADD = (
    f"""mutation($input: AddLineItemInput!) {{ addLineItem(input: $input) {{ {LINE} {DEAL} }} }}"""
)
CHANGE = f"""mutation($input: UpdateLineItemInput!) {{
  updateLineItem(input: $input) {{ {LINE} {DEAL} }}
}}"""
REMOVE = f"""mutation($id: ID!) {{ removeLineItem(id: $id) {{ {LINE} {DEAL} }} }}"""
USED = """query($id: ID!, $since: Date, $until: Date) { node(id: $id) {
  ... on Account { productsUsed { code } billing(since: $since, until: $until) { currency amount count } }
  ... on Contact { productsUsed { code } billing(since: $since, until: $until) { currency amount count } }
} }"""  # noqa: E501
UPDATE_OPPORTUNITY = """mutation($input: UpdateOpportunityInput!) {
  updateOpportunity(input: $input) { id amount currency }
}"""


async def product(member: Member, code: str, price: str, **more: Any) -> dict[str, Any]:
    values = {"name": f"Product {code}", "code": code, "unitPrice": price, **more}
    return (await member.api.data(CREATE, input=values))["createProduct"]


async def add(member: Member, deal: dict, item: dict, **more: Any) -> dict[str, Any]:
    values = {"opportunityId": deal["id"], "productId": item["id"], **more}
    return (await member.api.data(ADD, input=values))["addLineItem"]


async def test_the_catalogue_is_kept_by_admins_and_managers(org, other_org):
    made = await product(org.manager, "CRM-PRO", "49.90", category="Software")
    assert made == {
        "id": made["id"],
        "name": "Product CRM-PRO",
        "code": "CRM-PRO",
        "category": "Software",
        "unitPrice": "49.90",
        "currency": "USD",  # the organization's
        "active": True,
    }
    await product(org.admin, "SUPPORT", "10", currency="EUR")
    error = await org.seller.api.error(CREATE, input={"name": "X", "code": "X", "unitPrice": "1"})
    assert error["extensions"]["code"] == "FORBIDDEN"
    for values, code, field in (
        ({"code": "crm-pro"}, "CONFLICT", "code"),  # codes are unique case-insensitively
        ({"code": "A\nB"}, "BAD_USER_INPUT", "code"),
        ({"unitPrice": "-1"}, "BAD_USER_INPUT", "unitPrice"),
        ({"unitPrice": "1.001"}, "BAD_USER_INPUT", "unitPrice"),
        ({"currency": "euro"}, "BAD_USER_INPUT", "currency"),
        ({"name": " "}, "BAD_USER_INPUT", "name"),
    ):
        base = {"name": "N", "code": "NEW", "unitPrice": "1"}
        error = await org.admin.api.error(CREATE, input={**base, **values})
        assert (error["extensions"]["code"], error["extensions"]["field"]) == (code, field), values

    stopped = await org.manager.api.data(UPDATE_PRODUCT, input={"id": made["id"], "active": False})
    assert stopped["updateProduct"]["active"] is False
    listed = await org.seller.api.data(PRODUCTS, filter={"active": True})
    assert [p["code"] for p in listed["products"]["nodes"]] == ["SUPPORT"]
    found = await org.seller.api.data(PRODUCTS, filter={"search": "crm"})
    assert [p["code"] for p in found["products"]["nodes"]] == ["CRM-PRO"]
    assert (await other_org.admin.api.data(PRODUCTS))["products"]["totalCount"] == 0
    error = await other_org.admin.api.error(
        "query($id: ID!) { node(id: $id) { id } }", id=made["id"]
    )
    assert error["extensions"]["code"] == "NOT_FOUND"


async def test_line_items_price_the_opportunity_exactly(org):
    licence = await product(org.admin, "LIC", "19.99")
    nickel = await product(org.admin, "NICKEL", "0.05")
    dime = await product(org.admin, "SEVEN", "0.07")
    deal = await create_opportunity(org.seller, amount="500.00", currency="USD")

    # 3 x 19.99 less 12.5% = 59.97 x 0.875 = 52.47375 -> 52.47
    first = await add(org.seller, deal, licence, quantity=3, discount="12.5")
    assert first["lineItem"]["total"] == "52.47"
    assert first["lineItem"]["discount"] == "12.50"
    assert first["opportunity"]["amount"] == "52.47"  # the lines' total, not the 500 typed before
    # Half-cents go to the even cent: 0.025 -> 0.02, 0.035 -> 0.04.
    second = await add(org.seller, deal, nickel, discount="50")
    assert second["lineItem"]["total"] == "0.02"
    third = await add(org.seller, deal, dime, discount="50")
    assert third["lineItem"]["total"] == "0.04"
    assert third["opportunity"]["amount"] == "52.53"
    assert third["opportunity"]["version"] == deal["version"] + 3

    changed = await org.seller.api.data(
        CHANGE, input={"id": first["lineItem"]["id"], "quantity": 10, "discount": None}
    )
    assert changed["updateLineItem"]["lineItem"]["total"] == "199.90"
    assert changed["updateLineItem"]["opportunity"]["amount"] == "199.96"
    events = await history(org.seller, deal["id"])
    assert events[0]["kind"] == "LINE_ITEM_CHANGED"
    assert events[0]["changes"]["amount"] == {"old": "52.53", "new": "199.96"}
    assert events[0]["changes"]["lineItem"]["quantity"] == 10

    for values, field in (({"amount": "10.00"}, "amount"), ({"currency": "EUR"}, "currency")):
        error = await org.seller.api.error(UPDATE_OPPORTUNITY, input={"id": deal["id"], **values})
        assert (error["extensions"]["code"], error["extensions"]["field"]) == (
            "BAD_USER_INPUT",
            field,
        )

    for line in (second, third):
        await org.seller.api.data(REMOVE, id=line["lineItem"]["id"])
    removed = await org.seller.api.data(REMOVE, id=first["lineItem"]["id"])
    assert removed["removeLineItem"]["opportunity"]["lineItems"] == []
    assert removed["removeLineItem"]["opportunity"]["amount"] == "199.90"  # the last total stays
    edited = await org.seller.api.data(
        UPDATE_OPPORTUNITY, input={"id": deal["id"], "amount": "75.00"}
    )
    assert edited["updateOpportunity"]["amount"] == "75.00"  # no lines: typed again


async def test_line_items_refuse_what_does_not_add_up(org, other_org):
    euro = await product(org.admin, "EU", "10.00", currency="EUR")
    usd = await product(org.admin, "US", "10.00")
    stopped = await product(org.admin, "OLD", "1.00")
    await org.admin.api.data(UPDATE_PRODUCT, input={"id": stopped["id"], "active": False})
    theirs = await product(other_org.admin, "THEIRS", "1.00")
    deal = await create_opportunity(org.seller, currency="USD")
    for item, values, field in (
        (euro, {}, "unitPrice"),  # priced in EUR, the deal is in USD
        (stopped, {}, "productId"),
        (theirs, {}, "productId"),
        (usd, {"quantity": 0}, "quantity"),
        (usd, {"quantity": 1_000_001}, "quantity"),
        (usd, {"discount": "100.5"}, "discount"),
        (usd, {"discount": "-1"}, "discount"),
        (usd, {"discount": "1.005"}, "discount"),
        (usd, {"unitPrice": "-2"}, "unitPrice"),
        (usd, {"quantity": 1_000_000, "unitPrice": "1000000000000"}, "quantity"),  # too large
    ):
        error = await org.seller.api.error(
            ADD, input={"opportunityId": deal["id"], "productId": item["id"], **values}
        )
        assert (error["extensions"]["code"], error["extensions"]["field"]) == (
            "BAD_USER_INPUT",
            field,
        ), (item["code"], values)
    priced = await add(org.seller, deal, euro, unitPrice="11.00")
    assert priced["lineItem"]["total"] == "11.00"

    error = await org.teammate.api.error(
        ADD, input={"opportunityId": deal["id"], "productId": usd["id"]}
    )
    assert error["extensions"]["code"] == "FORBIDDEN"  # reads it, may not change it
    error = await other_org.admin.api.error(REMOVE, id=priced["lineItem"]["id"])
    assert error["extensions"]["code"] == "NOT_FOUND"
    seen = await org.seller.api.data(
        "query($id: ID!) { node(id: $id) { ... on Opportunity { amount lineItems { id } } } }",
        id=deal["id"],
    )
    assert seen["node"] == {"amount": "11.00", "lineItems": [{"id": priced["lineItem"]["id"]}]}


async def test_accounts_and_contacts_use_the_products_they_won(org):
    pipeline = await stages(org.seller)
    won = pipeline["Closed won"]["id"]
    account = await create_account(org.seller)
    buyer = await create_contact(org.seller, accountId=account["id"])
    crm = await product(org.admin, "CRM", "100.00")
    training = await product(org.admin, "TRAINING", "50.00")
    support = await product(org.admin, "SUPPORT", "20.00")

    bought = await create_opportunity(
        org.seller, accountId=account["id"], contactId=buyer["id"], currency="USD"
    )
    await add(org.seller, bought, crm, quantity=2)
    await update(org.seller, id=bought["id"], stageId=won)
    other = await create_opportunity(org.seller, accountId=account["id"], currency="USD")
    await add(org.seller, other, training)
    await update(org.seller, id=other["id"], stageId=won)
    pending = await create_opportunity(org.seller, accountId=account["id"], currency="USD")
    await add(org.seller, pending, support)  # open: not used yet
    euro = await create_opportunity(
        org.seller, accountId=account["id"], amount="70.00", currency="EUR"
    )
    await update(org.seller, id=euro["id"], stageId=won)

    seen = (await org.seller.api.data(USED, id=account["id"]))["node"]
    assert sorted(p["code"] for p in seen["productsUsed"]) == ["CRM", "TRAINING"]
    assert seen["billing"] == [
        {"currency": "EUR", "amount": "70.00", "count": 1},
        {"currency": "USD", "amount": "250.00", "count": 2},
    ]
    seen = (await org.seller.api.data(USED, id=buyer["id"]))["node"]
    assert [p["code"] for p in seen["productsUsed"]] == ["CRM"]
    assert seen["billing"] == [{"currency": "USD", "amount": "200.00", "count": 1}]
    later = await org.seller.api.data(USED, id=account["id"], since="2100-01-01")
    assert later["node"]["billing"] == []
    error = await org.seller.api.error(
        USED, id=account["id"], since="2030-01-02", until="2030-01-01"
    )
    assert error["extensions"]["field"] == "until"


TAGS = "mutation($input: CreateContactInput!) { createContact(input: $input) { id tags } }"


async def test_contacts_carry_tags_for_segments(org):
    made = (
        await org.seller.api.data(
            TAGS, input={"firstName": "A", "lastName": "B", "tags": [" VIP ", "vip", "Fair-2026"]}
        )
    )["createContact"]
    assert made["tags"] == ["fair-2026", "vip"]
    other = await create_contact(org.seller)
    tagged = await org.seller.api.data(
        "query($tags: [String!]) { contacts(filter: {tags: $tags}) { nodes { id } } }",
        tags=["VIP", "nobody"],
    )
    assert tagged["contacts"]["nodes"] == [{"id": made["id"]}]
    replaced = await org.seller.api.data(
        "mutation($input: UpdateContactInput!) { updateContact(input: $input) { tags } }",
        input={"id": made["id"], "tags": ["partner"]},
    )
    assert replaced["updateContact"]["tags"] == ["partner"]
    for tags in ([f"t{n}" for n in range(21)], [""], ["a\nb"], ["ß" * 30]):  # 60 once folded
        error = await org.seller.api.error(
            "mutation($input: UpdateContactInput!) { updateContact(input: $input) { id } }",
            input={"id": other["id"], "tags": tags},
        )
        assert (error["extensions"]["code"], error["extensions"]["field"]) == (
            "BAD_USER_INPUT",
            "tags",
        )


async def test_billing_and_products_used_keep_private_deals_to_their_readers(org):
    won = (await stages(org.seller))["Closed won"]["id"]
    account = await create_account(org.seller)
    secret_product = await product(org.admin, "SECRET", "12345.67")
    secret = await create_opportunity(
        org.seller, accountId=account["id"], currency="USD", visibility="PRIVATE"
    )
    await add(org.seller, secret, secret_product)
    await update(org.seller, id=secret["id"], stageId=won)
    owner = (await org.seller.api.data(USED, id=account["id"]))["node"]
    assert owner["billing"] == [{"currency": "USD", "amount": "12345.67", "count": 1}]
    assert [p["code"] for p in owner["productsUsed"]] == ["SECRET"]
    outsider = (await org.outsider.api.data(USED, id=account["id"]))["node"]
    assert (outsider["billing"], outsider["productsUsed"]) == ([], [])
