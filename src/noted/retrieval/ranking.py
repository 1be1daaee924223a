"""Keyword ranking pieces the stores share: the words of free text, and BM25 for stores
without a full-text index."""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence
from itertools import chain

import numpy as np
import numpy.typing as npt

from noted.retrieval.porter import porter_stem

__all__ = [
    "KeywordIndex",
    "PatchedIndex",
    "bm25_scores",
    "content_terms",
    "fts_terms",
    "query_stems",
]

# The letters and digits that SQLite's full-text tokenizer (unicode61: Unicode 6.1's
# tables) splits words at: marks in Unicode 6.1, letters since. A word holds none of them,
# so each word is one token to every index (SqliteDb tags each word with its owner).
FTS_SEPARATORS = "\u19b0-\u19c0\u19c8\u19c9\u1cf2\u1cf3"  # ranges, as in a [...] class
WORD = re.compile(rf"[^\W_{FTS_SEPARATORS}]+", re.UNICODE)
MAX_TERMS = 32


def words_of(text: str) -> list[str]:
    """The runs of letters and digits of ``text``, in order, once its accents are composed
    with their letters (NFC): a "u" followed by a combining diaeresis is the letter "ü",
    not a word "u" and a word "rich"."""
    return WORD.findall(unicodedata.normalize("NFC", text))


def fts_terms(text: str) -> list[str]:
    """The words of ``text`` for a full-text query: letters and digits only, so quotes,
    operators (AND, NEAR, ``*``, ``:``) and emoji can never change the query's meaning;
    lowercase, deduplicated, at most 32, longest first when there are more."""
    words = list(dict.fromkeys(w.casefold() for w in words_of(text)))
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


def content_terms(text: str) -> list[str]:
    """The words a keyword query for ``text`` looks for: its :func:`fts_terms` less the
    stopwords (all of them when it has nothing else)."""
    words = fts_terms(text)
    return [w for w in words if w not in STOPWORDS] or words


