"""Ray cluster helpers: connect or start, list GPU types, build resource requests."""
