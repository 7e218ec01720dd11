"""Webhook endpoints, managed by the organization's admins; the deliveries made to them.

An endpoint receives each change of the change feed (the types it asks for), from the change
that follows its registration on, in order (webhooks/delivery.py sends them). Its secret signs
every delivery (Standard Webhooks) and is shown once, at registration and at each rotation;
it is stored encrypted (webhooks/sealing.py).
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from models import (
    Notification,
    NotificationKind,
    Role,
    User,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookStatus,
)
from resolvers import sync, validation
from resolvers.context import RequestContext
from resolvers.errors import bad_input, conflict, forbidden, not_found
from resolvers.pagination import BY_ID, Page, PageRequest, paginate
from resolvers.permissions import require_admin
from webhooks import addresses, sealing

SECRET_PREFIX = "whsec_"
# After a rotation the previous secret signs too, for this long: receivers switch meanwhile.
ROTATION_GRACE = timedelta(hours=24)
MAX_ENDPOINTS = 20  # per organization


def _require_admin(ctx: RequestContext) -> User:
    admin = require_admin(ctx)
    if ctx.api_key is not None:
        raise forbidden("API keys cannot manage webhooks: sign in as an admin.")
    return admin


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


async def clean_url(ctx: RequestContext, url: str) -> str:
    try:
        target = addresses.parse(url)
        await addresses.resolve(target, ctx.settings.webhook_allow_private_addresses)
    except addresses.Refused as error:
        raise bad_input("url", str(error)) from None
    return url.strip()


def clean_types(change_types: list[str] | None) -> list[str]:
    """The record types of the feed an endpoint wants, in the feed's order; [] is all."""
    wanted = set(change_types or [])
    unknown = wanted - set(sync.BY_NAME)
    if unknown:
        raise bad_input("changeTypes", f"changeTypes are among {', '.join(sync.BY_NAME)}.")
    return [synced.name for synced in sync.SYNCED if synced.name in wanted]