@functools.lru_cache(maxsize=65_536)
def _stem(word: str) -> str:
    """A lowercase word's stem as SQLite's index makes it: accents off, then Porter's
    stemmer."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))
    return porter_stem(plain)


@functools.lru_cache(maxsize=32_768)
def _bag(document: str) -> tuple[dict[str, int], int]:
    """A document's stemmed words with their counts, and how many there are: computed once
    per text while it stays among the most recently ranked. Every word counts, each time
    it occurs (a query's words are capped and deduplicated; a document's are not)."""
    stems = [_stem(w.casefold()) for w in words_of(document)]
    return dict(Counter(stems)), len(stems)


def query_stems(text: str) -> set[str]:
    """The stems a keyword query looks for: its words less the stopwords (all of them when
    it has nothing else)."""
    return {_stem(w) for w in content_terms(text)}


def _postings(
    bags: list[dict[str, int]], words: Collection[str] | None
) -> tuple[Iterable[str], npt.NDArray[np.intp], Iterable[int]]:
    """Every (stem, document position, count) of the stems of ``bags`` (each document's
    counts), or of ``words`` only, as three parallel columns in any order. A few words are
    looked up one at a time, a pass over the documents each: cheaper than listing every
    stem of every document to keep a few."""
    if words is None:
        sizes = [len(bag) for bag in bags]
        positions = np.repeat(np.arange(len(bags)), sizes)
        return chain.from_iterable(bags), positions, chain.from_iterable(b.values() for b in bags)
    found = [(w, k) for w in words for k, bag in enumerate(bags) if w in bag]
    positions = np.array([k for _, k in found], dtype=np.intp)
    return (w for w, _ in found), positions, (bags[k][w] for w, k in found)


_NONE = np.zeros(0, dtype=np.int32)
Postings = tuple[npt.NDArray[np.integer], npt.NDArray[np.int32]]


class _BM25:
    """BM25 over documents of ``_sizes`` (``_total_size`` in all) whose postings a
    subclass gives, a document holding a word once in them."""

    __slots__ = ("_sizes", "_total_size")
    _sizes: npt.NDArray[np.int32]
    _total_size: int

    def postings(self, word: str) -> Postings:
        """The positions of the documents holding stem ``word`` and its count in each."""
        raise NotImplementedError

    def scores(
        self,
        text: str,
        subset: npt.NDArray[np.bool_] | None = None,
        *,
        k1: float = 1.2,
        b: float = 0.75,
    ) -> npt.NDArray[np.float64]:
        """BM25 of each document for the words of ``text``: 0 when none occurs, and for the
        documents ``subset`` (a mask) leaves out. The others score as BM25 over the
        subset's documents alone (its document count, average length and each word's
        document frequency), with the float operations of the formula applied document by
        document, in the same order: the same scores to the last bit, only on arrays."""
        sizes, total_size = self._sizes, self._total_size
        scores = np.zeros(len(sizes))
        if subset is None:
            total = len(sizes)
        else:
            total, total_size = int(np.count_nonzero(subset)), int(sizes[subset].sum())
        wanted = query_stems(text)
        if not wanted or not total:
            return scores
        average = total_size / total or 1.0
        for word in wanted:  # a score adds its words' terms in this order
            positions, counts = self.postings(word)
            if subset is not None:
                inside = subset[positions]
                positions, counts = positions[inside], counts[inside]
            holding = len(positions)
            if not holding:
                continue
            weight = math.log(1 + (total - holding + 0.5) / (holding + 0.5))
            held = sizes[positions]
            scores[positions] += (
                weight * counts * (k1 + 1) / (counts + k1 * (1 - b + b * held / average))
            )
        return scores


def _word_bytes(words: Collection[str]) -> int:
    return 100 * len(words) + sum(map(len, words))


class KeywordIndex(_BM25):
    """BM25 over a fixed sequence of documents, from postings made once: a query costs a few
    array operations on the postings of its own words, instead of a look at every document.

    The postings of every word lie in two flat arrays (positions, then counts), each word's
    run in position order, found by ``_start``: far fewer objects than one list per word.
    Never changed once made, so threads share it.
    """

    __slots__ = ("_counts", "_positions", "_start", "_word_bytes", "_words")

    def __init__(self, documents: Iterable[str], words: Collection[str] | None = None) -> None:
        """Index ``documents``; only the stems in ``words`` when given (one query's, as
        :func:`bm25_scores` needs), else every stem."""
        bags = [_bag(document) for document in documents]
        stems, positions, counts = _postings([bag for bag, _ in bags], words)
        ids: defaultdict[str, int] = defaultdict(int)
        ids.default_factory = ids.__len__  # a new word's id is the count before it
        word_ids = np.fromiter(map(ids.__getitem__, stems), dtype=np.int64)  # all in C
        order = np.argsort(word_ids * len(bags) + positions)  # by word, then position
        self._words = dict(ids)
        self._word_bytes = _word_bytes(self._words)
        self._start = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(np.bincount(word_ids, minlength=len(ids)), out=self._start[1:])
        self._positions = positions[order].astype(np.int32)
        self._counts = np.fromiter(counts, dtype=np.int32)[order]
        self._sizes = np.array([size for _, size in bags], dtype=np.int32)
        self._total_size = int(self._sizes.sum())

    @classmethod
    def of_postings(cls, index: _BM25, words: Collection[str]) -> KeywordIndex:
        """One index of ``index``'s documents with its postings of ``words`` only, made
        from those postings (the documents are not read again)."""
        names: list[str] = []
        positions: list[npt.NDArray[np.integer]] = [np.zeros(0, dtype=np.int32)]
        counts: list[npt.NDArray[np.int32]] = [_NONE]
        for word in sorted(words):
            held, times = index.postings(word)
            if held.size:
                order = np.argsort(held, kind="stable")  # in position order, as made
                names.append(word)
                positions.append(held[order])
                counts.append(times[order])
        made = cls.__new__(cls)
        made._words = {word: i for i, word in enumerate(names)}
        made._word_bytes = _word_bytes(made._words)
        made._start = np.zeros(len(names) + 1, dtype=np.int64)
        np.cumsum(np.array([p.size for p in positions[1:]], dtype=np.int64), out=made._start[1:])
        made._positions = np.concatenate(positions).astype(np.int32)
        made._counts = np.concatenate(counts).astype(np.int32)
        made._sizes = index._sizes.copy()
        made._total_size = index._total_size
        return made

    @property
    def nbytes(self) -> int:
        """Roughly what the index takes in the process (a word's entry: about 100 bytes,
        counted once when the index is made: caches ask on every read)."""
        arrays = (self._start, self._positions, self._counts, self._sizes)
        return sum(a.nbytes for a in arrays) + self._word_bytes

    def postings(self, word: str) -> Postings:
        """The positions of the documents holding stem ``word``, in order, and its count
        in each (empty when none does)."""
        index = self._words.get(word)
        if index is None:
            return _NONE, _NONE
        start, end = self._start[index], self._start[index + 1]
        return self._positions[start:end], self._counts[start:end]


class PatchedIndex(_BM25):
    """BM25 over documents kept in a few :class:`KeywordIndex` parts, each part's
    positions placed among the whole's by an array (-1: a document taken out): a copy of
    a large index after a few documents were added, changed or taken out, without
    indexing the others again. Scores equal those of one index of the documents as they
    are now, to the last bit. Never changed once made."""

    __slots__ = ("_parts",)

    def __init__(
        self, parts: Sequence[tuple[KeywordIndex, npt.NDArray[np.intp]]], count: int
    ) -> None:
        self._parts = tuple(parts)
        self._sizes = np.zeros(count, dtype=np.int32)
        for index, where in self._parts:
            alive = where >= 0
            self._sizes[where[alive]] = index._sizes[alive]
        self._total_size = int(self._sizes.sum())

    @classmethod
    def patch(
        cls,
        base: KeywordIndex | PatchedIndex,
        moved: npt.NDArray[np.intp],
        documents: Sequence[str],
        placed: npt.NDArray[np.intp],
        count: int,
        words: Collection[str] | None = None,
        *,
        every: Sequence[str] | None = None,
    ) -> KeywordIndex | PatchedIndex | None:
        """``base`` with its document at position ``p`` moved to ``moved[p]`` (-1: taken
        out) and ``documents`` added at ``placed``, ``count`` documents in all. Past eight
        parts, the parts beside the largest are indexed again as one from ``every`` (the
        documents as they are now, by position), while they hold at most a quarter as
        many documents as it. None when it is better made again whole: more than a quarter
        of the documents it would hold taken out, or more than eight parts that cannot be
        merged so. An index of a few ``words`` only is made one again from its postings
        then (see KeywordIndex.of_postings), never None."""
        if isinstance(base, KeywordIndex):
            old = [(base, np.arange(len(base._sizes), dtype=np.intp))]
        else:
            old = list(base._parts)
        parts = [(index, np.where(where >= 0, moved[where], -1)) for index, where in old]
        if documents:
            parts.append((KeywordIndex(documents, words=words), placed))
        indexed = sum(len(index._sizes) for index, _ in parts)
        worn = 4 * (indexed - count) > indexed  # a quarter of what it indexes taken out
        if not worn and len(parts) > _MOST_PARTS and every is not None:
            parts = _merged_beside_largest(parts, every, words)
        if worn or len(parts) > _MOST_PARTS:
            return None if words is None else KeywordIndex.of_postings(cls(parts, count), words)
        return cls(parts, count)

    @property
    def nbytes(self) -> int:
        return self._sizes.nbytes + sum(i.nbytes + w.nbytes for i, w in self._parts)

    def postings(self, word: str) -> Postings:
        found = []
        for index, where in self._parts:
            positions, counts = index.postings(word)
            if positions.size:
                placed = where[positions]
                alive = placed >= 0
                found.append((placed[alive], counts[alive]))
        if not found:
            return np.zeros(0, dtype=np.intp), _NONE
        if len(found) == 1:
            return found[0]
        return np.concatenate([p for p, _ in found]), np.concatenate([c for _, c in found])


_MOST_PARTS = 8


def _merged_beside_largest(
    parts: list[tuple[KeywordIndex, npt.NDArray[np.intp]]],
    every: Sequence[str],
    words: Collection[str] | None,
) -> list[tuple[KeywordIndex, npt.NDArray[np.intp]]]:
    """The largest part, and the documents the others hold indexed again as one part;
    ``parts`` as they are when those hold more than a quarter as many as it."""
    largest = max(range(len(parts)), key=lambda i: len(parts[i][0]._sizes))
    held = np.sort(
        np.concatenate([where[where >= 0] for i, (_, where) in enumerate(parts) if i != largest])
    )
    if 4 * held.size > len(parts[largest][0]._sizes):
        return parts
    return [parts[largest], (KeywordIndex([every[int(p)] for p in held], words=words), held)]


def bm25_scores(
    documents: Sequence[str], text: str, *, k1: float = 1.2, b: float = 0.75
) -> list[float]:
    """BM25 of each document for the words of ``text`` (0 when none occurs), for stores
    that have no full-text index of their own: a :class:`KeywordIndex` of the query's
    words only, made for this one call."""
    index = KeywordIndex(documents, words=query_stems(text))
    result: list[float] = index.scores(text, k1=k1, b=b).tolist()
    return result
