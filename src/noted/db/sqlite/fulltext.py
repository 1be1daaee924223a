"""SqliteDb's keyword search: BM25 over one user's terms in its FTS5 index, at a bounded cost
for large users.

The index holds each word under its owner's tag (:mod:`noted.db.sqlite.terms`), so a
query's words, tagged as the user's, find that user's entries only. A search reads each
word's entries (the index's rows, with the column of each occurrence) and scores a
memory ``sum(idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / mean length)))`` with
``idf = ln(1 + (n - df + 0.5) / (df + 0.5))``, k1 = 1.2, b = 0.75, ``tf`` the word's
occurrences in the memory's text (weight 1) and in its topics and input (0.5 each), and
``n``, the mean length and ``df`` (the memories holding the word) the user's own: another
user's memories never change a user's ranking, as on PostgreSQL.

Scoring costs about a microsecond a match, and a question whose words are common among a
user's 100,000 memories matches tens of thousands. So for a user with more than
``MATCH_BUDGET`` memories, each word of the query is first counted among the user's
memories (a count stops past the budget), and the commonest words are left out until the
words kept match at most ``MATCH_BUDGET`` rows between them; the rarest word found among
them always stays. The words left out are the ones that tell the user's memories apart
the least. When even the rarest word matches more than ``MATCH_BUDGET`` of them, its
``MATCH_BUDGET`` newest matches are ranked (such a word is in more than one memory in
twenty of a user with 100,000; hybrid search's meaning side still ranks all of them). A
user with at most ``MATCH_BUDGET`` memories is searched with every word, as is any query
whose words fit the budget. The counts are kept until the user's memories change.

A repeated search (the same query and text, such as the selection's search for the user's
name, or an agent's context and its memory manager searching the same message) gives its
kept results until the user's memories change: the run an agent stores between them, or
another user's writes, do not make it search again.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Final

import apsw

from noted.db._kept import KeptResults
from noted.db.base import MemoryQuery
from noted.db.sqlite.connection import Connection
from noted.db.sqlite.migrations import FTS_TOKENIZER
from noted.db.sqlite.pending import Pending, read_pending
from noted.db.sqlite.terms import UserTerms, tag

__all__ = ["MATCH_BUDGET", "SqliteFullText"]

MATCH_BUDGET: Final = 5_000  # rows a large user's keyword search scores, about
K1: Final = 1.2  # BM25's, as in noted.retrieval.ranking and PostgreSQL's ranking
B: Final = 0.75
# each column's weight in a word's frequency: the memory's text, its topics, its input
_TF: Final = "CASE v.col WHEN 'memory' THEN 1.0 ELSE 0.5 END"
_COUNTS_KEPT: Final = 10_000
_TERMS_KEPT: Final = 65_536

Connect = Callable[[], AbstractContextManager[Connection]]
Where = Callable[[MemoryQuery], tuple[str, list[Any]]]
Generation = Callable[[Connection, str], int]


class SqliteFullText:
    """The ranking side of one memory table's FTS5 index, reached through its store's
    ``session`` (which holds the store's lock, so the caches need no other), with its
    ``where`` for query filters and ``generation`` for a user's rows' generation; and
    ``terms``, its writing side."""

    def __init__(
        self,
        table: str,
        session: Connect,
        where: Where,
        generation: Generation,
        budget: int = MATCH_BUDGET,
    ) -> None:
        self.table = table
        self.fts = f"{table}_fts"
        self.terms = UserTerms(table)
        self.budget = budget
        self._session = session
        self._where = where
        self._generation = generation
        self._user = f"SELECT number, memories, words FROM {table}_fts_users WHERE user_id = ?"
        self._counts: dict[tuple[str, str, bool], tuple[tuple[int, int], int]] = {}
        self._results: KeptResults[tuple[int, int]] = KeptResults()

    def new_file(self) -> None:
        """The store opened a file that may be another: what is kept of the one before is
        dropped. (It would never be current again anyway: the generations it is kept with
        are counted from a new base, see ``SqliteVectors.new_file``.)"""
        self._counts = {}
        self._results = KeptResults()

    def rows(
        self,
        columns: str,
        query: MemoryQuery,
        user_id: str,
        words: list[str],
        text_only: bool = False,
        pending: bool = False,
    ) -> list[Any]:
        """``columns`` and the BM25 score (last, negative: the best first) of the query's
        page of best matches for ``words`` (as :func:`~noted.retrieval.ranking.content_terms`
        gives them); with ``text_only``, of their occurrences in the memories' text alone.
        With ``pending`` (inside a read transaction, so that the index and the memories
        are read as of one moment), the user's memories the index does not hold yet are
        ranked too (see :mod:`noted.db.sqlite.pending`)."""
        key = (
            text_only,
            columns,
            (user_id, tuple(query.topics), query.agent_id, query.team_id),
            (query.updated_after, query.updated_before, query.limit, query.offset),
            tuple(words),
            self.budget,
        )
        with self._session() as conn:
            # what the user's results depend on: their generation, which every write of
            # their memories moves on in its transaction (in any process), and how many of
            # them the index holds (memories added join it at the next search); other
            # writes to the file (a run, a session, another user's memories) leave both
            user = conn.execute(self._user, (user_id,)).fetchone()
            state = (self._generation(conn, user_id), 0 if user is None else int(user[1]))
            if conn.in_transaction:  # its writes may yet be rolled back: nothing is kept
                news = self._pending(conn, user_id, user) if pending else Pending()
                return self._search(
                    conn, columns, query, user_id, words, text_only, user, state, news
                )
            known = self._results.get(key, state)
            if known is not None:
                return known
            rows = self._search(
                conn, columns, query, user_id, words, text_only, user, state, Pending()
            )
            self._results.keep(key, state, rows)
        return list(rows)

    def _search(
        self,
        conn: Connection,
        columns: str,
        query: MemoryQuery,
        user_id: str,
        words: list[str],
        text_only: bool,
        user: tuple[int, int, int] | None,
        version: tuple[int, int],
        news: Pending,
    ) -> list[Any]:
        """The ranking itself, for the user's ``_fts_users`` row and ``version`` (their
        generation and indexed count) as :meth:`rows` read them, with ``news``, the user's
        memories that the index does not hold, ranked as if it did."""
        indexed = 0 if user is None else user[1]
        if not indexed and not news.rowids:
            return []
        number, _, length = user or (0, 0, 0)
        memories = indexed + len(news.rowids)
        length += news.words
        user_tag = tag(number)
        # each term once (words that stem alike count once), with the first word that gave it
        first: dict[str, str] = {}
        for word, term in zip(words, _stemmer.terms(user_tag, words), strict=True):
            if term is not None:
                first.setdefault(term, word)
        found = [(word, term) for term, word in first.items()]
        kept, newest = self._kept(conn, user_id, user_tag, found, version, memories, news)
        if not kept:
            return []
        mean = length / memories
        pairs = ", ".join("(?, ?)" for _ in kept)
        head: list[Any] = []
        for term, df in kept:
            head += [term, math.log(1 + (memories - df + 0.5) / (df + 0.5)) * (K1 + 1)]
        only: list[str] = []
        if text_only:  # the words' occurrences in the memory's text alone
            only.append("v.col = 'memory'")
        if newest is not None:  # the newest matches only (see the module)
            only.append("v.doc >= ?")
            head.append(newest)
        newer = " WHERE " + " AND ".join(only) if only else ""
        head += [K1 * (1 - B), K1 * B / mean]
        where, params = self._where(query)
        t = self.table
        limit = -1 if query.limit is None else query.limit
        idfs = [(term, head[2 * i + 1]) for i, (term, _) in enumerate(kept)]
        later = news.scores(idfs, head[-2], head[-1], newest, text_only) if news.rowids else []
        if not indexed:
            return self._paged(self._pending_rows(conn, columns, later, query), query)
        # Unfiltered, the index alone picks the best (the terms are the user's), so only
        # they are read from the memory table; filters need every hit's row. Equal scores
        # go in the order the memories were written (rowid) in both, so that a page is the
        # head of a longer one.
        best = ""
        if not (query.filtered or limit < 0):
            best = " ORDER BY score, hit LIMIT ?"
            head.append(query.offset + limit)
        sql = (
            f"WITH q(term, idf) AS (VALUES {pairs}), "
            f"tf AS (SELECT v.doc AS doc, q.idf AS idf, sum({_TF}) AS tf "
            f"FROM q JOIN {self.fts}_terms AS v ON v.term = q.term{newer} "
            f"GROUP BY v.term, v.doc), "
            "hits AS (SELECT tf.doc AS hit, "
            "-sum(tf.idf * tf.tf / (tf.tf + ? + ? * c.c0)) AS score "
            f"FROM tf JOIN {self.fts}_content AS c ON c.id = tf.doc GROUP BY tf.doc{best}) "
            f"SELECT {columns}, hits.score FROM {t} JOIN hits ON {t}.rowid = hits.hit{where} "
            "ORDER BY hits.score, hits.hit LIMIT ? OFFSET ?"
        )
        if not news.rowids:
            rows: list[Any] = conn.execute(sql, [*head, *params, limit, query.offset]).fetchall()
            return rows
        # the index's best offset + limit, then the new memories' merged in, a page cut
        whole = -1 if limit < 0 else query.offset + limit
        rows = conn.execute(sql, [*head, *params, whole, 0]).fetchall()
        rows += self._pending_rows(conn, columns, later, query)
        return self._paged(rows, query)

    def _pending(
        self, conn: Connection, user_id: str, user: tuple[int, int, int] | None
    ) -> Pending:
        """The user's memories that the index does not hold yet."""
        above = conn.execute(self.terms.sql_top).fetchone()[0] or 0
        user_tag = tag(0 if user is None else user[0])
        return read_pending(conn, self.table, above, user_id, user_tag, _stemmer.tokens)

    def _pending_rows(
        self, conn: Connection, columns: str, scored: list[tuple[int, float]], query: MemoryQuery
    ) -> list[Any]:
        """``columns`` and the score of those of the ``scored`` (rowid, score) memories
        that the query's filters select, the best first (equal scores: the oldest first)."""
        if not scored:
            return []
        where, params = self._where(query)
        t = self.table
        sql = (
            f"SELECT {t}.rowid, {columns} FROM {t}{where}{' AND' if where else ' WHERE'} "
            f"{t}.rowid IN (SELECT value FROM json_each(?))"
        )
        score = dict(scored)
        found = conn.execute(sql, [*params, json.dumps(list(score))]).fetchall()
        ranked = sorted((score[row[0]], row[0], row[1:]) for row in found)
        return [(*row, value) for value, _, row in ranked]

    @staticmethod
    def _paged(rows: list[Any], query: MemoryQuery) -> list[Any]:
        """The query's page of ``rows`` (each with its score last), ordered by score; equal
        scores keep their order (the index's rows, then the new memories: older first)."""
        ordered = sorted(rows, key=lambda row: row[-1])
        end = None if query.limit is None else query.offset + query.limit
        return ordered[query.offset : end]

    def _kept(
        self,
        conn: Connection,
        user_id: str,
        user_tag: str,
        found: list[tuple[str, str]],
        version: tuple[int, int],
        memories: int,
        news: Pending,
    ) -> tuple[list[tuple[str, int]], int | None]:
        """The terms of the words of ``found`` (word, term) that the user's memories hold
        (those indexed and ``news``), with how many hold each, less the commonest for a
        large user; and when those kept still match more than the budget, the rowid from
        which the newest matches start (see the module)."""
        indexed = memories > len(news.rowids)
        # counted as the index alone counts them once it holds ``news`` too: up to one
        # past the budget (words past it count alike, and the first of them is kept)
        counts = [
            min(
                (self._count(conn, user_id, user_tag + w, version) if indexed else 0)
                + len(news.holding(term)),
                self.budget + 1,
            )
            for w, term in found
        ]
        kept: list[int] = []
        total = 0
        for count, i in sorted((c, i) for i, c in enumerate(counts) if c):
            if memories > self.budget and total and total + count > self.budget:
                break
            kept.append(i)
            total += count
        if memories <= self.budget or total <= self.budget:
            return [(found[i][1], counts[i]) for i in sorted(kept)], None
        # even the rarest matches more than the budget, and so does every word counted
        # (each up to one past it): the rarest by their whole counts, the first of equals
        whole = {
            j: len(news.holding(term))
            + (self._count(conn, user_id, user_tag + w, version, whole=True) if indexed else 0)
            for j, (w, term) in enumerate(found)
            if counts[j] > self.budget
        }
        i = min(whole, key=lambda j: (whole[j], j))
        word, df = user_tag + found[i][0], whole[i]
        newer = news.holding(found[i][1])  # all newer than any the index holds
        if len(newer) >= self.budget:
            return [(found[i][1], df)], newer[-self.budget]
        start = conn.execute(
            f"SELECT rowid FROM {self.fts} WHERE {self.fts} MATCH ? "
            "ORDER BY rowid DESC LIMIT 1 OFFSET ?",
            (f'"{word}"', self.budget - 1 - len(newer)),
        ).fetchone()[0]
        return [(found[i][1], df)], int(start)

    def _count(
        self,
        conn: Connection,
        user_id: str,
        word: str,
        version: tuple[int, int],
        whole: bool = False,
    ) -> int:
        """How many of the user's memories hold ``word`` (tagged), counted up to one past
        the budget unless ``whole``."""
        key = (user_id, word, whole)
        known = self._counts.get(key)
        if known is not None and known[0] == version:
            return known[1]
        sql = (
            f"SELECT count(*) FROM (SELECT rowid FROM {self.fts} WHERE {self.fts} MATCH ? LIMIT ?)"
        )
        count = int(
            conn.execute(sql, (f'"{word}"', -1 if whole else self.budget + 1)).fetchone()[0]
        )
        if len(self._counts) >= _COUNTS_KEPT:
            self._counts.clear()
        self._counts[key] = (version, count)
        return count


