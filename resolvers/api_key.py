"""API keys for partners: created, listed and revoked by admins; the secret is shown once.

A key acts for the admin who created it (their organization, and their rights while they stay an
active admin), narrowed by its scopes: every key reads; writing takes WRITE, or WRITE_<AREA> for
the mutations of one area. Keys pull data over HTTP; subscriptions take a session token.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from models import ApiKey, ApiKeyScope, Role, User
from resolvers import validation
from resolvers.auth import digest
from resolvers.context import RequestContext
from resolvers.errors import bad_input, conflict, forbidden, not_found
from resolvers.permissions import require_admin

KEY_PREFIX = "crmk_"
LAST_USED_RESOLUTION = timedelta(minutes=1)

# The mutations of each area a WRITE_<AREA> scope opens (WRITE opens them all).
AREAS: dict[ApiKeyScope, set[str]] = {
    ApiKeyScope.WRITE_ACCOUNTS: {"createAccount", "updateAccount", "deleteAccount"},
    ApiKeyScope.WRITE_CONTACTS: {
        "createContact",
        "updateContact",
        "deleteContact",
        "setContactLifecycle",
    },
    ApiKeyScope.WRITE_DEALS: {
        "createLead",
        "updateLead",
        "deleteLead",
        "convertLead",
        "createOpportunity",
        "updateOpportunity",
        "deleteOpportunity",
        "setPrimaryContact",
        "addParticipant",
        "removeParticipant",
        "addFollower",
        "removeFollower",
        "addComment",
        "addLineItem",
        "updateLineItem",
        "removeLineItem",
    },
    ApiKeyScope.WRITE_ACTIVITIES: {
        "planActivity",
        "rescheduleActivity",
        "completeActivity",
        "cancelActivity",
    },
    ApiKeyScope.WRITE_MESSAGES: {"sendMessage", "retryMessage"},
    ApiKeyScope.WRITE_PRODUCTS: {"createProduct", "updateProduct"},
    ApiKeyScope.WRITE_CAMPAIGNS: {
        "createCampaign",
        "updateCampaign",
        "launchCampaign",
        "completeCampaign",
        "cancelCampaign",
        "addCampaignCost",
        "removeCampaignCost",
        "markCampaignResponse",
    },
}


def allows(scopes: list[str], mutation: str) -> bool:
    """Whether a key with these scopes may run this root mutation. Closed by default: a key
    runs only the mutations of the areas above (WRITE: all of them); users, the organization's
    settings, sessions and keys are never a key's business."""
    return any(
        (scope.value in scopes or ApiKeyScope.WRITE.value in scopes) and mutation in mutations
        for scope, mutations in AREAS.items()
    )


def is_api_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


async def key_user(token: str) -> tuple[User | None, ApiKey | None, str | None]:
    """The user a key acts for now and the key, or (None, None, why not)."""
    key = await ApiKey.filter(secret_hash=digest(token)).select_related("created_by").first()
    now = datetime.now(UTC)
    if key is None or key.revoked_at is not None:
        return None, None, "This API key is unknown or revoked."
    if key.expires_at is not None and key.expires_at <= now:
        return None, None, "This API key has expired."
    creator = key.created_by
    if not creator.is_active or creator.role != Role.ADMIN:
        return (
            None,
            None,
            "The admin who created this API key is no longer an admin: make a new key.",
        )
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        await ApiKey.filter(id=key.id).update(last_used_at=now)
    return creator, key, None


def _scopes(values: list[ApiKeyScope] | None) -> list[str]:
    scopes = {ApiKeyScope.READ.value, *(scope.value for scope in values or [])}
    return sorted(scopes)


async def create_key(ctx: RequestContext, values: dict[str, Any]) -> tuple[ApiKey, str]:
    """A new key and its secret (shown this once, stored as a digest)."""
    admin = _require_person_admin(ctx)
    name = validation.single_line(values.get("name") or "", "name")
    expires_at = values.get("expires_at")
    if expires_at is not None:
        expires_at = validation.moment(expires_at, "expiresAt")
        if expires_at <= datetime.now(UTC):
            raise bad_input("expiresAt", "expiresAt must be in the future.")
    prefix = secrets.token_hex(4)
    secret = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    key = await ApiKey.create(
        organization_id=admin.organization_id,
        name=name,
        prefix=prefix,
        secret_hash=digest(secret),
        scopes=_scopes(values.get("scopes")),
        expires_at=expires_at,
        created_by_id=admin.id,
    )
    return key, secret


def _require_person_admin(ctx: RequestContext) -> User:
    admin = require_admin(ctx)
    if ctx.api_key is not None:
        raise forbidden("API keys cannot manage API keys.")
    return admin


async def revoke_key(ctx: RequestContext, key_id: int) -> ApiKey:
    admin = _require_person_admin(ctx)
    key = await ApiKey.filter(id=key_id, organization_id=admin.organization_id).first()
    if key is None:
        raise not_found("API key")
    if key.revoked_at is not None:
        raise conflict("This API key is revoked already.")
    key.revoked_at = datetime.now(UTC)
    await key.save(update_fields=["revoked_at", "updated_at"])
    return key


async def list_keys(ctx: RequestContext) -> list[ApiKey]:
    admin = require_admin(ctx)
    return await ApiKey.filter(organization_id=admin.organization_id).order_by("-id")
