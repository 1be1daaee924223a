"""Embedders by name: ``"local"`` (the embedded default), ``"local:<directory or hub id>"``,
``"openai:<model>"``, ``"fastembed:<model>"`` (the ``fastembed`` extra), or an
:class:`~noted.retrieval.Embedder` as it is. Another package adds a name with
:func:`register_embedder` or an entry point in the ``noted.embedders`` group (see
:mod:`noted._plugins`)."""

from __future__ import annotations

from collections.abc import Callable

from noted._plugins import Registry
from noted.errors import UserError
from noted.retrieval.embedders import Embedder

__all__ = ["get_embedder", "register_embedder"]

EmbedderFactory = Callable[[str], Embedder]
EMBEDDERS: Registry[EmbedderFactory] = Registry("noted.embedders", "embedder")


def register_embedder(name: str, factory: EmbedderFactory) -> None:
    """Make ``"name"`` build ``factory("")`` and ``"name:rest"`` ``factory("rest")``."""
    EMBEDDERS.register(name, factory)


def _local(name: str) -> Embedder:
    from noted.retrieval.local import LocalEmbedder, default_embedder

    return LocalEmbedder(name) if name else default_embedder()


def _openai(name: str) -> Embedder:
    if not name:
        raise UserError("an OpenAI embedder needs a model: 'openai:text-embedding-3-small'")
    from noted.retrieval.openai import OpenAIEmbedder

    return OpenAIEmbedder(name)


def _fastembed(name: str) -> Embedder:
    from noted.retrieval.fastembed_models import FastEmbedEmbedder

    return FastEmbedEmbedder(name)


register_embedder("local", _local)
register_embedder("openai", _openai)
register_embedder("fastembed", _fastembed)


def get_embedder(spec: Embedder | str) -> Embedder:
    if isinstance(spec, Embedder):
        return spec
    if not isinstance(spec, str):
        raise UserError(f"embedder must be an Embedder or a name such as 'local', got {spec!r}")
    provider, _, name = spec.partition(":")
    factory = EMBEDDERS.get(provider) if provider.isidentifier() else None
    if factory is None:
        raise UserError(
            f"unknown embedder {spec!r}: use 'local', 'local:<directory or hub id>', "
            "'openai:<model>' (e.g. 'openai:text-embedding-3-small') or 'fastembed:<model>' "
            "(e.g. 'fastembed:BAAI/bge-small-en-v1.5'), or pass an Embedder "
            f"(known: {', '.join(EMBEDDERS.names())})"
        )
    return factory(name)
