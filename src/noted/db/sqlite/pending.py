"""The memories SqliteDb's keyword index does not hold yet, read and scored as it would.

New memories join the index at a writer's next keyword search (see "catch-up" in
:mod:`noted.db.sqlite.store`), which needs SQLite's write lock. When another connection
holds that lock (another process's long transaction), or the store is read-only, a search
does not wait for it: it reads the user's memories above the index's largest rowid, splits
them into the terms the index would hold (the same tags, the same tokenizer), and ranks
them beside the index's matches with the counts the index would have with them in it: the
user's memories and words, and how many memories hold each term. The result is the one the
search gives once they are indexed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from noted.db.sqlite.connection import Connection
from noted.db.sqlite.terms import indexed_topics, tagged

__all__ = ["Pending", "read_pending"]

Tokens = Callable[[str], list[str]]


@dataclass
class Pending:
    """The user's memories that the index does not hold: for each (in rowid order) its
    rowid, its length in words, and how often each term occurs in its text and in its
    topics and input."""

    rowids: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    in_text: list[Counter[str]] = field(default_factory=list)
    elsewhere: list[Counter[str]] = field(default_factory=list)

    @property
    def words(self) -> int:
        return sum(self.sizes)

    def holding(self, term: str) -> list[int]:
        """The rowids of the memories that hold ``term`` (in any column), oldest first."""
        return [
            rowid
            for rowid, text, other in zip(self.rowids, self.in_text, self.elsewhere, strict=True)
            if term in text or term in other
        ]

    def scores(
        self,
        idfs: Sequence[tuple[str, float]],
        k1_free: float,
        k1_per_word: float,
        newest: int | None,
        text_only: bool,
    ) -> list[tuple[int, float]]:
        """(rowid, score) of each memory holding a term of ``idfs`` (term, its weight),
        scored as the index's ranking scores (its SQL, in noted.db.sqlite.fulltext): the
        sum over terms of ``idf * tf / (tf + k1_free + k1_per_word * size)``, negated; only
        rowids from ``newest`` on when it is given."""
        found: list[tuple[int, float]] = []
        for i, rowid in enumerate(self.rowids):
            if newest is not None and rowid < newest:
                continue
            total = 0.0
            matched = False
            for term, idf in idfs:
                tf = float(self.in_text[i][term])
                if not text_only:
                    tf += 0.5 * self.elsewhere[i][term]
                if tf:
                    matched = True
                    total += idf * tf / (tf + k1_free + k1_per_word * self.sizes[i])
            if matched:
                found.append((rowid, -total))
        return found


def read_pending(
    conn: Connection, table: str, above: int, user_id: str, user_tag: str, tokens: Tokens
) -> Pending:
    """The memories of ``user_id`` above rowid ``above``, each word behind ``user_tag`` and
    turned into terms by ``tokens`` (the index's tokenizer over a whole column)."""
    pending = Pending()
    rows = conn.execute(
        f"SELECT rowid, memory, topics, COALESCE(input, '') FROM {table} "
        "WHERE rowid > ? AND +user_id = ? ORDER BY rowid",  # the rowids' range, not the user's
        (above, user_id),
    ).fetchall()
    for rowid, memory, topics, said in rows:
        text, size = tagged(user_tag, memory)
        topic_words, in_topics = tagged(user_tag, indexed_topics(topics))
        input_words, in_input = tagged(user_tag, said) if said else ("", 0)
        pending.rowids.append(int(rowid))
        pending.sizes.append(size + in_topics + in_input)
        pending.in_text.append(Counter(tokens(text)))
        pending.elsewhere.append(Counter(tokens(topic_words)) + Counter(tokens(input_words)))
    return pending
