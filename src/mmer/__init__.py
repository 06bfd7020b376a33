"""mmer: multi-party multi-modal multi-label emotion recognition."""

__version__ = "0.1.0"
