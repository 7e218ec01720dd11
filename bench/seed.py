"""A realistic CRM data set, written in bulk straight into PostgreSQL (COPY) or SQLite.

Rows are built from the models' own columns and defaults, so they stay valid as the models grow.
Sizes per organization (full / quick): 5,000 / 500 accounts, 20,000 / 2,000 contacts, 20,000 /
2,000 opportunities with 3 participants and 5 followers each on average, an activity and a
comment per opportunity, 50 / 20 users.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any

from tortoise.models import Model

from models import (
    Account,
    Activity,
    Comment,
    Contact,
    Opportunity,
    OpportunityFollower,
    OpportunityParticipant,
    User,
)

Writer = Callable[[str, list[str], list[tuple[Any, ...]]], Awaitable[None]]


@dataclass(frozen=True)
class Size:
    accounts: int
    contacts: int
    opportunities: int
    users: int

    @classmethod
    def of(cls, quick: bool) -> Size:
        return cls(500, 2_000, 2_000, 20) if quick else cls(5_000, 20_000, 20_000, 50)


def table_rows(model: type[Model], rows: Iterable[dict[str, Any]]) -> tuple[list[str], list[tuple]]:
    """The model's columns, and each row's values in their order (defaults filled in)."""
    projection = model._meta.fields_db_projection
    names = list(projection)
    now = datetime.now(UTC)
    values = []
    for row in rows:
        item = []
        for name in names:
            if name in row:
                value = row[name]
            elif name in ("created_at", "updated_at"):
                value = now
            else:
                field = model._meta.fields_map[name]
                value = field.default() if callable(field.default) else field.default
            item.append(value.value if isinstance(value, Enum) else value)
        values.append(tuple(item))
    return [projection[name] for name in names], values


class Ids:
    """Explicit ids, above whatever the tables hold already."""

    def __init__(self, start: dict[str, int]) -> None:
        self.next = dict(start)

    def take(self, table: str, count: int) -> list[int]:
        first = self.next[table]
        self.next[table] = first + count
        return list(range(first, first + count))


async def seed_organization(
    write: Writer,
    organization_id: int,
    admin_id: int,
    stage_ids: Sequence[int],
    start_ids: dict[str, int],
    size: Size,
    rng: random.Random,
) -> None:
    ids = Ids(start_ids)
    now = datetime.now(UTC)
    users = ids.take("crm_user", size.users)
    await _write(
        write,
        User,
        (
            {
                "id": pk,
                "organization_id": organization_id,
                "email": f"bench-{organization_id}-{pk}@bench.example",
                "full_name": f"Seller {pk}",
                "password_hash": "!",
                "role": "SELLER",
                "manager_id": admin_id,
            }
            for pk in users
        ),
    )
    owners = [admin_id, *users]
    accounts = ids.take("account", size.accounts)
    await _write(
        write,
        Account,
        (
            {
                "id": pk,
                "organization_id": organization_id,
                "name": f"Account {pk}",
                "industry": rng.choice(["Software", "Retail", "Energy", "Healthcare"]),
                "country": rng.choice(["France", "Germany", "United States"]),
                "owner_id": rng.choice(owners),
            }
            for pk in accounts
        ),
    )
    contacts = ids.take("contact", size.contacts)
    contact_account = {pk: rng.choice(accounts) for pk in contacts}
    await _write(
        write,
        Contact,
        (
            {
                "id": pk,
                "organization_id": organization_id,
                "first_name": f"First{pk}",
                "last_name": f"Last{pk}",
                "email": f"contact{pk}@client.example",
                "account_id": contact_account[pk],
                "owner_id": rng.choice(owners),
            }
            for pk in contacts
        ),
    )
    opportunities = ids.take("opportunity", size.opportunities)
    stage_of = {pk: rng.choice(stage_ids) for pk in opportunities}
    await _write(
        write,
        Opportunity,
        (
            {
                "id": pk,
                "organization_id": organization_id,
                "name": f"Deal {pk}",
                "account_id": rng.choice(accounts),
                "amount_cents": rng.randrange(1_000, 500_000) * 100,
                "currency": "USD",
                "stage_id": stage_of[pk],
                "probability": rng.choice([10, 25, 50, 75]),
                "expected_close_date": date.today() + timedelta(days=rng.randrange(1, 365)),
                "contact_id": rng.choice(contacts),
                "owner_id": rng.choice(owners),
            }
            for pk in opportunities
        ),
    )
    links = [
        (pk, contact)
        for pk in opportunities
        for contact in rng.sample(contacts, rng.choice([2, 3, 4]))
    ]
    await _write(
        write,
        OpportunityParticipant,
        (
            {"id": link_id, "record_id": pk, "contact_id": contact, "role": "Stakeholder"}
            for link_id, (pk, contact) in zip(
                ids.take("opportunity_participant", len(links)), links, strict=True
            )
        ),
    )
    follows = [
        (pk, user) for pk in opportunities for user in rng.sample(owners, rng.choice([4, 5, 6]))
    ]
    await _write(
        write,
        OpportunityFollower,
        (
            {"id": link_id, "record_id": pk, "user_id": user}
            for link_id, (pk, user) in zip(
                ids.take("opportunity_follower", len(follows)), follows, strict=True
            )
        ),
    )
    await _write(
        write,
        Activity,
        (
            {
                "id": activity_id,
                "organization_id": organization_id,
                "kind": "CALL",
                "subject": f"Call about deal {pk}",
                "scheduled_at": now + timedelta(days=rng.randrange(-30, 30)),
                "owner_id": rng.choice(owners),
                "opportunity_id": pk,
            }
            for activity_id, pk in zip(
                ids.take("activity", len(opportunities)), opportunities, strict=True
            )
        ),
    )
    await _write(
        write,
        Comment,
        (
            {
                "id": comment_id,
                "organization_id": organization_id,
                "opportunity_id": pk,
                "author_id": rng.choice(owners),
                "body": f"Notes on deal {pk}",
            }
            for comment_id, pk in zip(
                ids.take("comment", len(opportunities)), opportunities, strict=True
            )
        ),
    )


async def seed_paging(
    write: Writer, organization_id: int, owner_id: int, start_id: int, count: int
) -> None:
    """`count` contacts in an organization of their own, for deep paging."""
    await _write(
        write,
        Contact,
        (
            {
                "id": pk,
                "organization_id": organization_id,
                "first_name": "Page",
                "last_name": f"Row{pk}",
                "owner_id": owner_id,
            }
            for pk in range(start_id, start_id + count)
        ),
    )


async def _write(write: Writer, model: type[Model], rows: Iterable[dict[str, Any]]) -> None:
    columns, values = table_rows(model, rows)
    await write(model._meta.db_table, columns, values)


def sqlite_value(value: Any) -> Any:
    """How Tortoise keeps values in SQLite."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00:00")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    return value
