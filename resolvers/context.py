"""What a resolver knows about the request it serves."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from models import User
from resolvers.errors import unauthenticated
from resolvers.loaders import Loaders


@dataclass
class RequestContext:
    request_id: str
    viewer: User | None = None
    token_hash: str | None = None
    auth_error: str | None = None
    request: Any = None
    response: Any = None
    # The viewer's reports, transitively; filled on first use by resolvers.permissions.
    team_ids: set[int] | None = None
    log_fields: dict[str, Any] = field(default_factory=dict)
    # Events this request wrote, to publish once their transaction has committed.
    written_events: list[Any] = field(default_factory=list)

    @cached_property
    def loaders(self) -> Loaders:
        org_id = self.viewer.organization_id if self.viewer else 0
        return Loaders(org_id)

    def require_viewer(self) -> User:
        if self.viewer is None:
            raise unauthenticated(self.auth_error or unauthenticated().message)
        return self.viewer