async def create_endpoint(
    ctx: RequestContext, url: str, change_types: list[str] | None, description: str | None
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint, delivering from the organization's next change on, and its secret."""
    admin = _require_admin(ctx)
    url = await clean_url(ctx, url)
    types = clean_types(change_types)
    text = validation.optional_text(description, "description", max_length=500) or ""
    if await WebhookEndpoint.filter(organization_id=admin.organization_id).count() >= (
        MAX_ENDPOINTS
    ):
        raise conflict(f"An organization has at most {MAX_ENDPOINTS} webhook endpoints.")
    cursor, position = await sync.head_cursor(admin.organization_id)
    secret = new_secret()
    endpoint = await WebhookEndpoint.create(
        organization_id=admin.organization_id,
        url=url,
        change_types=types,
        description=text,
        secret=sealing.sealer(ctx.settings).seal(secret),
        cursor=cursor,
        position=position,
        created_by_id=admin.id,
    )
    return endpoint, secret


async def get_endpoint(ctx: RequestContext, endpoint_id: int) -> WebhookEndpoint:
    admin = require_admin(ctx)
    endpoint = await WebhookEndpoint.get_or_none(
        id=endpoint_id, organization_id=admin.organization_id
    )
    if endpoint is None:
        raise not_found("webhook endpoint")
    return endpoint


async def list_endpoints(ctx: RequestContext) -> list[WebhookEndpoint]:
    admin = require_admin(ctx)
    return await WebhookEndpoint.filter(organization_id=admin.organization_id).order_by("id")


async def update_endpoint(
    ctx: RequestContext, endpoint_id: int, values: dict[str, Any]
) -> WebhookEndpoint:
    _require_admin(ctx)
    endpoint = await get_endpoint(ctx, endpoint_id)
    changed: dict[str, Any] = {}
    if values.get("url") is not None:
        changed["url"] = await clean_url(ctx, values["url"])
    if values.get("change_types") is not None:
        changed["change_types"] = clean_types(values["change_types"])
    if values.get("description") is not None:
        changed["description"] = validation.text(
            values["description"], "description", max_length=500
        )
    return await _change(endpoint, **changed)


async def _change(endpoint: WebhookEndpoint, **changed: Any) -> WebhookEndpoint:
    """Write only these columns: the delivery loop writes the others meanwhile."""
    if changed:
        changed["updated_at"] = datetime.now(UTC)
        await WebhookEndpoint.filter(id=endpoint.id).update(**changed)
    await endpoint.refresh_from_db()
    return endpoint


async def pause_endpoint(ctx: RequestContext, endpoint_id: int) -> WebhookEndpoint:
    _require_admin(ctx)
    endpoint = await get_endpoint(ctx, endpoint_id)
    if endpoint.status == WebhookStatus.PAUSED:
        raise conflict("This webhook endpoint is paused already.")
    return await _change(endpoint, status=WebhookStatus.PAUSED)


async def resume_endpoint(ctx: RequestContext, endpoint_id: int) -> WebhookEndpoint:
    """Deliver again from where it stood (a disabled endpoint: its failing change, at once)."""
    _require_admin(ctx)
    endpoint = await get_endpoint(ctx, endpoint_id)
    if endpoint.status == WebhookStatus.ACTIVE:
        raise conflict("This webhook endpoint is active already.")
    return await _change(
        endpoint,
        status=WebhookStatus.ACTIVE,
        disabled_reason=None,
        failing_since=None,
        failures=0,
        retry_at=None,
    )


async def rotate_secret(ctx: RequestContext, endpoint_id: int) -> tuple[WebhookEndpoint, str]:
    """A new secret; the previous one signs too for ROTATION_GRACE."""
    _require_admin(ctx)
    endpoint = await get_endpoint(ctx, endpoint_id)
    secret = new_secret()
    endpoint = await _change(
        endpoint,
        secret=sealing.sealer(ctx.settings).seal(secret),
        previous_secret=endpoint.secret,  # sealed as it was
        previous_secret_until=datetime.now(UTC) + ROTATION_GRACE,
    )
    return endpoint, secret


async def delete_endpoint(ctx: RequestContext, endpoint_id: int) -> WebhookEndpoint:
    _require_admin(ctx)
    endpoint = await get_endpoint(ctx, endpoint_id)
    await WebhookDelivery.filter(
        organization_id=endpoint.organization_id, endpoint_id=endpoint.id
    ).delete()
    await endpoint.delete()
    return endpoint


async def redeliver(ctx: RequestContext, endpoint_id: int, from_cursor: str) -> WebhookEndpoint:
    """Send every change after `from_cursor` again (each with its own webhook-id), then carry
    on; the endpoint keeps its status (a paused one sends when resumed)."""
    _require_admin(ctx)
    endpoint = await get_endpoint(ctx, endpoint_id)
    cursor, position = await sync.checked_cursor(
        endpoint.organization_id, from_cursor, "fromCursor", ctx.settings.sync_retention_days
    )
    return await _change(
        endpoint,
        cursor=cursor,
        position=position,
        redeliver_through=max(endpoint.position, endpoint.redeliver_through),
        failing_since=None,
        failures=0,
        retry_at=None,
    )


async def list_deliveries(
    ctx: RequestContext, endpoint_id: int, page: PageRequest
) -> Page[WebhookDelivery]:
    """The endpoint's deliveries, newest first (the latest WEBHOOK_DELIVERIES_KEPT)."""
    endpoint = await get_endpoint(ctx, endpoint_id)
    query = WebhookDelivery.filter(
        organization_id=endpoint.organization_id, endpoint_id=endpoint.id
    )
    return await paginate(query, page, BY_ID, descending=True)


async def notify_disabled(endpoint: WebhookEndpoint, reason: str) -> None:
    """Tell the organization's active admins that an endpoint was disabled."""
    admins = await User.filter(
        organization_id=endpoint.organization_id, role=Role.ADMIN, is_active=True
    ).values_list("id", flat=True)
    message = f"Webhook endpoint {endpoint.url} was disabled: {reason}"
    await Notification.bulk_create(
        [
            Notification(
                user_id=user_id,
                kind=NotificationKind.WEBHOOK_ENDPOINT_DISABLED,
                message=message[:1000],
                webhook_endpoint_id=endpoint.id,
            )
            for user_id in admins
        ]
    )
