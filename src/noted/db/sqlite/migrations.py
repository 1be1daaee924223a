"""The ordered schema migrations of the SQLite memory table.

Each migration is a small function applied once, in order, inside one write transaction;
the number applied is kept per table in ``noted_schema_versions``. Never edit a published
migration: append a new one.
"""

from __future__ import annotations

import logging
import time
import unicodedata
from collections.abc import Callable
from typing import Final

import apsw

from noted._time import now_micros
from noted.db.sqlite.connection import Connection
from noted.db.sqlite.terms import UserTerms
from noted.errors import SchemaVersionError, StoreError
from noted.retrieval.ranking import FTS_SEPARATORS

logger = logging.getLogger("noted.db.sqlite")

Migration = Callable[[Connection, str], None]
MIGRATIONS: list[Migration] = []  # the memory table's
migration = MIGRATIONS.append
SESSION_MIGRATIONS: list[Migration] = []  # the session table's (and its runs table)
session_migration = SESSION_MIGRATIONS.append

VERSION_TABLE = "noted_schema_versions"


@migration
def m001_create_memories(conn: Connection, table: str) -> None:
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {table} (
            memory_id TEXT PRIMARY KEY NOT NULL,
            user_id TEXT NOT NULL,
            memory TEXT NOT NULL,
            topics TEXT NOT NULL DEFAULT '[]',
            input TEXT,
            agent_id TEXT,
            team_id TEXT,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        )"""
    )
    conn.execute(
        f"CREATE INDEX IF NOT EXISTS ix_{table}_user_updated ON {table}(user_id, updated_at)"
    )


@migration
def m002_sessions_and_ordered_indexes(conn: Connection, table: str) -> None:
    """Record the session a memory came from; index every order the stores page by."""
    conn.execute(f"ALTER TABLE {table} ADD COLUMN session_id TEXT")
    conn.execute(f"DROP INDEX IF EXISTS ix_{table}_user_updated")
    conn.execute(f"CREATE INDEX ix_{table}_user_updated ON {table}(user_id, updated_at, memory_id)")
    conn.execute(f"CREATE INDEX ix_{table}_user_created ON {table}(user_id, created_at, memory_id)")
    conn.execute(f"CREATE INDEX ix_{table}_updated ON {table}(updated_at, memory_id)")
    conn.execute(f"CREATE INDEX ix_{table}_created ON {table}(created_at, memory_id)")


@migration
def m003_memory_events(conn: Connection, table: str) -> None:
    """The audit history: one row per add, update and delete of a memory, never removed.

    ``seq`` orders the events as they were committed; topics are JSON arrays (NULL on the
    side of the change that has no memory).
    """
    conn.execute(
        f"""CREATE TABLE {table}_events (
            seq INTEGER PRIMARY KEY,
            event_id TEXT NOT NULL,
            memory_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            event TEXT NOT NULL,
            old_memory TEXT,
            new_memory TEXT,
            old_topics TEXT,
            new_topics TEXT,
            actor TEXT NOT NULL,
            session_id TEXT,
            run_id TEXT,
            created_at INTEGER NOT NULL
        )"""
    )
    conn.execute(
        f"CREATE INDEX ix_{table}_events_memory ON {table}_events(user_id, memory_id, created_at)"
    )


FTS_TOKENIZER = "porter unicode61 remove_diacritics 2"


def owner_token(user_id: str) -> str:
    """SQL for the full-text index's owner token of the user id ``user_id`` (a column or a
    ``?``): the hex of its exact bytes, so one token that no other user id gives, between a
    prefix no memory's words have and a final digit, so the stemmer leaves it whole."""
    return f"'noteduser' || hex({user_id}) || '0'"


@migration
def m004_keyword_index(conn: Connection, table: str) -> None:
    """The full-text index (FTS5, BM25 ranking) of each memory's text, topics and input.

    ``owner`` holds the user id, so a search matches that user's postings only; the rowid
    is the memory row's. The store keeps it in step with every write.
    """
    conn.execute(
        f"CREATE VIRTUAL TABLE {table}_fts USING fts5("
        f"owner, memory, topics, input, tokenize='{FTS_TOKENIZER}')"
    )
    conn.execute(
        f"INSERT INTO {table}_fts (rowid, owner, memory, topics, input) "
        f"SELECT rowid, user_id, memory, topics, COALESCE(input, '') FROM {table}"
    )


