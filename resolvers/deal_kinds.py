"""The kinds of records users follow, and what leads and opportunities share besides.

A FollowedKind names the tables of one kind of followed record (its rows, its followers), so that
following, events and notifications are written once for leads, opportunities, accounts and
contacts. A DealKind adds what leads and opportunities share: participants and comments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tortoise.models import Model

from models import (
    Account,
    AccountFollower,
    Contact,
    ContactFollower,
    Lead,
    LeadFollower,
    LeadParticipant,
    Opportunity,
    OpportunityFollower,
    OpportunityParticipant,
)

D = TypeVar("D", Lead, Opportunity)
R = TypeVar("R", bound=Model)


@dataclass(frozen=True)
class FollowedKind(Generic[R]):
    name: str
    model: type[R]
    follower: type[Any]  # its followers' table: `record_id`, `user_id`

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def is_deal(self) -> bool:
        return False


@dataclass(frozen=True)
class DealKind(FollowedKind[D]):
    participant: type[LeadParticipant] | type[OpportunityParticipant]
    comment_field: str  # the column of `comment` pointing at this kind
    title_field: str

    @property
    def is_deal(self) -> bool:
        return True


LEAD: DealKind[Lead] = DealKind(
    name="Lead",
    model=Lead,
    follower=LeadFollower,
    participant=LeadParticipant,
    comment_field="lead_id",
    title_field="title",
)
OPPORTUNITY: DealKind[Opportunity] = DealKind(
    name="Opportunity",
    model=Opportunity,
    follower=OpportunityFollower,
    participant=OpportunityParticipant,
    comment_field="opportunity_id",
    title_field="name",
)
ACCOUNT: FollowedKind[Account] = FollowedKind("Account", Account, AccountFollower)
CONTACT: FollowedKind[Contact] = FollowedKind("Contact", Contact, ContactFollower)
KINDS: dict[str, DealKind[Any]] = {kind.name: kind for kind in (LEAD, OPPORTUNITY)}
FOLLOWED: dict[str, FollowedKind[Any]] = {
    kind.name: kind for kind in (LEAD, OPPORTUNITY, ACCOUNT, CONTACT)
}
