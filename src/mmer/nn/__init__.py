"""Blocks shared by several models (written once, used by all)."""
