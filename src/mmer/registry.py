"""Name -> factory registries for models and datasets.

Modules register themselves with a decorator; `mmer.models` and `mmer.data.readers` import all their submodules
on first use, so adding a model or reader is adding one file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from mmer.errors import ConfigError, unknown_name

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    options: type | None  # dataclass of the entry's own configuration, or None
    summary: str
    needs_root: bool = False  # datasets: reads files under --root (built-in generators do not)


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str):
        self.kind = kind
        self._package = package
        self._entries: dict[str, Entry[T]] = {}
        self._loaded = False

    def register(
        self, name: str, *, options: type | None = None, summary: str = "", needs_root: bool = False
    ) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._entries:
                raise RuntimeError(f"{self.kind} '{name}' registered twice")
            doc = summary or ((getattr(obj, "__doc__", None) or "").strip().splitlines() or [""])[0]
            self._entries[name] = Entry(name, obj, options, doc, needs_root)
            return obj

        return deco

    def _load_all(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        package = importlib.import_module(self._package)
        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self._package}.{info.name}")

    def get(self, name: str) -> Entry[T]:
        self._load_all()
        if name not in self._entries:
            raise ConfigError(unknown_name(self.kind, name, self._entries))
        return self._entries[name]

    def names(self) -> list[str]:
        self._load_all()
        return sorted(self._entries)

    def __iter__(self) -> Iterator[Entry[T]]:
        self._load_all()
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __contains__(self, name: str) -> bool:
        self._load_all()
        return name in self._entries


MODELS: Registry[Any] = Registry("model", "mmer.models")
DATASETS: Registry[Any] = Registry("dataset", "mmer.data.readers")
