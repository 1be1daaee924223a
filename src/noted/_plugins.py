"""Named factories that plug-in packages can add to: models, embedders and stores.

noted registers its own providers in code; another package adds one by declaring an entry
point in the registry's group, which is read the first time a name is not known::

    [project.entry-points."noted.models"]      # "myvendor:model-id" -> factory("model-id")
    myvendor = "myvendor_noted:make_model"
    [project.entry-points."noted.embedders"]   # "myvendor:name" -> factory("name")
    [project.entry-points."noted.stores"]      # "myvendor://..." -> factory(url, **options)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from noted.errors import UserError

__all__ = ["Registry"]

log = logging.getLogger("noted")

F = TypeVar("F", bound=Callable[..., object])


class Registry(Generic[F]):
    """Factories by lowercase name, for one entry-point ``group``."""

    def __init__(self, group: str, kind: str) -> None:
        self.group = group
        self.kind = kind
        self._factories: dict[str, F] = {}
        self._loaded = False
        self._lock = threading.Lock()

    def register(self, name: str, factory: F) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise UserError(f"a {self.kind} name must be a plain name, got {name!r}")
        if not callable(factory):
            raise UserError(f"a {self.kind} factory must be callable, got {factory!r}")
        self._factories[name.lower()] = factory

    def get(self, name: str) -> F | None:
        key = name.strip().lower()
        if key not in self._factories:
            self._load_plugins()
        return self._factories.get(key)

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._factories)

    def _load_plugins(self) -> None:
        """Register the group's entry points once (those not registered already)."""
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            for point in entry_points(group=self.group):
                if point.name.lower() in self._factories:
                    continue
                try:
                    factory = point.load()
                except (ImportError, AttributeError) as exc:
                    log.warning(
                        "%s plug-in %r (%s) did not load: %s",
                        self.kind,
                        point.name,
                        point.value,
                        exc,
                    )
                    continue
                self.register(point.name, factory)
