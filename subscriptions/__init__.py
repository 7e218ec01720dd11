"""Live updates. For now: the event bus's lifecycle; the events and subscriptions come next."""
