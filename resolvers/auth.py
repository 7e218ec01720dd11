"""Passwords, tokens, sign-up, login and logout."""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from tortoise.transactions import in_transaction

from config import Settings
from models import AuthToken, Organization, Role, User
from resolvers import validation
from resolvers.context import RequestContext
from resolvers.errors import ApiError, ErrorCode, conflict
from resolvers.loaders import columns_of, instance
from resolvers.organization import create_default_stages

TOKEN_PREFIX = "crm_"
LAST_USED_RESOLUTION = timedelta(minutes=5)
INVALID_TOKEN = "The token is invalid, expired or revoked: log in again."
_VERIFIER = PasswordHasher()  # verify() reads the parameters from the hash


@cache
def _hasher(time_cost: int, memory_kib: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)


def hasher(settings: Settings) -> PasswordHasher:
    """The password hasher of these settings (ARGON2_TIME_COST, ARGON2_MEMORY_KIB)."""
    return _hasher(settings.argon2_time_cost, settings.argon2_memory_kib)


@cache
def _dummy_hash(time_cost: int, memory_kib: int) -> str:
    return _hasher(time_cost, memory_kib).hash("not a real password")


async def dummy_hash(settings: Settings) -> str:
    """Verifying against this keeps a login for an unknown email as slow as one for a known
    email (made once per hashing cost, in a thread like every hash)."""
    return await asyncio.to_thread(
        _dummy_hash, settings.argon2_time_cost, settings.argon2_memory_kib
    )


def _now() -> datetime:
    return datetime.now(UTC)


async def hash_password(settings: Settings, password: str) -> str:
    # argon2 releases the GIL: hashing in a thread keeps the event loop serving others.
    return await asyncio.to_thread(hasher(settings).hash, password)


