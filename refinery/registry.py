"""One discovery mechanism for everything that is found by name: stages, readers, CLI commands.

Why: a config names a stage, a file extension names a reader, the command line names a command. Each lives in
its own module and registers itself when that module is imported; a `Registry` imports its package once, on
first use, so adding a stage, a reader or a command is adding one file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Things of one kind, by name, registered by the modules of `package` (all imported on first lookup)."""

    def __init__(self, kind: str, package: str, skip: tuple[str, ...] = ()):
        self.kind = kind
        self.package = package
        self.skip = skip  # sub-packages with registries of their own
        self._items: dict[str, T] = {}
        self._loaded = False

    def add(self, name: str, item: T) -> T:
        other = self._items.get(name)
        same = (
            other is item
            or other == item
            or (
                getattr(other, "__qualname__", None) is not None
                and getattr(other, "__qualname__", None) == getattr(item, "__qualname__", None)
            )
        )
        if other is not None and not same:
            raise ValueError(
                f"{self.kind} name {name!r} is registered twice ({_origin(other)} and {_origin(item)})"
            )
        self._items[name] = item
        return item

    def decorator(self, key: Callable[[T], str]) -> Callable[[T], T]:
        """A class decorator registering the class under `key(cls)`."""

        def register(item: T) -> T:
            name = key(item)
            if not name:
                raise TypeError(f"{_origin(item)} needs a {self.kind} name")
            return self.add(name, item)

        return register

    def load(self) -> dict[str, T]:
        if not self._loaded:
            pkg = importlib.import_module(self.package)
            for mod in pkgutil.walk_packages(pkg.__path__, prefix=f"{self.package}."):
                if not any(mod.name == s or mod.name.startswith(s + ".") for s in self.skip):
                    importlib.import_module(mod.name)
            self._loaded = True
        return dict(self._items)

    def get(self, name: str) -> T:
        items = self.load()
        if name not in items:
            raise KeyError(f"unknown {self.kind} {name!r} (known: {', '.join(sorted(items))})")
        return items[name]

    def names(self) -> list[str]:
        return sorted(self.load())


def _origin(item: object) -> str:
    return f"{getattr(item, '__module__', '?')}.{getattr(item, '__qualname__', type(item).__name__)}"
