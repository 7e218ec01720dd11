"""What a resolver knows about the request it serves."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from config import Settings
from models import User
from resolvers.errors import unauthenticated
from resolvers.loaders import Loaders
from resolvers.pagination import PageBounds


@dataclass
class OperationWrites:
    # Events written, to announce once their transaction has committed.
    events: list[Any] = field(default_factory=list)
    # Sessions revoked, so that open subscriptions re-check theirs.
    sessions_revoked: bool = False


_writes: ContextVar[OperationWrites | None] = ContextVar("crm_operation_writes", default=None)


def begin_operation() -> OperationWrites:
    """Start recording what an operation writes (in its task's context)."""
    writes = OperationWrites()
    _writes.set(writes)
    return writes


@dataclass
class RequestContext:
    request_id: str
    # The settings of the app serving the request (server.create_app): resolvers read them here.
    settings: Settings
    viewer: User | None = None
    token_hash: str | None = None
    auth_error: str | None = None
    request: Any = None
    response: Any = None
    # The viewer's reports, transitively: read with the session (resolvers/auth.py) on
    # PostgreSQL, else on first use by resolvers.permissions.
    team_ids: set[int] | None = None
    log_fields: dict[str, Any] = field(default_factory=dict)
    # The process's live hub (subscriptions.hub.Hub), or in a worker's jobs its doorbell on the
    # bus (subscriptions.bus.Doorbell: `announce` only); None elsewhere.
    hub: Any = None
    # A websocket's context serves every operation of the connection (see schema.extensions).
    over_websocket: bool = False
    # Over websockets: the connection_init payload.
    connection_params: dict[str, Any] | None = None
    # The API key the request came with (models.ApiKey); the viewer is then its creator.
    api_key: Any = None
    # The rate limit and persisted-query mode every operation passes (schema.engine.gate.Gate).
    gate: Any = None
    # A query sent with its persisted-query hash: remembered if the gate lets it through.
    persist_query: bool = False
    # A websocket counted against its user's connections (released when it closes), and its
    # live subscriptions open now.
    connection_counted: bool = False
    open_feeds: int = 0

    @property
    def writes(self) -> OperationWrites:
        """What the current operation wrote. Per operation, not per context: the operations of
        one websocket share its context and may run at the same time."""
        writes = _writes.get()
        if writes is None:  # outside an operation (manage.py): nobody will announce them
            writes = begin_operation()
        return writes

    @property
    def page_bounds(self) -> PageBounds:
        """The page sizes this request may ask for (an API key's requests page further)."""
        return PageBounds.of(self.settings, api_key=self.api_key is not None)

    @cached_property
    def loaders(self) -> Loaders:
        org_id = self.viewer.organization_id if self.viewer else 0
        return Loaders(org_id)

    def forget_cached(self) -> None:
        """Drop what loaders and permission checks cached: a websocket's context lives as long
        as the connection, and each delivered event must see the rows as they are now."""
        self.__dict__.pop("loaders", None)
        self.team_ids = None

    def require_viewer(self) -> User:
        if self.viewer is None:
            raise unauthenticated(self.auth_error or unauthenticated().message)
        return self.viewer
