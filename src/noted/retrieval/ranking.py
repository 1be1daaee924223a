"""Ranking pieces that every store shares: exact cosine top-k, reciprocal rank fusion,
recency weighting, and a safe full-text query built from free text."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["cosine_top", "fts_terms", "recency_factor", "reciprocal_rank_fusion"]

_TERM = re.compile(r"[^\W_]+", re.UNICODE)
MAX_TERMS = 32


def fts_terms(text: str) -> list[str]:
    """The words of ``text`` for a full-text query: letters and digits only, so quotes,
    operators (AND, NEAR, ``*``, ``:``) and emoji can never change the query's meaning;
    lowercase, deduplicated, at most 32, longest first when there are more."""
    words = list(dict.fromkeys(w.casefold() for w in _TERM.findall(text)))
    if len(words) > MAX_TERMS:
        keep = set(sorted(words, key=len, reverse=True)[:MAX_TERMS])
        words = [w for w in words if w in keep]
    return words


def cosine_top(
    query: npt.NDArray[np.float32], matrix: npt.NDArray[np.float32], limit: int
) -> list[tuple[int, float]]:
    """(row, cosine) of the ``limit`` rows most similar to ``query``, best first (rows and
    query are unit length, so the dot product is the cosine)."""
    if matrix.shape[0] == 0 or limit <= 0:
        return []
    scores = matrix @ query
    if limit < scores.shape[0]:
        top = np.argpartition(-scores, limit - 1)[:limit]
    else:
        top = np.arange(scores.shape[0])
    ordered = top[np.argsort(-scores[top], kind="stable")]
    return [(int(i), float(scores[i])) for i in ordered]


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]],
    *,
    weights: Sequence[float] | None = None,
    k: float = 60.0,
) -> dict[str, float]:
    """Each id's fused score: the sum over rankings of ``weight / (k + rank)`` (rank from 1)."""
    fused: dict[str, float] = {}
    for index, ranking in enumerate(rankings):
        weight = 1.0 if weights is None else weights[index]
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return fused


def recency_factor(age_days: Mapping[str, float], half_life_days: float) -> dict[str, float]:
    """A multiplier in (0, 1] per id that halves every ``half_life_days`` of age."""
    return {key: math.pow(0.5, max(age, 0.0) / half_life_days) for key, age in age_days.items()}