@migration
def m005_embeddings(conn: Connection, table: str) -> None:
    """Each memory's embedding (float32 bytes) and the model that made it, and a per-user
    generation that every write of a user's rows moves on in its transaction: a search
    process keeps a user's vectors in memory and reloads them only when that user's
    generation has changed (in any process)."""
    conn.execute(f"ALTER TABLE {table} ADD COLUMN embedding BLOB")
    conn.execute(f"ALTER TABLE {table} ADD COLUMN embedding_model TEXT")
    conn.execute(
        f"""CREATE TABLE {table}_generations (
            user_id TEXT PRIMARY KEY NOT NULL,
            generation INTEGER NOT NULL
        ) WITHOUT ROWID"""
    )


@migration
def m006_exact_owner_token(conn: Connection, table: str) -> None:
    """The full-text index's owner column holds one token per user id (``owner_token``):
    it held the id's words, so a search for user "alice" also matched the postings of user
    "alice smith". The index is rebuilt from the memory table."""
    conn.execute(f"DROP TABLE {table}_fts")
    conn.execute(
        f"CREATE VIRTUAL TABLE {table}_fts USING fts5("
        f"owner, memory, topics, input, tokenize='{FTS_TOKENIZER}')"
    )
    conn.execute(
        f"INSERT INTO {table}_fts (rowid, owner, memory, topics, input) SELECT rowid, "
        f"{owner_token('user_id')}, memory, topics, COALESCE(input, '') FROM {table}"
    )


@migration
def m007_terms_per_user(conn: Connection, table: str) -> None:
    """The full-text index holds each word under its owner's tag (see
    ``noted.db.sqlite.terms``), so a word's entries are one user's and a search's word
    counts are the user's own; ``size`` keeps each row's length in words. Beside it, the
    index's users with their counts (``_fts_users``) and the index's entries as rows
    (``_fts_terms``, for the ranking). The index is rebuilt from the memory table."""
    conn.execute(f"DROP TABLE {table}_fts")
    conn.execute(
        f"CREATE VIRTUAL TABLE {table}_fts USING fts5("
        f"size UNINDEXED, memory, topics, input, tokenize='{FTS_TOKENIZER}')"
    )
    conn.execute(f"CREATE VIRTUAL TABLE {table}_fts_terms USING fts5vocab({table}_fts, instance)")
    conn.execute(
        f"""CREATE TABLE {table}_fts_users (
            number INTEGER PRIMARY KEY,
            user_id TEXT NOT NULL UNIQUE,
            memories INTEGER NOT NULL DEFAULT 0,
            words INTEGER NOT NULL DEFAULT 0
        )"""
    )
    UserTerms(table).index_after(conn, 0)


@migration
def m008_embedding_model_index(conn: Connection, table: str) -> None:
    """Each user's rows indexed by the model of their embedding, so a count of the user's
    memories without an embedding of the search's model (before a semantic search that
    follows a change of theirs) reads the index, not every row with its vector. An
    embedding and its model are written and cleared together; rows where only one of the
    two is set lose both, so "no embedding of this model" is ``embedding_model IS NOT ?``."""
    conn.execute(
        f"UPDATE {table} SET embedding = NULL, embedding_model = NULL "
        "WHERE (embedding IS NULL) <> (embedding_model IS NULL)"
    )
    conn.execute(f"CREATE INDEX ix_{table}_user_model ON {table}(user_id, embedding_model)")


@migration
def m009_words_as_the_index_splits_them(conn: Connection, table: str) -> None:
    """A word no longer holds the few letters that the index's tokenizer splits words at
    (``FTS_SEPARATORS``), so each word is one token behind its owner's tag. A memory that
    held one had entries outside its owner's tag (which another user's tag could start):
    those memories are indexed again."""
    held = f"*[{FTS_SEPARATORS}]*"
    ids = [
        memory_id
        for (memory_id,) in conn.execute(
            f"SELECT memory_id FROM {table} WHERE memory GLOB ?1 OR topics GLOB ?1 "
            "OR COALESCE(input, '') GLOB ?1",
            (held,),
        )
    ]
    terms = UserTerms(table)
    terms.unindex(conn, ids)
    terms.reindex(conn, ids)


# combining marks: a letter typed as a base and one of these is one letter once composed
COMBINING: Final = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"


@migration
def m010_words_composed(conn: Connection, table: str) -> None:
    """A word's letters are composed (NFC) before it is split: "Zu" and a combining
    diaeresis then "rich" is the one word "Zürich", not "zu" and "rich". The memories
    written before, whose text, topics or input held such a letter, are indexed again."""
    rows = conn.execute(
        f"SELECT memory_id, memory, topics, COALESCE(input, '') FROM {table} "
        "WHERE memory GLOB ?1 OR topics GLOB ?1 OR COALESCE(input, '') GLOB ?1",
        (f"*[{COMBINING}]*",),
    )
    ids = [
        memory_id
        for memory_id, *texts in rows
        if any(not unicodedata.is_normalized("NFC", text) for text in texts)
    ]
    terms = UserTerms(table)
    terms.unindex(conn, ids)
    terms.reindex(conn, ids)


