"""Hybrid ranking: keyword and semantic results fused into one list.

Each side's scores are scaled to 0..1 over its own results (min-max: the best becomes 1, the
weakest 0; a memory one side did not find gets 0 there), then added with weights. On the
LoCoMo benchmark this weighted sum recalled more evidence than reciprocal rank fusion,
which throws away how far apart the scores are (see docs/benchmarks.md).
Optionally, newer memories are favoured: ``recency_weight`` of the final score comes from
the memory's age, halving every ``half_life``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

from noted._time import utc_now
from noted.db.base import ScoredMemory
from noted.errors import UserError
from noted.schema import UserMemory

__all__ = ["SEMANTIC_WEIGHT", "Hit", "check_half_life", "fuse", "fuse_hits", "min_max"]

SEMANTIC_WEIGHT = 0.3


class Hit(NamedTuple):
    """One search result before its memory is read: what fusing needs and nothing more.
    ``key`` is how its store finds the memory again; ``stamp`` is the memory's
    ``updated_at`` in seconds since the epoch (None when it has none)."""

    key: Hashable
    memory_id: str
    score: float
    stamp: float | None


def min_max(results: Sequence[ScoredMemory]) -> dict[str, float]:
    """memory_id -> score scaled to 0..1 over ``results`` (all 1 when they are equal)."""
    return _scaled([(r.memory.memory_id or "", r.score) for r in results])


def _scaled(scores: Sequence[tuple[str, float]]) -> dict[str, float]:
    if not scores:
        return {}
    low = min(score for _, score in scores)
    span = max(score for _, score in scores) - low
    return {key: (score - low) / span if span > 0 else 1.0 for key, score in scores}


def check_half_life(half_life: object) -> None:
    if not isinstance(half_life, timedelta) or half_life <= timedelta(0):
        raise UserError(f"half_life must be a positive timedelta, got {half_life!r}")


def _check_weight(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise UserError(f"{name} must be a number from 0 to 1, got {value!r}")
    return float(value)


def fuse_hits(
    keyword: Sequence[Hit],
    semantic: Sequence[Hit],
    *,
    semantic_weight: float = SEMANTIC_WEIGHT,
    recency_weight: float = 0.0,
    half_life: timedelta = timedelta(days=30),
    now: datetime | None = None,
    limit: int | None = None,
) -> list[tuple[Hit, float]]:
    """Every hit of either list once (the first ``limit``) with its fused score, best
    first (ties: newer first, then by memory id)."""
    semantic_weight = _check_weight("semantic_weight", semantic_weight)
    recency_weight = _check_weight("recency_weight", recency_weight)
    check_half_life(half_life)
    if recency_weight and now is None:
        now = utc_now()
    hits: dict[str, Hit] = {}
    for hit in (*semantic, *keyword):
        hits.setdefault(hit.memory_id, hit)
    by_keyword = _scaled([(h.memory_id, h.score) for h in keyword])
    by_meaning = _scaled([(h.memory_id, h.score) for h in semantic])
    seconds = half_life.total_seconds()
    at = 0.0 if now is None else now.timestamp()
    ranked: list[tuple[float, float, str]] = []
    for memory_id, hit in hits.items():
        score = semantic_weight * by_meaning.get(memory_id, 0.0) + (
            1 - semantic_weight
        ) * by_keyword.get(memory_id, 0.0)
        if recency_weight and hit.stamp is not None:
            age = max((at - hit.stamp) / seconds, 0.0)
            score = (1 - recency_weight) * score + recency_weight * 0.5**age
        ranked.append((-score, -(hit.stamp or 0.0), memory_id))
    ranked.sort()
    return [(hits[memory_id], -score) for score, _, memory_id in ranked[:limit]]


def fuse(
    keyword: Sequence[ScoredMemory],
    semantic: Sequence[ScoredMemory],
    *,
    semantic_weight: float = SEMANTIC_WEIGHT,
    recency_weight: float = 0.0,
    half_life: timedelta = timedelta(days=30),
    now: datetime | None = None,
    limit: int | None = None,
) -> list[ScoredMemory]:
    """Every memory of either list once (the first ``limit``), best fused score first
    (ties: newer first)."""
    memories: dict[str, UserMemory] = {}

    def hits(results: Sequence[ScoredMemory]) -> list[Hit]:
        found = []
        for result in results:
            memory = result.memory
            memory_id = memory.memory_id or ""
            memories.setdefault(memory_id, memory)
            found.append(Hit(memory_id, memory_id, result.score, _stamp(memory)))
        return found

    by_meaning = hits(semantic)
    fused = fuse_hits(
        hits(keyword),
        by_meaning,
        semantic_weight=semantic_weight,
        recency_weight=recency_weight,
        half_life=half_life,
        now=now,
        limit=limit,
    )
    return [ScoredMemory(memories[hit.memory_id], score) for hit, score in fused]


def _stamp(memory: UserMemory) -> float | None:
    return None if memory.updated_at is None else memory.updated_at.timestamp()
