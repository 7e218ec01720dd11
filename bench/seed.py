"""A realistic CRM data set, written in bulk straight into PostgreSQL (COPY) or SQLite.

Rows are built from the models' own columns and defaults, so they stay valid as the models grow.
Sizes per organization (full / quick): 5,000 / 500 accounts, 20,000 / 2,000 contacts, 20,000 /
2,000 opportunities with 3 participants and 5 followers each on average, an activity and a
comment per opportunity, 50 / 20 users.

`seed_tenants` writes the tenant-scale data set of bench/tenants.py: many organizations in the
same tables, their rows interleaved as a deployment's are (see `Tenants`).
"""

from __future__ import annotations

import math
import operator
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any

from tortoise.models import Model

from models import (
    DEFAULT_STAGES,
    Account,
    Activity,
    Comment,
    Contact,
    Opportunity,
    OpportunityFollower,
    OpportunityParticipant,
    Organization,
    PipelineStage,
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
    password_hash: str = "!",
    private: float = 0.17,
) -> None:
    """One organization's data set; its users are sellers reporting to the admin, whose
    password hash is `password_hash` ("!": none can log in); `private` of the opportunities are
    PRIVATE."""
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
                "password_hash": password_hash,
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
                "visibility": "PRIVATE" if rng.random() < private else "ORGANIZATION",
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


