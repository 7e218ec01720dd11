"""Events store facts in the models' terms, not the API's.

Before: `changes` as the API showed them, {"stageId": {"old": <global id>, "new": ...},
"amount": {"old": "10.00", ...}, "contactId": <global id>, "role": "CFO"}. After: the fields
that changed under "fields", by model field name, with integer ids and cents, then the details
by model name: {"fields": {"stage_id": {"from": 3, "to": 5}, "amount_cents": {"from": 1000,
...}}, "contact_id": 7, "role": "CFO"}. The API renders them as before (resolvers/events.py).

The names below are frozen here as they were when this migration was written: the API may rename
its fields later, this migration must keep reading what was stored then. Rows already in the new
shape are left as they are. Labels (what a referenced record was called) were not stored before:
events converted here have none.
"""

import base64
import json
import re
from decimal import Decimal
from typing import Any

from tortoise import migrations
from tortoise.migrations import operations as ops

# The API's names of stored references, and of amounts, at the time of this migration.
_REFERENCES = {
    "ownerId": "owner_id",
    "userId": "user_id",
    "accountId": "account_id",
    "contactId": "contact_id",
    "commentId": "comment_id",
    "stageId": "stage_id",
    "leadId": "lead_id",
    "activityId": "activity_id",
    "messageId": "message_id",
    "lineItemId": "line_item_id",
    "productId": "product_id",
    "campaignId": "campaign_id",
    "opportunityId": "opportunity_id",
    "convertedOpportunityId": "converted_opportunity_id",
    "participants": "participant_ids",
    "followers": "follower_ids",
}
_TYPES = {
    "owner_id": "User",
    "user_id": "User",
    "account_id": "Account",
    "contact_id": "Contact",
    "comment_id": "Comment",
    "stage_id": "PipelineStage",
    "lead_id": "Lead",
    "activity_id": "Activity",
    "message_id": "Message",
    "line_item_id": "LineItem",
    "product_id": "Product",
    "campaign_id": "Campaign",
    "opportunity_id": "Opportunity",
    "converted_opportunity_id": "Opportunity",
    "participant_ids": "Contact",
    "follower_ids": "User",
}
_MONEY = {
    "amount": "amount_cents",
    "estimatedAmount": "estimated_amount_cents",
    "unitPrice": "unit_price_cents",
    "total": "total_cents",
}
_PERCENT = {"discount": "discount_basis_points"}
_BATCH = 500


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _pk(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        _, pk = base64.b64decode(value).decode().split(":", 1)
        return int(pk)
    except (ValueError, UnicodeDecodeError):
        return value


def _fact(key: str, value: Any) -> Any:
    """An old (API) value as a fact."""
    if value is None:
        return None
    if key in _REFERENCES:
        return [_pk(v) for v in value] if isinstance(value, list) else _pk(value)
    if key in _MONEY or key in _PERCENT:
        return int((Decimal(value) * 100).to_integral_value())
    if isinstance(value, dict):
        return _facts(value)
    return value


def _facts(old: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for key, value in old.items():
        name = _REFERENCES.get(key) or _MONEY.get(key) or _PERCENT.get(key) or _snake(key)
        if isinstance(value, dict) and set(value) == {"old", "new"}:
            fields[name] = {"from": _fact(key, value["old"]), "to": _fact(key, value["new"])}
        else:
            details[name] = _fact(key, value)
    return {"fields": fields, **details} if fields else details


def _shown(name: str, value: Any) -> Any:
    """A fact as the API showed it then (for going back)."""
    if value is None:
        return None
    if name in _TYPES:

        def gid(pk: Any) -> Any:
            return base64.b64encode(f"{_TYPES[name]}:{pk}".encode()).decode()

        return [gid(pk) for pk in value] if isinstance(value, list) else gid(value)
    if name in _MONEY.values():
        return str((Decimal(value) / 100).quantize(Decimal("0.01")))
    if name in _PERCENT.values():
        return str(Decimal(value) / 100)
    if isinstance(value, dict):
        return _old(value)
    return value


def _old(facts: dict[str, Any]) -> dict[str, Any]:
    api = {v: k for k, v in {**_REFERENCES, **_MONEY, **_PERCENT}.items()}
    old: dict[str, Any] = {}
    for name, change in facts.get("fields", {}).items():
        key = api.get(name) or _camel(name)
        old[key] = {"old": _shown(name, change["from"]), "new": _shown(name, change["to"])}
    for name, value in facts.items():
        if name not in ("fields", "labels"):
            old[api.get(name) or _camel(name)] = _shown(name, value)
    return old


def _is_old(changes: dict[str, Any]) -> bool:
    """Whether `changes` are in the API's shape: a camelCase name or an {"old", "new"} pair."""
    if "fields" in changes:
        return False
    return any(
        re.search("[A-Z]", key) or (isinstance(value, dict) and set(value) == {"old", "new"})
        for key, value in changes.items()
    )


async def _rewrite(client: Any, convert: Any, wanted: Any) -> None:
    postgres = client.capabilities.dialect == "postgres"
    select = (
        "SELECT id, changes FROM event WHERE id > $1 ORDER BY id LIMIT $2"
        if postgres
        else "SELECT id, changes FROM event WHERE id > ? ORDER BY id LIMIT ?"
    )
    update = (
        "UPDATE event SET changes = $1::jsonb WHERE id = $2"
        if postgres
        else "UPDATE event SET changes = ? WHERE id = ?"
    )
    last = 0
    while True:
        _, rows = await client.execute_query(select, [last, _BATCH])
        if not rows:
            return
        changed = []
        for row in rows:
            stored = row["changes"]
            changes = json.loads(stored) if isinstance(stored, str) else stored
            if isinstance(changes, dict) and changes and wanted(changes):
                changed.append([json.dumps(convert(changes)), row["id"]])
        if changed:
            await client.execute_many(update, changed)
        last = rows[-1]["id"]


async def forward(apps: Any, schema_editor: Any) -> None:
    await _rewrite(schema_editor.client, _facts, _is_old)


async def backward(apps: Any, schema_editor: Any) -> None:
    await _rewrite(schema_editor.client, _old, lambda changes: not _is_old(changes))


class Migration(migrations.Migration):
    dependencies = [("models", "0016_limits")]

    initial = False

    operations = [ops.RunPython(forward, backward)]
