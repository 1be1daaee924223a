"""SqliteDb's keyword index as it is written: each word of a memory under its owner's tag.

Every user the index has seen has a number in ``<memory_table>_fts_users``, with how many
of their memories are indexed and how many words those hold. Each word of a memory's
text, topics and input is written to the full-text index behind the tag of its owner's
number (:func:`tag`), so the index holds one term per word and user: a word's entries are
one user's, a search reads none of another user's, and the counts a BM25 score needs (the
memories holding a word, how many memories, their mean length) are the user's own.

A tag is a few consonants and an "x" (no vowel and no "y"), joined to the front of every
word: the stemmer sees the same vowels and endings, so a tagged word stems as the word
does, save a few short ones (the stemmer leaves words of one or two letters alone, but not
once tagged: "is" stems to "i"; and "ate" keeps its "e"), and one tag is never the start of
another. Beside the words, each row of the index
keeps its length in words (``size``, not indexed), which the ranking reads.

The words are the runs of letters and digits that the search splits a query into
(:func:`~noted.retrieval.ranking.words_of`), so a query's words and a memory's meet; the
index's tokenizer then folds case and accents and stems them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Final

from noted.db._rows import IN_CHUNK, sound_json
from noted.db.sqlite.connection import Connection
from noted.retrieval.ranking import words_of

__all__ = ["UserTerms", "indexed_topics", "tag", "tagged"]

_DIGITS: Final = "bcdfghjklmnpqrstvwz"  # consonants but x (the tag's end) and y
_ROWS_PER_PASS: Final = 5_000  # memories read, tagged and indexed at a time

Row = tuple[int, str, str, str, str]  # rowid, user_id, memory, topics, input


def tag(number: int) -> str:
    """The tag of the user numbered ``number``: its digits in base 19 as consonants, then
    an "x", which no digit is, so one tag never starts another."""
    digits = []
    while True:
        number, digit = divmod(number, len(_DIGITS))
        digits.append(_DIGITS[digit])
        if not number:
            return "".join(digits) + "x"


def tagged(user_tag: str, text: str) -> tuple[str, int]:
    """The words of ``text``, each behind ``user_tag``, and how many there are."""
    words = words_of(text)
    if not words:
        return "", 0
    return user_tag + f" {user_tag}".join(words), len(words)


def indexed_topics(topics: str) -> str:
    """What the index holds of a memory's stored ``topics``: the text of a JSON list of
    strings as it is; nothing for damaged topics (not JSON, or JSON of another shape),
    which every read gives as no topics, and which the other stores' keyword searches
    read as none: their words would find a memory by topics it is not read with."""
    return topics if sound_json(topics) else ""


class UserTerms:
    """The writes of one memory table's keyword index; every one runs inside the caller's
    transaction and keeps the users' counts in step with the rows it adds or removes."""

    def __init__(self, table: str) -> None:
        t = table
        fts = f"{t}_fts"
        users = f"{t}_fts_users"
        self._read = f"SELECT rowid, user_id, memory, topics, COALESCE(input, '') FROM {t} "
        # the index's largest rowid, from FTS5's own per-row table (an integer primary key,
        # so one lookup; asking the index itself walks its whole content)
        self.sql_top = f"SELECT max(id) FROM {fts}_docsize"
        self._new_user = f"INSERT INTO {users} (user_id) VALUES (?) ON CONFLICT DO NOTHING"
        self._number = f"SELECT number FROM {users} WHERE user_id = ?"
        self._insert = (
            f"INSERT INTO {fts} (rowid, size, memory, topics, input) VALUES (?, ?, ?, ?, ?)"
        )
        self._count = (
            f"UPDATE {users} SET memories = memories + ?, words = words + ? WHERE number = ?"
        )
        # the users' counts less the rows about to leave the index (rows not in it count
        # nothing: they have no content row), then the rows themselves
        self._uncount = (
            f"UPDATE {users} SET memories = {users}.memories - gone.n, "
            f"words = {users}.words - gone.size "
            f"FROM (SELECT {t}.user_id AS owner, count(*) AS n, sum(c.c0) AS size "
            f"FROM {t} JOIN {fts}_content AS c ON c.id = {t}.rowid{{where}} "
            f"GROUP BY {t}.user_id) AS gone WHERE {users}.user_id = gone.owner"
        )
        self._unindex = f"DELETE FROM {fts} WHERE rowid IN (SELECT rowid FROM {t}{{where}})"

    def index_after(self, conn: Connection, rowid: int) -> None:
        """Index every memory above ``rowid`` (the memories added since the index's
        largest), a pass of at most ``_ROWS_PER_PASS`` at a time."""
        sql = self._read + "WHERE rowid > ? ORDER BY rowid LIMIT ?"
        while rows := conn.execute(sql, (rowid, _ROWS_PER_PASS)).fetchall():
            self._index(conn, rows)
            rowid = rows[-1][0]

    def reindex(self, conn: Connection, ids: Sequence[str]) -> None:
        """Index again the memories of ``ids`` that the index held before their change (the
        rest wait for :meth:`index_after`)."""
        for start in range(0, len(ids), IN_CHUNK):
            chunk = ids[start : start + IN_CHUNK]
            sql = (
                self._read + f"WHERE memory_id IN ({', '.join('?' * len(chunk))}) "
                f"AND rowid <= ({self.sql_top})"
            )
            self._index(conn, conn.execute(sql, chunk).fetchall())

    def unindex(self, conn: Connection, ids: Sequence[str]) -> None:
        """Take the memories of ``ids`` out of the index (those it does not hold: nothing)."""
        for start in range(0, len(ids), IN_CHUNK):
            chunk = list(ids[start : start + IN_CHUNK])
            self.unindex_where(conn, f" WHERE memory_id IN ({', '.join('?' * len(chunk))})", chunk)

    def unindex_where(self, conn: Connection, where: str, params: Sequence[Any]) -> None:
        """Take the memories that ``where`` (`` WHERE ...`` over the memory table, or empty
        for all) selects out of the index."""
        conn.execute(self._uncount.format(where=where), params)
        conn.execute(self._unindex.format(where=where), params)

    def _index(self, conn: Connection, rows: list[Row]) -> None:
        if not rows:
            return
        numbers = self._numbers(conn, {row[1] for row in rows})
        tags = {user_id: tag(number) for user_id, number in numbers.items()}
        listed: dict[tuple[str, str], tuple[str, int]] = {}  # topics repeat: tagged once
        values = []
        memories: Counter[int] = Counter()
        words: Counter[int] = Counter()
        for rowid, user_id, memory, topics, conversation in rows:
            user_tag = tags[user_id]
            text, size = tagged(user_tag, memory)
            if (user_tag, topics) not in listed:
                listed[user_tag, topics] = tagged(user_tag, indexed_topics(topics))
            topic_words, in_topics = listed[user_tag, topics]
            said, in_input = tagged(user_tag, conversation) if conversation else ("", 0)
            size += in_topics + in_input
            values.append((rowid, size, text, topic_words, said))
            memories[numbers[user_id]] += 1
            words[numbers[user_id]] += size
        conn.executemany(self._insert, values)
        conn.executemany(self._count, [(memories[n], words[n], n) for n in memories])

    def _numbers(self, conn: Connection, user_ids: set[str]) -> dict[str, int]:
        """The users' numbers, given first to those who have none."""
        conn.executemany(self._new_user, [(u,) for u in user_ids])
        return {u: int(conn.execute(self._number, (u,)).fetchone()[0]) for u in user_ids}
