"""The embedder a Memory, an agent, the ``noted`` command and the server use when none is
named: ``DEFAULT_EMBEDDER`` stands for ``$NOTED_EMBEDDER`` when it is set, else ``"local"``
(the embedded model); ``None`` and ``"none"`` mean no embedder (keyword search only)."""

from __future__ import annotations

import os
from typing import Final

from noted.retrieval.embedders import Embedder
from noted.retrieval.registry import get_embedder

__all__ = ["DEFAULT_EMBEDDER", "EMBEDDER_ENV", "resolve_embedder"]

DEFAULT_EMBEDDER: Final = "default"
EMBEDDER_ENV: Final = "NOTED_EMBEDDER"


def resolve_embedder(spec: Embedder | str | None) -> Embedder | None:
    """The embedder ``spec`` names, or None for ``None`` / ``"none"``; ``"default"`` is
    ``$NOTED_EMBEDDER``, else ``"local"`` (nothing is loaded until the first embedding)."""
    if spec == DEFAULT_EMBEDDER:
        spec = os.environ.get(EMBEDDER_ENV, "").strip() or "local"
    if spec is None or spec == "none":
        return None
    return get_embedder(spec)
