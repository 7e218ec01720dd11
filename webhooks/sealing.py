"""Webhook signing secrets at rest: encrypted, since signing needs the secret itself (a digest
would not do, as it does for API keys).

A stored secret is `fernet:<token>`: Fernet (AES-128-CBC and HMAC-SHA256, from `cryptography`)
under SECRETS_KEYS, a list whose first key encrypts and whose every key decrypts, so a key is
replaced by putting the new one first, running `manage.py rotate-secrets`, then dropping the
old one. The prefix tells a sealed value from a clear one (migration 0022 seals those).

Without SECRETS_KEYS, outside production, one key is generated into a file (SECRETS_KEY_FILE,
by default beside the SQLite database) on first use, and read from it afterwards; production
refuses to start without SECRETS_KEYS (README, "Webhooks", says why).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from config import ROOT, Settings

log = logging.getLogger("crm.secrets")

PREFIX = "fernet:"
KEY_FILE = "secrets.keys"  # the key file's name beside a non-SQLite database (in ROOT)


class SecretsError(Exception):
    """A secret cannot be sealed or opened (`code`: SECRETS_KEYS_MISSING, SECRETS_KEYS_INVALID,
    SECRET_UNREADABLE)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Sealer:
    """Seals and opens secrets with a list of Fernet keys (the first encrypts)."""

    def __init__(self, keys: Sequence[str]) -> None:
        try:
            self._fernet = MultiFernet([Fernet(key) for key in keys])
        except (ValueError, TypeError):
            raise SecretsError(
                "SECRETS_KEYS_INVALID",
                "SECRETS_KEYS holds a value that is not a Fernet key (32 bytes in url-safe "
                "base64, as `Fernet.generate_key()` makes them).",
            ) from None

    def seal(self, secret: str) -> str:
        return PREFIX + self._fernet.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        if not stored.startswith(PREFIX):
            raise SecretsError(
                "SECRET_UNREADABLE", "the secret is stored in clear: run `manage.py migrate`."
            )
        try:
            return self._fernet.decrypt(stored.removeprefix(PREFIX).encode()).decode()
        except InvalidToken:
            raise SecretsError(
                "SECRET_UNREADABLE",
                "no key of SECRETS_KEYS decrypts the secret (the key it was sealed with is "
                "missing, or the value is damaged).",
            ) from None

    def reseal(self, stored: str) -> str:
        """The secret sealed with the first key (a clear one sealed, a sealed one re-encrypted)."""
        if not stored.startswith(PREFIX):
            return self.seal(stored)
        try:
            return PREFIX + self._fernet.rotate(stored.removeprefix(PREFIX).encode()).decode()
        except InvalidToken:
            raise SecretsError(
                "SECRET_UNREADABLE", "no key of SECRETS_KEYS decrypts a stored secret."
            ) from None


def sealer(settings: Settings) -> Sealer:
    return _sealer(keys(settings))


@functools.cache
def _sealer(keys: tuple[str, ...]) -> Sealer:
    return Sealer(keys)


def keys(settings: Settings) -> tuple[str, ...]:
    """SECRETS_KEYS; without them, outside production, the key file's (made on first use)."""
    if settings.secrets_keys:
        return settings.secrets_keys
    if settings.is_production:
        raise SecretsError(
            "SECRETS_KEYS_MISSING",
            "SECRETS_KEYS must be set in production (a Fernet key: `python -c 'from "
            "cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`).",
        )
    return _read_or_make(key_file(settings))


def key_file(settings: Settings) -> Path:
    if settings.secrets_key_file:
        return Path(settings.secrets_key_file)
    url = settings.database_url
    if url.startswith("sqlite://") and url != "sqlite://:memory:":
        return Path(url.removeprefix("sqlite://") + ".keys")
    return ROOT / KEY_FILE


def _read_or_make(path: Path) -> tuple[str, ...]:
    if not path.exists():
        _make(path)
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("the secrets key file %s can be read by others than its owner", path)
    found = tuple(
        key.strip() for key in path.read_text().replace(",", "\n").splitlines() if key.strip()
    )
    if not found:
        raise SecretsError("SECRETS_KEYS_MISSING", f"the secrets key file {path} holds no key.")
    return found


def _make(path: Path) -> None:
    """A new key in `path` (mode 0600), written whole before it appears under its name, and
    never over a file another process made meanwhile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, draft = tempfile.mkstemp(dir=path.parent, prefix=".secrets-")  # mode 0600
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(Fernet.generate_key().decode() + "\n")
        with contextlib.suppress(FileExistsError):  # another process made it first: theirs
            os.link(draft, path)
            log.warning(
                "SECRETS_KEYS is not set: generated a key into %s (mode 0600), which encrypts "
                "the webhooks' secrets; without it they are lost: keep it (apart from the "
                "database's backups), or set SECRETS_KEYS",
                path,
            )
    finally:
        os.unlink(draft)


# The settings migrations run with (`manage.migrate` sets them; migration 0022 seals with their
# keys); under the `tortoise` CLI, the environment's.
migration_settings: ContextVar[Settings | None] = ContextVar("migration_settings", default=None)


@contextlib.contextmanager
def migrating_with(settings: Settings) -> Iterator[None]:
    token = migration_settings.set(settings)
    try:
        yield
    finally:
        migration_settings.reset(token)


def for_migration() -> Sealer:
    return sealer(migration_settings.get() or Settings.from_env())


# Stored secrets, in SQL of either dialect (migrations run this against the tables as they
# stand, whatever the models say later).

COLUMNS = ("secret", "previous_secret")


async def reseal_all(client: Any, sealer: Sealer) -> int:
    """Seal every stored secret with the first key (clear ones included); how many changed.

    Each value is replaced only if it is still the one read, so a secret rotated meanwhile
    (`rotateWebhookSecret`) is left as that rotation wrote it."""
    return await _convert(client, sealer.reseal)


async def unseal_all(client: Any, sealer: Sealer) -> int:
    """Every stored secret back in clear (migration 0022's reversal)."""
    return await _convert(client, lambda stored: _clear(sealer, stored))


def _clear(sealer: Sealer, stored: str) -> str:
    return sealer.open(stored) if stored.startswith(PREFIX) else stored


async def _convert(client: Any, convert: Callable[[str], str]) -> int:
    postgres = client.capabilities.dialect == "postgres"
    changed = 0
    for column in COLUMNS:
        rows = await client.execute_query_dict(
            f'SELECT "id", "{column}" AS "value" FROM "webhook_endpoint" '
            f'WHERE "{column}" IS NOT NULL ORDER BY "id"'
        )
        update = (
            f'UPDATE "webhook_endpoint" SET "{column}" = $1 WHERE "id" = $2 AND "{column}" = $3'
            if postgres
            else f'UPDATE "webhook_endpoint" SET "{column}" = ? WHERE "id" = ? AND "{column}" = ?'
        )
        for row in rows:
            value = convert(row["value"])
            if value != row["value"]:
                count, _ = await client.execute_query(update, [value, row["id"], row["value"]])
                changed += count
    return changed
