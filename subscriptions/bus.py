"""The process's connection to the event bus (broadcaster), opened and closed with the app."""

from __future__ import annotations

from broadcaster import Broadcast


def create_bus(url: str) -> Broadcast:
    """memory:// (one process, the default), redis:// or postgres:// (many processes)."""
    return Broadcast(url)
