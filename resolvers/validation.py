"""Cleaning of input values: each function returns the clean value or raises BAD_USER_INPUT."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from models.base import to_cents
from resolvers.errors import bad_input

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
URL_RE = re.compile(r"^https?://[^\s/$.?#][^\s]*\.[^\s]+$", re.IGNORECASE)
MAX_AMOUNT = Decimal("1000000000000")  # one trillion: beyond any plausible deal


def text(value: str, field: str, *, max_length: int = 200) -> str:
    cleaned = value.strip()
    if not cleaned:
        raise bad_input(field, f"{field} must not be empty.")
    if len(cleaned) > max_length:
        raise bad_input(field, f"{field} must be at most {max_length} characters.")
    if "\x00" in cleaned:  # PostgreSQL text cannot hold it
        raise bad_input(field, f"{field} must not contain NUL characters.")
    try:
        cleaned.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape: no database takes it
        raise bad_input(field, f"{field} is not valid Unicode text.") from None
    return cleaned


def single_line(value: str, field: str, *, max_length: int = 200) -> str:
    """Text that becomes an email header (a subject): no line breaks, which would add headers."""
    cleaned = text(value, field, max_length=max_length)
    if "\r" in cleaned or "\n" in cleaned:
        raise bad_input(field, f"{field} must be a single line.")
    return cleaned


def optional_text(value: str | None, field: str, *, max_length: int = 200) -> str | None:
    if value is None or not value.strip():
        return None
    return text(value, field, max_length=max_length)


def email(value: str, field: str = "email") -> str:
    cleaned = text(value, field, max_length=254)
    if not EMAIL_RE.match(cleaned):
        raise bad_input(field, f"{cleaned!r} is not a valid email address.")
    local, _, domain = cleaned.rpartition("@")
    return f"{local}@{domain.lower()}"


def optional_email(value: str | None, field: str = "email") -> str | None:
    if value is None or not value.strip():
        return None
    return email(value, field)


def website(value: str | None, field: str = "website") -> str | None:
    cleaned = optional_text(value, field, max_length=500)
    if cleaned is None:
        return None
    if "://" not in cleaned:
        cleaned = f"https://{cleaned}"
    if len(cleaned) > 500:  # the prefix counts: the column holds 500
        raise bad_input(field, f"{field} must be at most 500 characters.")
    if not URL_RE.match(cleaned):
        raise bad_input(field, f"{value!r} is not a valid web address.")
    return cleaned


def password(value: str, field: str = "password") -> str:
    if not value.strip():
        raise bad_input(field, "Passwords must not be empty or only spaces.")
    if len(value) < 10:
        raise bad_input(field, "Passwords must be at least 10 characters long.")
    if len(value) > 200:
        raise bad_input(field, "Passwords must be at most 200 characters long.")
    return value


def amount_cents(value: Decimal, field: str) -> int:
    try:
        if not value.is_finite():
            raise bad_input(field, f"{field} must be a finite number.")
        if value < 0:
            raise bad_input(field, f"{field} must not be negative.")
        if value > MAX_AMOUNT:
            raise bad_input(field, f"{field} must be at most {MAX_AMOUNT}.")
        if value != value.quantize(Decimal("0.01")):
            raise bad_input(field, f"{field} has at most two decimal places.")
    except InvalidOperation:
        raise bad_input(field, f"{field} is not a valid amount.") from None
    return to_cents(value)


def currency(value: str, field: str = "currency") -> str:
    cleaned = value.strip().upper()
    if not CURRENCY_RE.match(cleaned):
        raise bad_input(field, f"{value!r} is not an ISO 4217 currency code such as EUR or USD.")
    return cleaned


def probability(value: int, field: str = "probability") -> int:
    if not 0 <= value <= 100:
        raise bad_input(field, "probability is a percentage from 0 to 100.")
    return value


def moment(value: datetime, field: str) -> datetime:
    """A time in the supported range (as dates are), in UTC; one without an offset is UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if not datetime(2000, 1, 2, tzinfo=UTC) <= value <= datetime(2199, 12, 31, tzinfo=UTC):
        raise bad_input(field, f"{field} must be between 2000-01-02 and 2199-12-31.")
    return value.astimezone(UTC)


def close_date(value: date, field: str = "expectedCloseDate") -> date:
    if not date(2000, 1, 1) <= value <= date(2200, 1, 1):
        raise bad_input(field, f"{field} must be between 2000-01-01 and 2200-01-01.")
    return value
