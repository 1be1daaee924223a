"""SqliteDb's keyword search: BM25 over its FTS5 index, at a bounded cost for large users.

FTS5 computes BM25 for every row that matches any word of a query, about a microsecond a
row: a question whose words are common among a user's 100,000 memories has tens of
thousands of rows scored. So for a user with more than ``MATCH_BUDGET`` memories, each word
of the query is first counted among the user's memories (a count stops past the budget),
and the commonest words are left out until the words kept match at most ``MATCH_BUDGET``
rows between them; the rarest word found among them always stays. The words left out are
the ones that tell the user's memories apart the least. When even the rarest word matches
more than ``MATCH_BUDGET`` of them, BM25 ranks its ``MATCH_BUDGET`` newest matches only
(such a word is in more than one memory in twenty of a user with 100,000; hybrid search's
meaning side still ranks all of them). A user with at most ``MATCH_BUDGET`` memories is
searched with every word, as is any query whose words fit the budget. The counts are kept
until the user's memories change.

A repeated search (the same query and text, such as the selection's search for the user's
name, or an agent's context and its memory manager searching the same message) gives its
kept results until anything in the file changes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager
from typing import Any, Final

from noted.db.base import MemoryQuery
from noted.db.sqlite.connection import Connection
from noted.db.sqlite.migrations import owner_token_of

__all__ = ["MATCH_BUDGET", "SqliteFullText"]

MATCH_BUDGET: Final = 5_000  # rows a large user's keyword search scores, about
# BM25 weight of each full-text column: owner (one token per user id, never ranked),
# memory, topics, input
_BM25_WEIGHTS: Final = "0.0, 1.0, 0.5, 0.5"
_RESULTS_KEPT: Final = 128  # searches whose results are kept
_ROWS_KEPT: Final = 1_000  # at most, in one search's kept results
_COUNTS_KEPT: Final = 10_000

Connect = Callable[[], AbstractContextManager[Connection]]
Where = Callable[[MemoryQuery], tuple[str, list[Any]]]
Generation = Callable[[Connection, str], int]


class SqliteFullText:
    """The ranking side of one memory table's FTS5 index, reached through its store's
    ``session`` (which holds the store's lock, so the caches need no other), with its
    ``where`` for query filters and ``generation`` for a user's rows' generation."""

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
        self.budget = budget
        self._session = session
        self._where = where
        self._generation = generation
        self._counts: dict[tuple[str, str | None], tuple[int, int]] = {}
        self._results: OrderedDict[Hashable, tuple[tuple[int, int], list[Any]]] = OrderedDict()

    def rows(self, columns: str, query: MemoryQuery, user_id: str, words: list[str]) -> list[Any]:
        """``columns`` and the BM25 score (last) of the query's page of best matches for
        ``words`` (as :func:`~noted.retrieval.ranking.content_terms` gives them)."""
        key = (
            columns,
            (user_id, tuple(query.topics), query.agent_id, query.team_id),
            (query.updated_after, query.updated_before, query.limit, query.offset),
            tuple(words),
            self.budget,
        )
        with self._session() as conn:
            state = (int(conn.execute("PRAGMA data_version").fetchone()[0]), conn.total_changes())
            known = self._results.get(key)
            if known is not None and known[0] == state:
                self._results.move_to_end(key)
                return list(known[1])
            kept, newest = self._kept(conn, user_id, words)
            rows = self._search(conn, columns, query, user_id, kept, newest)
            if len(rows) <= _ROWS_KEPT:
                self._results[key] = (state, rows)
                if len(self._results) > _RESULTS_KEPT:
                    self._results.popitem(last=False)
        return list(rows)

    def _search(
        self,
        conn: Connection,
        columns: str,
        query: MemoryQuery,
        user_id: str,
        words: list[str],
        newest: bool,
    ) -> list[Any]:
        match = _match(words, user_id)
        if match is None:
            return []
        where, params = self._where(query)
        t = self.table
        limit = -1 if query.limit is None else query.limit
        scored = (
            f"SELECT rowid AS hit, bm25({self.fts}, {_BM25_WEIGHTS}) AS score "
            f"FROM {self.fts} WHERE {self.fts} MATCH ?"
        )
        head: list[Any] = [match]
        if newest:  # BM25 of the newest matches only (see the module)
            scored = f"SELECT * FROM ({scored} ORDER BY rowid DESC LIMIT ?)"
            head.append(self.budget)
        # Unfiltered, the index alone picks the best (its owner token keeps to the user),
        # so only they are read from the memory table; filters need every hit's row.
        if not (query.filtered or limit < 0):
            scored += " ORDER BY score, hit LIMIT ?"
            head.append(query.offset + limit)
        sql = (
            f"SELECT {columns}, hits.score FROM {t} JOIN ({scored}) AS hits "
            f"ON {t}.rowid = hits.hit{where} ORDER BY hits.score, memory_id LIMIT ? OFFSET ?"
        )
        rows: list[Any] = conn.execute(sql, [*head, *params, limit, query.offset]).fetchall()
        return rows

    def _kept(self, conn: Connection, user_id: str, words: list[str]) -> tuple[list[str], bool]:
        """``words``, less the commonest among a large user's memories, and whether those
        kept still match more than the budget (see the module)."""
        generation = self._generation(conn, user_id)
        if self._count(conn, user_id, None, generation) <= self.budget:
            return words, False
        counted = sorted(
            (self._count(conn, user_id, w, generation), i) for i, w in enumerate(words)
        )
        kept: list[int] = []
        total = 0
        for count, i in counted:
            if total and total + count > self.budget:
                break
            kept.append(i)
            total += count
        return [words[i] for i in sorted(kept)], total > self.budget

    def _count(self, conn: Connection, user_id: str, word: str | None, generation: int) -> int:
        """How many of the user's memories hold ``word`` (all of them for None), counted
        up to one past the budget."""
        key = (user_id, word)
        known = self._counts.get(key)
        if known is not None and known[0] == generation:
            return known[1]
        if word is None:
            sql = f"SELECT count(*) FROM (SELECT 1 FROM {self.table} WHERE user_id = ? LIMIT ?)"
            params: list[Any] = [user_id, self.budget + 1]
        else:
            sql = (
                f"SELECT count(*) FROM (SELECT rowid FROM {self.fts} "
                f"WHERE {self.fts} MATCH ? LIMIT ?)"
            )
            params = [_match([word], user_id), self.budget + 1]
        count = int(conn.execute(sql, params).fetchone()[0])
        if len(self._counts) >= _COUNTS_KEPT:
            self._counts.clear()
        self._counts[key] = (generation, count)
        return count


def _match(words: list[str], user_id: str) -> str | None:
    """The FTS5 query for ``words`` among the user's memories: the user's owner token (see
    ``owner_token``) and any of the words, in any column. The owner column holds only owner
    tokens, so a word is found in the other columns alone, with the same BM25 as if they
    were named; naming them makes FTS5 read each word's positions in every user's entries
    for its weight, twice the cost for a small user beside a large one. The user's own
    token is not a word of theirs, and a word holding a quote is left out, so nothing can
    end a word's quoting."""
    token = owner_token_of(user_id)
    content = [w for w in words if w and '"' not in w and w != token]
    if not content:
        return None
    return f'owner : "{token}" AND (' + " OR ".join(f'"{w}"' for w in content) + ")"
