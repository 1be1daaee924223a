"""Embedders by name: ``"local"`` (the embedded default), ``"local:<directory or hub id>"``,
``"openai:<model>"``, or an :class:`~noted.retrieval.Embedder` as it is."""

from __future__ import annotations

from noted.errors import UserError
from noted.retrieval.embedders import Embedder

__all__ = ["get_embedder"]


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
