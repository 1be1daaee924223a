"""Ranking pieces that every store shares: exact cosine top-k, reciprocal rank fusion,
recency weighting, and a safe full-text query built from free text."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "bm25_scores",
    "cosine_top",
    "fts_match",
    "fts_terms",
    "recency_factor",
    "reciprocal_rank_fusion",
]

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


# Words that say little about what a memory is about; left out of keyword queries unless a
# query has nothing else.
_STOPWORDS = frozenset(
    [
        "a",
        "about",
        "after",
        "again",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "just",
        "me",
        "more",
        "most",
        "my",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
    ]
)


def fts_match(text: str, owner: str | None = None) -> str | None:
    """An FTS5 query for the words of ``text`` (any of them, ranked by BM25), within the
    ``owner`` column's phrase when given; None when ``text`` has no words. Every word is
    quoted, so nothing in ``text`` is read as query syntax."""
    words = fts_terms(text)
    content = [w for w in words if w not in _STOPWORDS] or words
    if not content:
        return None
    query = "{memory topics input} : (" + " OR ".join(f'"{w}"' for w in content) + ")"
    owner_words = fts_terms(owner) if owner is not None else []
    if owner_words:
        query = 'owner : "' + " ".join(owner_words) + '" AND ' + query
    return query


def _stem(word: str) -> str:
    """A light stemmer (accents off; -ing, -ed and plural -s dropped, a doubled final
    consonant undone), close enough to the full-text index's for stores without one."""
    word = "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouls":
                word = word[:-1]
            return word
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def bm25_scores(
    documents: Sequence[str], text: str, *, k1: float = 1.2, b: float = 0.75
) -> list[float]:
    """BM25 of each document for the words of ``text`` (0 when none occurs), for stores
    that have no full-text index of their own."""
    words = fts_terms(text)
    wanted = {_stem(w) for w in ([w for w in words if w not in _STOPWORDS] or words)}
    bags = [[_stem(w) for w in fts_terms(doc)] for doc in documents]
    if not wanted or not bags:
        return [0.0] * len(bags)
    average = sum(map(len, bags)) / len(bags) or 1.0
    holding = {w: sum(1 for bag in bags if w in bag) for w in wanted}
    idf = {w: math.log(1 + (len(bags) - n + 0.5) / (n + 0.5)) for w, n in holding.items() if n}
    scores: list[float] = []
    for bag in bags:
        score = 0.0
        for word, weight in idf.items():
            count = bag.count(word)
            if count:
                score += weight * count * (k1 + 1) / (count + k1 * (1 - b + b * len(bag) / average))
        scores.append(score)
    return scores


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