class Layout:
    """A model's columns, and each row's values in their order from the few fields given.

    `given` names the fields a caller supplies, in the order of the tuples passed to `row`; every
    other column takes its field's default (a callable default is refused: it would need a call
    per row). For millions of rows, where `table_rows`' dictionaries cost more than the COPY.
    """

    def __init__(self, model: type[Model], given: Sequence[str]) -> None:
        projection = model._meta.fields_db_projection
        names = list(projection)
        unknown = set(given) - set(names)
        if unknown:
            raise ValueError(f"{model.__name__} has no field {sorted(unknown)}")
        extras: list[Any] = []
        positions: list[int] = []
        for name in names:
            if name in given:
                positions.append(given.index(name))
                continue
            field_ = model._meta.fields_map[name]
            if callable(field_.default) or name in ("created_at", "updated_at"):
                raise ValueError(f"{model.__name__}.{name} must be given")
            value = field_.default
            extras.append(value.value if isinstance(value, Enum) else value)
            positions.append(len(given) + len(extras) - 1)
        self.table: str = model._meta.db_table
        self.columns = [projection[name] for name in names]
        self._extras = tuple(extras)
        self._pick = operator.itemgetter(*positions)

    def row(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        return self._pick(values + self._extras)


BASE_TIME = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # fixed: the same rows on every run
BASE_DATE = date(2026, 7, 1)
INDUSTRIES = ["Software", "Retail", "Energy", "Healthcare", "Finance", "Logistics"]
COUNTRIES = ["France", "Germany", "United States", "Spain", "Japan"]


@dataclass(frozen=True)
class Roster:
    """An organization's users: an admin; directors (sales managers reporting to the admin) in a
    large organization; sales managers (reporting to a director, or to the admin); sellers,
    each in a manager's team."""

    admin: int
    directors: list[int]
    managers: list[int]
    sellers: list[int]
    manager_of: dict[int, int | None] = field(repr=False)

    @property
    def everyone(self) -> list[int]:
        return [self.admin, *self.directors, *self.managers, *self.sellers]

    def role(self, user_id: int) -> str:
        if user_id == self.admin:
            return "ADMIN"
        return "SELLER" if user_id in self.sellers else "SALES_MANAGER"


@dataclass(frozen=True)
class Tenants:
    """The tenant-scale data set: `organizations` organizations in the same tables, organization
    BIG with `big` opportunities and every other one `small`; per organization a quarter as many
    accounts and as many contacts as opportunities, 2-4 participants and 4-6 followers (drawn
    from its users) per opportunity, `private` of them PRIVATE, owners spread over the sellers,
    `big_users` / `small_users` users (see Roster); an activity and a comment per opportunity,
    in every organization (`history` "all") or in the big one only ("big").

    Each organization's rows come from random streams of its own, and ids from fixed rules, so
    the small organization seeded alone (`seed_tenants(..., only=...)`) is the same rows, ids
    included, as among the others. Accounts, contacts and opportunities of all organizations are
    interleaved in id order (and so in the tables), as a deployment's rows are when every tenant
    creates records over time; participants, followers, activities and comments follow their
    opportunity (ids: the opportunity's times 4 or 6 plus a rank, and the opportunity's id)."""

    organizations: int
    big: int
    small: int
    big_users: int = 200
    small_users: int = 10
    private: float = 0.17
    history: str = "all"
    seed: int = 14

    BIG = 1

    @classmethod
    def full(cls) -> Tenants:
        """1,000 organizations, at least 1,000,000 opportunities, 200,000 in the big one."""
        return cls(1_000, 200_000, math.ceil(800_000 / 999))

    @classmethod
    def quick(cls) -> Tenants:
        """100 organizations, at least 50,000 opportunities, 10,000 in the big one."""
        return cls(100, 10_000, math.ceil(40_000 / 99))

    @property
    def small_id(self) -> int:
        """The small organization the bench measures: one among the others."""
        return self.organizations // 2

    def opportunities(self, organization: int) -> int:
        return self.big if organization == self.BIG else self.small

    def accounts(self, organization: int) -> int:
        return max(1, self.opportunities(organization) // 4)

    def contacts(self, organization: int) -> int:
        return self.opportunities(organization)

    def users(self, organization: int) -> int:
        return self.big_users if organization == self.BIG else self.small_users

    def total_opportunities(self) -> int:
        return self.big + self.small * (self.organizations - 1)

    def stages(self, organization: int) -> list[int]:
        """The ids of the organization's stages, in DEFAULT_STAGES order."""
        first = (organization - 1) * len(DEFAULT_STAGES) + 1
        return list(range(first, first + len(DEFAULT_STAGES)))

    def roster(self, organization: int) -> Roster:
        count = self.users(organization)
        first = 1 + (organization - 1) * self.small_users
        if organization > self.BIG:
            first += self.big_users - self.small_users
        ids = list(range(first, first + count))
        directors = count // 50
        managers = max(2, count // 10)
        admin, tops, middles, sellers = (
            ids[0],
            ids[1 : 1 + directors],
            ids[1 + directors : 1 + directors + managers],
            ids[1 + directors + managers :],
        )
        manager_of: dict[int, int | None] = {admin: None}
        for pk in tops:
            manager_of[pk] = admin
        for index, pk in enumerate(middles):
            manager_of[pk] = tops[index % len(tops)] if tops else admin
        for index, pk in enumerate(sellers):
            manager_of[pk] = middles[index % len(middles)]
        return Roster(admin, tops, middles, sellers, manager_of)

    def interleaving(self, table: str, count: Callable[[int], int]) -> list[int]:
        """The organization of each row of `table` in id order (ids from 1)."""
        slots: list[int] = []
        for organization in range(1, self.organizations + 1):
            slots.extend([organization] * count(organization))
        random.Random(f"{self.seed}:{table}").shuffle(slots)
        return slots

    def stream(self, table: str, organization: int) -> random.Random:
        return random.Random(f"{self.seed}:{table}:{organization}")


def email(user_id: int) -> str:
    """A seeded user's login."""
    return f"user{user_id}@tenants.bench.example"


async def seed_tenants(
    write: Writer,
    plan: Tenants,
    password_hash: str,
    *,
    only: int | None = None,
    batch: int = 50_000,
) -> None:
    """The data set of `plan` (every organization, or only the organization `only`), written to
    empty tables through `write` in batches of about `batch` rows. Every user's password hash is
    `password_hash`."""
    organizations = [only] if only is not None else list(range(1, plan.organizations + 1))
    rosters = {organization: plan.roster(organization) for organization in organizations}

    def when(pk: int) -> datetime:
        return BASE_TIME + timedelta(seconds=30 * pk)

    layout = Layout(Organization, ("id", "name", "created_at", "updated_at"))
    await write(
        layout.table,
        layout.columns,
        [layout.row((o, f"Tenant {o}", BASE_TIME, BASE_TIME)) for o in organizations],
    )
    layout = Layout(
        PipelineStage,
        (
            "id",
            "organization_id",
            "name",
            "position",
            "probability",
            "is_won",
            "is_lost",
            "forecast_category",
            "created_at",
            "updated_at",
        ),
    )
    stage_rows = []
    for o in organizations:
        for pk, (position, (name, probability, won, lost, category)) in zip(
            plan.stages(o), enumerate(DEFAULT_STAGES, start=1), strict=True
        ):
            stage_rows.append(
                layout.row(
                    (pk, o, name, position, probability, won, lost, category.value)
                    + (BASE_TIME, BASE_TIME)
                )
            )
    await write(layout.table, layout.columns, stage_rows)
    layout = Layout(
        User,
        (
            "id",
            "organization_id",
            "email",
            "full_name",
            "password_hash",
            "role",
            "manager_id",
            "created_at",
            "updated_at",
        ),
    )
    user_rows = []
    for o, roster in rosters.items():
        for pk in roster.everyone:
            role = roster.role(pk)
            name = f"{role.replace('_', ' ').title()} {pk}"
            user_rows.append(
                layout.row(
                    (pk, o, email(pk), name, password_hash, role, roster.manager_of[pk])
                    + (BASE_TIME, BASE_TIME)
                )
            )
    await write(layout.table, layout.columns, user_rows)

    def ids_by_organization(slots: list[int]) -> dict[int, list[int]]:
        found: dict[int, list[int]] = {o: [] for o in organizations}
        for pk, o in enumerate(slots, start=1):
            if o in found:
                found[o].append(pk)
        return found

    async def flush(layout: Layout, rows: list[tuple[Any, ...]], at_least: int) -> None:
        if rows and len(rows) >= at_least:
            await write(layout.table, layout.columns, rows)
            rows.clear()

    account_slots = plan.interleaving("account", plan.accounts)
    accounts = ids_by_organization(account_slots)
    layout = Layout(
        Account,
        ("id", "organization_id", "name", "industry", "country", "owner_id")
        + ("created_at", "updated_at"),
    )
    streams: dict[int, random.Random] = {}
    rows: list[tuple[Any, ...]] = []
    for pk, o in enumerate(account_slots, start=1):
        if only is not None and o != only:
            continue
        rng = streams.get(o) or streams.setdefault(o, plan.stream("account", o))
        at = when(pk)
        rows.append(
            layout.row(
                (pk, o, f"Account {pk}", rng.choice(INDUSTRIES), rng.choice(COUNTRIES))
                + (rng.choice(rosters[o].sellers), at, at)
            )
        )
        await flush(layout, rows, batch)
    await flush(layout, rows, 1)
    del account_slots

    contact_slots = plan.interleaving("contact", plan.contacts)
    contacts = ids_by_organization(contact_slots)
    layout = Layout(
        Contact,
        ("id", "organization_id", "first_name", "last_name", "email", "account_id", "owner_id")
        + ("created_at", "updated_at"),
    )
    streams = {}
    for pk, o in enumerate(contact_slots, start=1):
        if only is not None and o != only:
            continue
        rng = streams.get(o) or streams.setdefault(o, plan.stream("contact", o))
        at = when(pk)
        rows.append(
            layout.row(
                (pk, o, f"First{pk}", f"Last{pk}", f"contact{pk}@client.example")
                + (rng.choice(accounts[o]), rng.choice(rosters[o].sellers), at, at)
            )
        )
        await flush(layout, rows, batch)
    await flush(layout, rows, 1)
    del contact_slots

    opportunity = Layout(
        Opportunity,
        (
            "id",
            "organization_id",
            "name",
            "account_id",
            "amount_cents",
            "stage_id",
            "probability",
            "forecast_category",
            "expected_close_date",
            "contact_id",
            "owner_id",
            "visibility",
            "created_at",
            "updated_at",
        ),
    )
    participant = Layout(
        OpportunityParticipant,
        ("id", "record_id", "contact_id", "role", "created_at", "updated_at"),
    )
    follower = Layout(
        OpportunityFollower, ("id", "record_id", "user_id", "created_at", "updated_at")
    )
    activity = Layout(
        Activity,
        ("id", "organization_id", "kind", "subject", "scheduled_at", "owner_id", "opportunity_id")
        + ("created_at", "updated_at"),
    )
    comment = Layout(
        Comment,
        ("id", "organization_id", "opportunity_id", "author_id", "body")
        + ("created_at", "updated_at"),
    )
    open_stages = [  # (rank in the organization's stages, probability, forecast category)
        (rank, probability, category.value)
        for rank, (_, probability, won, lost, category) in enumerate(DEFAULT_STAGES)
        if not won and not lost
    ]
    close_dates = [BASE_DATE + timedelta(days=day) for day in range(365)]
    opportunity_slots = plan.interleaving("opportunity", plan.opportunities)
    tables: list[tuple[Layout, list[tuple[Any, ...]]]] = [
        (opportunity, []),
        (participant, []),
        (follower, []),
        (activity, []),
        (comment, []),
    ]
    deals, links, follows, activities, comments = (rows for _, rows in tables)
    streams = {}
    for pk, o in enumerate(opportunity_slots, start=1):
        if only is not None and o != only:
            continue
        rng = streams.get(o) or streams.setdefault(o, plan.stream("opportunity", o))
        roster = rosters[o]
        at = when(pk)
        rank, probability, forecast = rng.choice(open_stages)
        contact = rng.choice(contacts[o])
        owner = rng.choice(roster.sellers)
        deals.append(
            opportunity.row(
                (
                    pk,
                    o,
                    f"Deal {pk}",
                    rng.choice(accounts[o]),
                    rng.randrange(1_000, 500_000) * 100,
                    plan.stages(o)[rank],
                    probability,
                    forecast,
                    close_dates[rng.randrange(365)],
                    contact,
                    owner,
                    "PRIVATE" if rng.random() < plan.private else "ORGANIZATION",
                    at,
                    at,
                )
            )
        )
        count = rng.choice((2, 3, 4))
        chosen = [c for c in rng.sample(contacts[o], count + 1) if c != contact][:count]
        for index, linked in enumerate(chosen):
            links.append(participant.row((pk * 4 + index, pk, linked, "Stakeholder", at, at)))
        for index, user in enumerate(rng.sample(roster.everyone, rng.choice((4, 5, 6)))):
            follows.append(follower.row((pk * 6 + index, pk, user, at, at)))
        if plan.history == "all" or o == plan.BIG:
            scheduled = at + timedelta(days=rng.randrange(1, 60))
            activities.append(
                activity.row((pk, o, "CALL", f"Call about deal {pk}", scheduled, owner, pk, at, at))
            )
            author = rng.choice(roster.everyone)
            comments.append(comment.row((pk, o, pk, author, f"Notes on deal {pk}", at, at)))
        if len(deals) >= batch // 4:
            for layout, pending in tables:
                await flush(layout, pending, 1)
    for layout, pending in tables:
        await flush(layout, pending, 1)


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
