"""Per-request DataLoaders: every relation of the graph is fetched through one of these.

Each batch function runs one statement for all the keys of a tick, scoped to the organization,
and returns results in key order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from strawberry.dataloader import DataLoader
from tortoise.expressions import Subquery
from tortoise.models import Model

from models import (
    Account,
    ActivityAttendee,
    Contact,
    ContactTag,
    Event,
    LineItem,
    PipelineStage,
    Product,
    User,
)

if TYPE_CHECKING:
    from resolvers.deal_kinds import DealKind

M = TypeVar("M", bound=Model)


def _by_id(rows: Iterable[M], keys: Sequence[int]) -> list[M | None]:
    found = {row.pk: row for row in rows}
    return [found.get(key) for key in keys]


class Loaders:
    def __init__(self, organization_id: int) -> None:
        self.organization_id = organization_id
        self._per_kind: dict[tuple[str, str], DataLoader[int, Any]] = {}

    def _rows_by_id(self, model: type[M], *, live_only: bool) -> DataLoader[int, M | None]:
        async def load(keys: list[int]) -> list[M | None]:
            query = model.filter(id__in=keys, organization_id=self.organization_id)
            if live_only:
                query = query.filter(deleted_at__isnull=True)
            return _by_id(await query, keys)

        return DataLoader(load_fn=load)

    @cached_property
    def user(self) -> DataLoader[int, User | None]:
        return self._rows_by_id(User, live_only=False)

    @cached_property
    def account(self) -> DataLoader[int, Account | None]:
        return self._rows_by_id(Account, live_only=True)

    @cached_property
    def contact(self) -> DataLoader[int, Contact | None]:
        return self._rows_by_id(Contact, live_only=True)

    @cached_property
    def tags(self) -> DataLoader[int, list[str]]:
        """The tags of each contact, alphabetically."""

        async def load(keys: list[int]) -> list[list[str]]:
            grouped: dict[int, list[str]] = defaultdict(list)
            rows = await (
                ContactTag.filter(contact_id__in=keys)
                .order_by("tag")
                .values_list("contact_id", "tag")
            )
            for contact_id, tag in rows:
                grouped[contact_id].append(tag)
            return [grouped[key] for key in keys]

        return DataLoader(load_fn=load)

    @cached_property
    def product(self) -> DataLoader[int, Product | None]:
        return self._rows_by_id(Product, live_only=False)

    @cached_property
    def line_items(self) -> DataLoader[int, list[LineItem]]:
        """The line items of each opportunity, oldest first."""

        async def load(keys: list[int]) -> list[list[LineItem]]:
            grouped: dict[int, list[LineItem]] = defaultdict(list)
            for row in await LineItem.filter(opportunity_id__in=keys).order_by("id"):
                grouped[row.opportunity_id].append(row)
            return [grouped[key] for key in keys]

        return DataLoader(load_fn=load)

    def products_used(self, field: str, won: Any) -> DataLoader[int, list[int]]:
        """The ids of the products on the won opportunities (`won`: those the viewer may read)
        of each account (field "account_id") or primary contact ("contact_id")."""

        async def load(keys: list[int]) -> list[list[int]]:
            deals = won.filter(**{f"{field}__in": keys}).values("id")
            pairs = await LineItem.filter(opportunity_id__in=Subquery(deals)).values_list(
                f"opportunity__{field}", "product_id"
            )
            used: dict[int, set[int]] = defaultdict(set)
            for owner_id, product_id in pairs:
                used[owner_id].add(product_id)
            return [sorted(used[key]) for key in keys]

        key = ("products_used", field)
        if key not in self._per_kind:
            self._per_kind[key] = DataLoader(load_fn=load)
        return self._per_kind[key]

    @cached_property
    def stage(self) -> DataLoader[int, PipelineStage | None]:
        return self._rows_by_id(PipelineStage, live_only=False)

    @cached_property
    def event(self) -> DataLoader[int, Event | None]:
        return self._rows_by_id(Event, live_only=False)

    @cached_property
    def attendee_ids(self) -> DataLoader[int, list[int]]:
        """The ids of the live contacts taking part in each activity."""

        async def load(keys: list[int]) -> list[list[int]]:
            grouped: dict[int, list[int]] = defaultdict(list)
            rows = await (
                ActivityAttendee.filter(activity_id__in=keys, contact__deleted_at__isnull=True)
                .order_by("id")
                .values_list("activity_id", "contact_id")
            )
            for activity_id, contact_id in rows:
                grouped[activity_id].append(contact_id)
            return [grouped[key] for key in keys]

        return DataLoader(load_fn=load)

    def deal(self, kind: DealKind[Any]) -> DataLoader[int, Any]:
        return self._kind_loader(kind, "deal", lambda: self._rows_by_id(kind.model, live_only=True))

    def participants(self, kind: DealKind[Any]) -> DataLoader[int, list[Any]]:
        """Participant rows (contact id and role) of each lead or opportunity, oldest first."""

        async def load(keys: list[int]) -> list[list[Any]]:
            grouped: dict[int, list[Any]] = defaultdict(list)
            rows = await kind.participant.filter(
                record_id__in=keys, contact__deleted_at__isnull=True
            ).order_by("id")
            for row in rows:
                grouped[row.record_id].append(row)
            return [grouped[key] for key in keys]

        return self._kind_loader(kind, "participants", lambda: DataLoader(load_fn=load))

    def follower_ids(self, kind: DealKind[Any]) -> DataLoader[int, list[int]]:
        """The ids of the users following each lead or opportunity, in the order they followed."""

        async def load(keys: list[int]) -> list[list[int]]:
            grouped: dict[int, list[int]] = defaultdict(list)
            rows = await (
                kind.follower.filter(record_id__in=keys)
                .order_by("id")
                .values_list("record_id", "user_id")
            )
            for record_id, user_id in rows:
                grouped[record_id].append(user_id)
            return [grouped[key] for key in keys]

        return self._kind_loader(kind, "followers", lambda: DataLoader(load_fn=load))

    def forget_roles(self, kind: DealKind[Any], record_id: int) -> None:
        """After a write to a record's roles, later loads in this request read them anew."""
        for name in ("participants", "followers"):
            loader = self._per_kind.get((kind.name, name))
            if loader is not None:
                loader.clear(record_id)

    def _kind_loader(self, kind: DealKind[Any], name: str, make: Any) -> DataLoader[int, Any]:
        key = (kind.name, name)
        if key not in self._per_kind:
            self._per_kind[key] = make()
        return self._per_kind[key]