class _Stemmer:
    """The index's term for a tagged word: the word as the index's tokenizer turns it, and
    kept. None for a word that the tokenizer splits (it is not one term of the index)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokenizer: apsw.FTS5Tokenizer | None = None
        self._known: dict[str, str | None] = {}

    def terms(self, user_tag: str, words: list[str]) -> list[str | None]:
        tagged = [user_tag + w for w in words]
        known = self._known
        found = {w: known[w] for w in tagged if w in known}  # (another thread may clear it)
        missing = [w for w in dict.fromkeys(tagged) if w not in found]
        if missing:
            with self._lock:
                found.update((w, self._term(w)) for w in missing)
            if len(known) + len(missing) > _TERMS_KEPT:
                known.clear()
            known.update((w, found[w]) for w in missing)
        return [found[w] for w in tagged]

    def tokens(self, text: str) -> list[str]:
        """The index's terms of a whole column's ``text``, as it indexes a memory."""
        with self._lock:
            return [t for t in self._tokens(text) if isinstance(t, str)]

    def _term(self, word: str) -> str | None:
        made = self._tokens(word)
        return made[0] if len(made) == 1 and isinstance(made[0], str) else None

    def _tokens(self, text: str) -> list[Any]:
        if self._tokenizer is None:
            name, *args = FTS_TOKENIZER.split()
            self._tokenizer = apsw.Connection(":memory:").fts5_tokenizer(name, args)
        return list(
            self._tokenizer(
                text.encode(),
                apsw.FTS5_TOKENIZE_DOCUMENT,
                None,
                include_offsets=False,
                include_colocated=False,
            )
        )


_stemmer = _Stemmer()
