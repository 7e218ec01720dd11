"""Live updates: the event bus, the per-process hub, and the feeds subscribers read."""