async def verify_password(password_hash: str, password: str) -> bool:
    """Whether the password matches (the hash carries the parameters it was made with)."""
    try:
        return await asyncio.to_thread(_VERIFIER.verify, password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Session:
    token: str
    user: User
    expires_at: datetime


async def issue_token(settings: Settings, user: User) -> Session:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = _now() + timedelta(days=settings.token_ttl_days)
    await AuthToken.create(
        user=user, token_hash=digest(token), expires_at=expires_at, last_used_at=_now()
    )
    return Session(token=token, user=user, expires_at=expires_at)


async def authenticate(
    authorization: str | None,
) -> tuple[User | None, str | None, str | None, set[int] | None]:
    """Return (user, token digest, why not, the user's team when read: see session_user) for
    an Authorization header value."""
    if not authorization:
        return None, None, None, None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None, None, "The Authorization header must be 'Bearer <token>'.", None
    token_hash = digest(token.strip())
    user, team, why = await session_user(token_hash)
    return user, token_hash if user else None, why, team


async def session_user(token_hash: str) -> tuple[User | None, set[int] | None, str | None]:
    """The user a token signs in now and their team, or (None, None, why not).

    Every request starts here, so the statement is written out: Tortoise built its
    `select_related` query in about as long as the rest of a small request took. On PostgreSQL
    it also reads a user's team (permissions.team_ids: their reports, direct and indirect),
    which a seller's or a manager's lists of deals need: one statement fewer per request.
    Admins need none (None: read when asked, as on SQLite)."""
    db = AuthToken._meta.db
    columns = columns_of(User)
    postgres = db.capabilities.dialect == "postgres"
    _, rows = await db.execute_query(_session_sql(columns, postgres), [token_hash])
    if not rows:
        return None, None, INVALID_TOKEN
    values = tuple(rows[0])
    user = instance(User, columns, values[: len(columns)])
    token_id, expires_at, last_used_at = values[len(columns) : len(columns) + 3]
    reports = values[len(columns) + 3] if postgres else None
    token = AuthToken._meta.fields_map
    expires_at = token["expires_at"].to_python_value(expires_at)
    last_used_at = token["last_used_at"].to_python_value(last_used_at)
    now = _now()
    if expires_at <= now:
        return None, None, INVALID_TOKEN
    if not user.is_active:
        return None, None, "This user has been deactivated."
    if last_used_at is None or now - last_used_at > LAST_USED_RESOLUTION:
        await AuthToken.filter(id=token_id).update(last_used_at=now)
    return user, None if reports is None else {int(pk) for pk in reports}, None


@cache
def _session_sql(columns: tuple[str, ...], postgres: bool) -> str:
    """A live (not revoked) token's user, then the token's id, expiry and last use; on
    PostgreSQL then the user's team unless an admin (reports_of's walk down the reporting lines
    of the organization's users: a cycle ends it, the user is not in it)."""
    user = ", ".join(f'u."{column}"' for column in columns)
    tokens, users = AuthToken._meta.db_table, User._meta.db_table
    team = ""
    if postgres:
        team = (
            f", CASE WHEN u.\"role\" = '{Role.ADMIN.value}' THEN NULL ELSE ARRAY("
            f'WITH RECURSIVE team("id") AS ('
            f'SELECT r."id" FROM "{users}" AS r'
            f' WHERE r."manager_id" = u."id" AND r."organization_id" = u."organization_id"'
            f' UNION SELECT r."id" FROM "{users}" AS r JOIN team ON r."manager_id" = team."id"'
            f' WHERE r."organization_id" = u."organization_id")'
            f' SELECT "id" FROM team WHERE "id" <> u."id") END'
        )
    return (
        f'SELECT {user}, t."id", t."expires_at", t."last_used_at"{team} FROM "{tokens}" AS t'
        f' JOIN "{users}" AS u ON u."id" = t."user_id"'
        f' WHERE t."token_hash" = {"$1" if postgres else "?"} AND t."revoked_at" IS NULL'
    )


async def refresh_session(ctx: RequestContext) -> None:
    """Re-read a websocket's session before each of its operations: the connection signed in
    once, and its token may have been revoked, its user deactivated or given another role since.
    Whatever the previous operations cached goes too."""
    ctx.forget_cached()
    if ctx.token_hash is None:
        return
    ctx.viewer, ctx.team_ids, why = await session_user(ctx.token_hash)
    if ctx.viewer is None:
        ctx.auth_error = why
        ctx.token_hash = None


async def sign_up(
    ctx: RequestContext, organization_name: str, full_name: str, email: str, password: str
) -> Session:
    gate, per_hour = ctx.gate, ctx.settings.signups_per_hour
    if gate is not None and per_hour > 0:
        wait = await gate.limiter.take(
            f"signup:{client_address(ctx)}", rate=per_hour / 3600, burst=per_hour
        )
        if wait > 0:
            raise rate_limited(ctx, wait, "Too many sign-ups from this address")
    org_name = validation.text(organization_name, "organizationName")
    name = validation.single_line(full_name, "fullName")
    address = validation.email(email).lower()
    validation.password(password)
    password_hash = await hash_password(ctx.settings, password)
    async with in_transaction():
        if await User.filter(email=address).exists():
            raise conflict("A user with this email already exists.", field="email")
        organization = await Organization.create(name=org_name)
        await create_default_stages(organization)
        user = await User.create(
            organization=organization,
            email=address,
            full_name=name,
            password_hash=password_hash,
            role=Role.ADMIN,
        )
        return await issue_token(ctx.settings, user)


async def login(ctx: RequestContext, email: str, password: str) -> Session:
    """A token for the right password. Failures are throttled per account (the email as typed,
    known or not, so the answer never tells whether it exists) and per client address."""
    throttle = ctx.gate.login if ctx.gate is not None else None
    client = client_address(ctx)
    if throttle is not None:
        wait = await throttle.wait(email, client)
        if wait > 0:
            raise rate_limited(ctx, wait, "Too many failed logins")
    address = email.strip().lower()
    user = await User.filter(email=address).first() if validation.EMAIL_RE.match(address) else None
    if user is None:
        await verify_password(await dummy_hash(ctx.settings), password)
    elif await verify_password(user.password_hash, password) and user.is_active:
        if throttle is not None:
            await throttle.succeeded(email)
        return await issue_token(ctx.settings, user)
    if throttle is not None:
        await throttle.failed(email, client)
    raise ApiError(ErrorCode.UNAUTHENTICATED, "Wrong email or password.")


def client_address(ctx: RequestContext) -> str:
    client = getattr(ctx.request, "client", None)
    return client.host if client else "unknown"


def rate_limited(ctx: RequestContext, wait: float, what: str) -> ApiError:
    """RATE_LIMITED with `retryAfter` (and over HTTP the Retry-After header)."""
    seconds = max(1, math.ceil(wait))
    headers = getattr(ctx.response, "headers", None)
    if headers is not None and not ctx.over_websocket:
        headers["Retry-After"] = str(seconds)
    return ApiError(ErrorCode.RATE_LIMITED, f"{what}: retry in {seconds} s.", retryAfter=seconds)


async def logout(ctx: RequestContext) -> None:
    """Revoke the token of this request (open subscriptions on it end too)."""
    ctx.require_viewer()
    await AuthToken.filter(token_hash=ctx.token_hash, revoked_at__isnull=True).update(
        revoked_at=_now()
    )
    ctx.writes.sessions_revoked = True


async def revoke_all_tokens(ctx: RequestContext, user_id: int) -> None:
    await AuthToken.filter(user_id=user_id, revoked_at__isnull=True).update(revoked_at=_now())
    ctx.writes.sessions_revoked = True


async def valid_token_hashes(token_hashes: Iterable[str]) -> set[str]:
    """Which of these tokens still sign someone in: not revoked, not expired, user active."""
    rows = await AuthToken.filter(
        token_hash__in=list(token_hashes),
        revoked_at__isnull=True,
        expires_at__gt=_now(),
        user__is_active=True,
    ).values_list("token_hash", flat=True)
    return {str(token_hash) for token_hash in rows}
