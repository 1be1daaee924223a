"""Keyword ranking pieces the stores share: the words of free text, a safe full-text query
built from them, and BM25 for stores without a full-text index."""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

__all__ = [
    "bm25_scores",
    "fts_match",
    "fts_terms",
]

WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_TERMS = 32


def fts_terms(text: str) -> list[str]:
    """The words of ``text`` for a full-text query: letters and digits only, so quotes,
    operators (AND, NEAR, ``*``, ``:``) and emoji can never change the query's meaning;
    lowercase, deduplicated, at most 32, longest first when there are more."""
    words = list(dict.fromkeys(w.casefold() for w in WORD.findall(text)))
    if len(words) > MAX_TERMS:
        keep = set(sorted(words, key=len, reverse=True)[:MAX_TERMS])
        words = [w for w in words if w in keep]
    return words


# Words that say little about what a memory is about; left out of keyword queries unless a
# query has nothing else.
_STOPWORD_TEXT = """
a about above after again all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from
further had has have having he her here hers herself him himself his how i if in into is
it its itself just me more most my myself no nor not now of off on once only or other
our ours out over own same she should so some such than that the their theirs them then
there these they this those through to too under until up very was we were what when
where which while who whom why will with would you your yours yourself
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def fts_match(text: str, owner: str | None = None) -> str | None:
    """An FTS5 query for the words of ``text`` (any of them, ranked by BM25), within the
    ``owner`` column's phrase when given; None when ``text`` has no words. Every word is
    quoted, so nothing in ``text`` is read as query syntax."""
    words = fts_terms(text)
    content = [w for w in words if w not in STOPWORDS] or words
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


@functools.lru_cache(maxsize=32_768)
def _bag(document: str) -> tuple[dict[str, int], int]:
    """A document's stemmed words with their counts, and how many there are: computed once
    per text while it stays among the most recently ranked."""
    stems = [_stem(w) for w in fts_terms(document)]
    return dict(Counter(stems)), len(stems)


def bm25_scores(
    documents: Sequence[str], text: str, *, k1: float = 1.2, b: float = 0.75
) -> list[float]:
    """BM25 of each document for the words of ``text`` (0 when none occurs), for stores
    that have no full-text index of their own."""
    words = fts_terms(text)
    wanted = {_stem(w) for w in ([w for w in words if w not in STOPWORDS] or words)}
    bags = [_bag(doc) for doc in documents]
    if not wanted or not bags:
        return [0.0] * len(bags)
    average = sum(size for _, size in bags) / len(bags) or 1.0
    holding = {w: sum(1 for counts, _ in bags if w in counts) for w in wanted}
    idf = {w: math.log(1 + (len(bags) - n + 0.5) / (n + 0.5)) for w, n in holding.items() if n}
    scores: list[float] = []
    for counts, size in bags:
        score = 0.0
        for word, weight in idf.items():
            count = counts.get(word)
            if count:
                score += weight * count * (k1 + 1) / (count + k1 * (1 - b + b * size / average))
        scores.append(score)
    return scores
