"""Filtering, ordering and search done in Python over one user's memories: for stores whose
server has no full-text or vector index of its own (in-memory, Redis, MongoDB without one)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from noted.db.base import MemoryQuery, ScoredMemory
from noted.retrieval.ranking import bm25_scores
from noted.retrieval.vectors import Vector, top_indices
from noted.schema import UserMemory

__all__ = ["keyword_rank", "matches", "page", "semantic_rank", "sort_memories"]


def matches(query: MemoryQuery, m: UserMemory) -> bool:
    """Whether ``m`` passes the query's filters (its user is the caller's concern)."""
    after, before = query.updated_after, query.updated_before
    return (
        (query.agent_id is None or m.agent_id == query.agent_id)
        and (query.team_id is None or m.team_id == query.team_id)
        and (not query.topics or not set(query.topics).isdisjoint(m.topics))
        and (after is None or (m.updated_at is not None and m.updated_at >= after))
        and (before is None or (m.updated_at is not None and m.updated_at < before))
    )


def page(items: list[ScoredMemory], query: MemoryQuery) -> list[ScoredMemory]:
    end = None if query.limit is None else query.offset + query.limit
    return items[query.offset : end]


def sort_memories(found: list[UserMemory], query: MemoryQuery) -> list[UserMemory]:
    """The query's order (ties by id, in the same direction) and page."""
    found.sort(
        key=lambda m: (getattr(m, query.sort_by), m.memory_id),
        reverse=query.sort_order == "desc",
    )
    end = None if query.limit is None else query.offset + query.limit
    return found[query.offset : end]


def keyword_rank(found: Sequence[UserMemory], query: MemoryQuery, text: str) -> list[ScoredMemory]:
    """BM25 over the memories' text, topics and input; those sharing no word are left out.
    ``found`` must already be the user's memories that pass the query's filters."""
    documents = [" ".join([m.memory, *m.topics, m.input or ""]) for m in found]
    scored = [
        ScoredMemory(m, score)
        for m, score in zip(found, bm25_scores(documents, text), strict=True)
        if score > 0
    ]
    scored.sort(key=lambda r: (-r.score, r.memory.memory_id or ""))
    return page(scored, query)


def semantic_rank(
    found: Sequence[tuple[UserMemory, Vector]], query: MemoryQuery, target: Vector
) -> list[ScoredMemory]:
    """Cosine similarity (unit vectors: a dot product) of each memory's vector to
    ``target``, best first. Vectors of another size than ``target`` are left out."""
    usable = [(m, v) for m, v in found if v.shape == target.shape]
    if not usable or query.limit == 0:
        return []
    scores = np.stack([v for _, v in usable]) @ target
    count = None if query.limit is None else query.offset + query.limit
    return [
        ScoredMemory(usable[i][0], float(scores[i]))
        for i in top_indices(scores, count)[query.offset :]
    ]
