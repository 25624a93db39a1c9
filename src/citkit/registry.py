"""Name -> class registries for methods, scorers, streams and the like.

Registration happens on import of the subpackage (no directory scanning). Duplicate names raise;
an unknown name raises with the known names and the closest match.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from citkit.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of objects of one kind (e.g. method classes)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated object under `name`."""

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(
                    f"{self.kind} name {name!r} is already registered by {self._entries[name]!r}; "
                    f"choose another name for {obj!r}"
                )
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Return the object registered as `name`, or raise `UnknownNameError` with suggestions."""
        if name in self._entries:
            return self._entries[name]
        known = sorted(self._entries)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownNameError(f"unknown {self.kind} {name!r}{hint} Known: {', '.join(known)}")

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
