"""Models. Every module here registers itself in `mmer.registry.MODELS` (imported on first registry use)."""
