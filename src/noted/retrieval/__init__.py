"""Retrieval: embedders, and the ranking that keyword, semantic and hybrid search share."""

from noted.retrieval.embedders import BaseEmbedder, Embedder, Kind, Vectors
from noted.retrieval.fastembed_models import FastEmbedEmbedder
from noted.retrieval.local import LocalEmbedder, default_embedder
from noted.retrieval.openai import OpenAIEmbedder

__all__ = [
    "BaseEmbedder",
    "Embedder",
    "FastEmbedEmbedder",
    "Kind",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "Vectors",
    "default_embedder",
]