@session_migration
def s001_create_sessions(conn: Connection, table: str) -> None:
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {table} (
            session_id TEXT PRIMARY KEY NOT NULL,
            user_id TEXT NOT NULL,
            agent_id TEXT,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            summary TEXT,
            run_count INTEGER NOT NULL DEFAULT 0
        )"""
    )
    conn.execute(f"CREATE INDEX ix_{table}_user_updated ON {table}(user_id, updated_at)")
    conn.execute(f"CREATE INDEX ix_{table}_updated ON {table}(updated_at)")
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {table}_runs (
            session_id TEXT NOT NULL,
            run_index INTEGER NOT NULL,
            run_id TEXT NOT NULL UNIQUE,
            status TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (session_id, run_index)
        )"""
    )


@session_migration
def s002_jobs(conn: Connection, table: str) -> None:
    """The background jobs of the runs (see noted.db.jobs), written with their run."""
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {table}_jobs (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id TEXT NOT NULL UNIQUE,
            job_key TEXT NOT NULL,
            agent_id TEXT,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            due_at INTEGER NOT NULL,
            lease_until INTEGER,
            owner TEXT,
            error TEXT,
            plan TEXT,
            payload TEXT NOT NULL
        )"""
    )
    conn.execute(f"CREATE INDEX ix_{table}_jobs_key ON {table}_jobs(job_key, seq)")


def current_version(conn: Connection, table: str) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (VERSION_TABLE,)
    ).fetchone()
    if exists is None:
        return 0
    # SQLite's names ignore case: "Notes" is the table "notes" (versions recorded under
    # either spelling count)
    row = conn.execute(
        f"SELECT max(version) FROM {VERSION_TABLE} WHERE table_name = ? COLLATE NOCASE", (table,)
    ).fetchone()
    return 0 if row[0] is None else int(row[0])


def record_version(conn: Connection, table: str, version: int, now_us: int) -> None:
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (
            table_name TEXT PRIMARY KEY NOT NULL,
            version INTEGER NOT NULL,
            applied_at INTEGER NOT NULL
        )"""
    )
    conn.execute(
        f"UPDATE {VERSION_TABLE} SET version = ?, applied_at = ? WHERE table_name = ? "
        "COLLATE NOCASE",
        (version, now_us, table),
    )
    if not conn.changes():
        conn.execute(
            f"INSERT INTO {VERSION_TABLE} (table_name, version, applied_at) VALUES (?, ?, ?)",
            (table, version, now_us),
        )


def use_wal(conn: Connection, busy_timeout: float, where: str = "the database") -> None:
    """Switch the file to WAL once. SQLite answers "locked" at once, without waiting,
    when another process holds a lock during the switch, so wait here, within the
    busy timeout, like every other write does. Where SQLite cannot use WAL (a file
    system or VFS without shared memory), the file keeps its mode: said in a warning,
    since writers then wait for readers and a commit can be refused as busy."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() not in ("wal", "memory"):  # memory: an in-memory file
                    logger.warning(
                        "%s stays in %r journal mode: SQLite could not switch it to WAL, so "
                        "writers wait for readers and a commit may be refused as busy",
                        where,
                        mode,
                    )
            return
        except apsw.BusyError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


def _version(conn: Connection, where: str, table: str, latest: int) -> int:
    """The table's applied migrations; SchemaVersionError if a newer noted wrote it."""
    version = current_version(conn, table)
    if version > latest:
        raise SchemaVersionError(
            f"{where}: table {table} has schema version {version}, newer "
            f"than this noted knows ({latest}); upgrade noted"
        )
    return version


def migrate(conn: Connection, where: str, tables: tuple[str, str], read_only: bool) -> None:
    """Bring the memory and session ``tables`` up to date in one write transaction
    (StoreError when they need it and the file was opened read-only)."""
    memory_table, session_table = tables
    behind = [
        (table, steps)
        for table, steps in ((memory_table, MIGRATIONS), (session_table, SESSION_MIGRATIONS))
        if _version(conn, where, table, len(steps)) < len(steps)
    ]
    if not behind:
        return
    if read_only:
        names = ", ".join(table for table, _ in behind)
        raise StoreError(
            f"{where}: table {names} needs a schema upgrade but the database was opened read-only"
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        for table, steps in behind:
            # another process may have upgraded it meanwhile
            version = _version(conn, where, table, len(steps))
            for step in steps[version:]:
                step(conn, table)
            record_version(conn, table, len(steps), now_micros())
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
