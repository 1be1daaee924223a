"""Embedders by name: ``"local"`` (the embedded default), ``"local:<directory or hub id>"``,
``"openai:<model>"``, or an :class:`~noted.retrieval.Embedder` as it is.

``DEFAULT_EMBEDDER`` (the default of ``Memory(embedder=...)``, the agent, the CLI and the
server) stands for ``$NOTED_EMBEDDER`` when it is set, else ``"local"``; ``None`` and
``"none"`` mean no embedder (keyword search only).
"""

from __future__ import annotations

import os
from typing import Final

from noted.errors import UserError
from noted.retrieval.embedders import Embedder

__all__ = ["DEFAULT_EMBEDDER", "EMBEDDER_ENV", "get_embedder", "resolve_embedder"]

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


def get_embedder(spec: Embedder | str) -> Embedder:
    if isinstance(spec, Embedder):
        return spec
    if not isinstance(spec, str):
        raise UserError(f"embedder must be an Embedder or a name such as 'local', got {spec!r}")
    provider, _, name = spec.partition(":")
    if provider == "local":
        from noted.retrieval.local import LocalEmbedder, default_embedder

        return LocalEmbedder(name) if name else default_embedder()
    if provider == "openai" and name:
        from noted.retrieval.openai import OpenAIEmbedder

        return OpenAIEmbedder(name)
    raise UserError(
        f"unknown embedder {spec!r}: use 'local', 'local:<directory or hub id>' or "
        "'openai:<model>' (e.g. 'openai:text-embedding-3-small'), or pass an Embedder"
    )
