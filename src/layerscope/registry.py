"""A name -> object table whose unknown-name error lists the valid choices."""

from __future__ import annotations

from typing import Generic, Iterator, TypeVar

from layerscope.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps config names (e.g. ``activation.name``) to builders."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        """Add ``item`` under ``name``; a name may be registered once."""
        if name in self._items:
            raise KeyError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        """Return the item called ``name`` or raise a ConfigError listing the choices."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise ConfigError(
                f"{self.kind}.name={name!r} is unknown; choose one of: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
