"""Things chosen by name (policies of several kinds): one small registry shape for all of them.

Each built-in implementation registers itself when its module is imported; the registry imports
the built-in modules the first time it is asked (lazily, because those modules import the
interface module that owns the registry).
"""

from collections.abc import Callable
from typing import Generic, TypeVar

Factory = TypeVar("Factory")


class Registry(Generic[Factory]):
    def __init__(self, kind: str, load_builtins: Callable[[], None]) -> None:
        self._kind = kind
        self._load_builtins = load_builtins
        self._factories: dict[str, Factory] = {}

    def register(self, name: str, factory: Factory) -> None:
        self._factories[name] = factory

    def get(self, name: str) -> Factory:
        """The factory registered as `name`; ValueError naming the known ones otherwise."""
        self._load_builtins()
        try:
            return self._factories[name]
        except KeyError:
            known = ", ".join(self.names())
            raise ValueError(f"unknown {self._kind} {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        self._load_builtins()
        return sorted(self._factories)
