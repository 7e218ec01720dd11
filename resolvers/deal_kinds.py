"""Leads and opportunities share their roles (contact, participants, followers) and comments.

A DealKind names the tables of one kind, so that the code handling roles is written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from models import (
    Lead,
    LeadFollower,
    LeadParticipant,
    Opportunity,
    OpportunityFollower,
    OpportunityParticipant,
)

D = TypeVar("D", Lead, Opportunity)


@dataclass(frozen=True)
class DealKind(Generic[D]):
    name: str
    model: type[D]
    participant: type[LeadParticipant] | type[OpportunityParticipant]
    follower: type[LeadFollower] | type[OpportunityFollower]
    comment_field: str  # the column of `comment` pointing at this kind
    title_field: str

    @property
    def label(self) -> str:
        return self.name.lower()


LEAD: DealKind[Lead] = DealKind("Lead", Lead, LeadParticipant, LeadFollower, "lead_id", "title")
OPPORTUNITY: DealKind[Opportunity] = DealKind(
    "Opportunity",
    Opportunity,
    OpportunityParticipant,
    OpportunityFollower,
    "opportunity_id",
    "name",
)
KINDS: dict[str, DealKind[Any]] = {kind.name: kind for kind in (LEAD, OPPORTUNITY)}
