"""The ordered schema migrations of PostgresDb's tables, the same mechanism as SQLite's.

Each migration is a function applied once, in order, inside the transaction in which a
store sets up the database, holding an advisory lock for that (and one on the table's
name), so two processes starting at once never both apply it;
the number applied is kept per table in ``noted_schema_versions`` (in the store's schema).
Never edit a published migration: append a new one.

Runs and summaries are ``json`` (kept as written): a model's answer may hold any
character, and ``jsonb`` cannot hold NUL. ``embedding`` is a pgvector ``vector`` column
when the extension could be created (or was already there), else ``bytea`` holding float32
bytes, searched in Python.

Keyword search reads a user's matching rows through a GIN index on ``(user_id, words)``,
which needs the ``btree_gin`` extension (in PostgreSQL's contrib, trusted: a database
owner may create it). Where it cannot be created the index is left out, and searches read
the user's rows through the user's btree indexes instead; it is created when a store
next opens the table with the extension there (:func:`user_search_index`).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import psycopg

from noted.db.revocations import SUFFIX as REVOKED
from noted.errors import SchemaVersionError, UserError

__all__ = [
    "FOLDED_VECTOR",
    "MAX_NAME",
    "MEMORY_TABLE_SUFFIXES",
    "MIGRATIONS",
    "SESSION_MIGRATIONS",
    "SESSION_TABLE_SUFFIXES",
    "SET_UP_LOCK",
    "TEXT_WORDS",
    "WORDS",
    "Extensions",
    "Names",
    "check_lengths",
    "claim_index",
    "create_extension",
    "create_index",
    "current_version",
    "fold_query_word",
    "folded_vector",
    "record_version",
    "user_search_index",
]

log = logging.getLogger("noted.db.postgres")


@dataclass(frozen=True, slots=True)
class Names:
    """Quoted, schema-qualified names of one store's tables and indexes."""

    schema: str | None
    memory_table: str
    session_table: str

    def q(self, name: str) -> str:
        """``name`` qualified by the store's schema (both are checked identifiers)."""
        return f'"{self.schema}"."{name}"' if self.schema else f'"{name}"'

    @property
    def memories(self) -> str:
        return self.q(self.memory_table)

    @property
    def events(self) -> str:
        return self.q(self.memory_table + "_events")

    @property
    def generations(self) -> str:
        return self.q(self.memory_table + "_generations")

    @property
    def counts(self) -> str:
        return self.q(self.memory_table + "_counts")

    @property
    def sessions(self) -> str:
        return self.q(self.session_table)

    @property
    def runs(self) -> str:
        return self.q(self.session_table + "_runs")

    @property
    def jobs(self) -> str:
        return self.q(self.session_table + "_jobs")

    @property
    def versions(self) -> str:
        return self.q("noted_schema_versions")


@dataclass(frozen=True, slots=True)
class Extensions:
    """The extensions the store's database has (or the store could create)."""

    vector: bool  # pgvector: embeddings in a ``vector`` column
    btree_gin: bool  # keyword search's GIN index by user


Connection = psycopg.Connection[tuple[object, ...]]
Migration = Callable[[Connection, Names, Extensions], None]

# the advisory lock (the hash of this text) held while a store sets up the database, and
# while anything else creates what several processes could create at once
SET_UP_LOCK: Final = "noted:set-up"
MAX_NAME: Final = 63  # PostgreSQL keeps this many bytes of a name, and cuts the rest
MEMORY_TABLE_SUFFIXES: Final = ("_events", "_generations", "_counts", REVOKED)
SESSION_TABLE_SUFFIXES: Final = ("_runs", "_jobs")
_MEMORY_INDEXES: Final = (
    "user_updated",
    "user_created",
    "updated",
    "created",
    "user_model",
    "search",
    "events_memory",
    "user_search",
    "user_text",
)
_SESSION_INDEXES: Final = ("user_updated", "updated", "jobs_key")


def check_lengths(memory_table: str, session_table: str) -> None:
    """A UserError when PostgreSQL would cut a name noted derives from the two: a table
    (``<memory_table>_generations`` is the longest), or indexes into one name."""
    tables = [memory_table + s for s in ("", *MEMORY_TABLE_SUFFIXES)]
    tables += [session_table + s for s in ("", *SESSION_TABLE_SUFFIXES)]
    for table in tables:
        if len(table) > MAX_NAME:
            raise UserError(
                f"table {table!r} would be cut to {MAX_NAME} characters by PostgreSQL: "
                "choose a shorter memory_table or session_table"
            )
    indexes = [f"ix_{memory_table}_{s}" for s in _MEMORY_INDEXES]
    indexes += [f"ix_{session_table}_{s}" for s in _SESSION_INDEXES]
    if len({name[:MAX_NAME] for name in indexes}) < len(indexes):
        raise UserError(
            f"memory_table {memory_table!r} or session_table {session_table!r} is too long: "
            f"PostgreSQL cuts names at {MAX_NAME} characters, so indexes noted names after "
            "them would share a name; choose shorter names"
        )


def claim_index(conn: Connection, names: Names, index: str, table: str) -> None:
    """A UserError when an index named ``index`` is there on a table other than ``table``
    (index names are derived from table names, so ``X_user``'s can be ``X``'s): noted
    would take it for its own, or drop it. Nothing is created or dropped then."""
    row = conn.execute(
        "SELECT indrelid = to_regclass(%s) FROM pg_index WHERE indexrelid = to_regclass(%s)",
        (names.q(table), names.q(index)),
    ).fetchone()
    if row is not None and not row[0]:
        raise UserError(
            f"the PostgreSQL index {index!r} that table {table!r} needs belongs to another "
            "table of the schema (their names overlap, as X and X_user do): give one of "
            "them another name, or another schema"
        )


def create_index(conn: Connection, names: Names, index: str, table: str, spec: str) -> None:
    """``CREATE INDEX IF NOT EXISTS index ON table spec``, once :func:`claim_index` has
    found the name free or the table's own."""
    claim_index(conn, names, index, table)
    conn.execute(f'CREATE INDEX IF NOT EXISTS "{index}" ON {names.q(table)} {spec}')


MIGRATIONS: list[Migration] = []  # the memory table's (and its events table)
SESSION_MIGRATIONS: list[Migration] = []  # the session table's (and its runs table)

# The memory's words for keyword search: its text first (weight A), then its topics (B)
# and the conversation it came from (C). As tables of versions 1 to 6 made them (the
# migrations that made them keep it); version 7 folds the text first (FOLDED_VECTOR).
_SEARCH_VECTOR = (
    "setweight(to_tsvector('english', memory), 'A') || "
    "setweight(jsonb_to_tsvector('english', topics, '[\"string\"]'), 'B') || "
    "setweight(to_tsvector('english', COALESCE(input, '')), 'C')"
)

# What the index folds before PostgreSQL's parser reads a text, as the other stores fold
# a word (noted.retrieval.ranking): a text beyond ASCII is decomposed (NFKD: "é" is "e"
# and an accent, "ﬁ" is "fi") and its combining marks dropped, so "cafe" finds "café" and
# "viet" finds "Việt", however the accent was typed; then each run of ASCII punctuation is
# a space, so that the parser splits "ava@example.com", "/etc/noted/app.conf" and
# "docs.python.org" into the words a query is split into (fts_terms) rather than keeping
# each as one. A query's words are folded alike (fold_query_word). ``normalize`` is
# PostgreSQL's (13 and later; immutable, no extension; the database's encoding UTF-8).
_MARK_RANGES: Final = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
_MARKS: Final = re.compile(f"[{_MARK_RANGES}]")
_PUNCTUATION_RUNS: Final = "[!-/:-@[-`{-~]+"  # ASCII's punctuation: four ranges of codes


def fold_query_word(word: str) -> str:
    """A query's word as the index folds the rows' texts (FOLDED_VECTOR)."""
    if word.isascii():
        return word
    return _MARKS.sub("", unicodedata.normalize("NFKD", word))


def _literal(text: str) -> str:
    """``text`` as a PostgreSQL E'' literal, read alike whatever standard_conforming_strings."""
    return "E'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _folded(column: str) -> str:
    """``column``'s text folded (the decomposition only where the text holds a character
    beyond ASCII: most texts are ASCII, and pay nothing for it)."""
    letters = (
        f"CASE WHEN octet_length({column}) = length({column}) THEN {column} "
        f"ELSE regexp_replace(normalize({column}, NFKD), {_literal(f'[{_MARK_RANGES}]')}, '', "
        "'g') END"
    )
    return f"regexp_replace({letters}, {_literal(_PUNCTUATION_RUNS)}, ' ', 'g')"


_INPUT: Final = "COALESCE(input, '')"


def folded_vector(config: str, *, text_only: bool = False) -> str:
    """A row's folded words as text search configuration ``config`` makes them: its text
    (weight A), topics (B) and the conversation it came from (C); its text alone with
    ``text_only``."""
    text = f"setweight(to_tsvector('{config}', {_folded('memory')}), 'A')"
    if text_only:
        return text
    return (
        f"{text} || "
        f"setweight(to_tsvector('{config}', {_folded('topics::text')}), 'B') || "
        f"setweight(to_tsvector('{config}', {_folded(_INPUT)}), 'C')"
    )


FOLDED_VECTOR: Final = folded_vector("english")


@MIGRATIONS.append
def m001_create_memories(conn: Connection, names: Names, extensions: Extensions) -> None:
    t, base = names.memories, names.memory_table
    embedding = "vector" if extensions.vector else "bytea"
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {t} (
            memory_id text PRIMARY KEY,
            user_id text NOT NULL,
            memory text NOT NULL,
            topics jsonb NOT NULL DEFAULT '[]',
            input text,
            agent_id text,
            team_id text,
            session_id text,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            embedding {embedding},
            embedding_model text,
            search tsvector GENERATED ALWAYS AS ({_SEARCH_VECTOR}) STORED
        )"""
    )
    for suffix, columns in (
        ("user_updated", "user_id, updated_at, memory_id"),
        ("user_created", "user_id, created_at, memory_id"),
        ("updated", "updated_at, memory_id"),
        ("created", "created_at, memory_id"),
        ("user_model", "user_id, embedding_model"),  # how many are embedded, per model
    ):
        create_index(conn, names, f"ix_{base}_{suffix}", base, f"({columns})")
    create_index(conn, names, f"ix_{base}_search", base, "USING gin (search)")
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {names.events} (
            seq bigserial PRIMARY KEY,
            event_id text NOT NULL,
            memory_id text NOT NULL,
            user_id text NOT NULL,
            event text NOT NULL,
            old_memory text,
            new_memory text,
            old_topics jsonb,
            new_topics jsonb,
            actor text NOT NULL,
            session_id text,
            run_id text,
            created_at timestamptz NOT NULL
        )"""
    )
    create_index(
        conn,
        names,
        f"ix_{base}_events_memory",
        f"{base}_events",
        "(user_id, memory_id, created_at)",
    )


@MIGRATIONS.append
def m002_keyword_by_user(conn: Connection, names: Names, extensions: Extensions) -> None:
    """Keyword search by user. Each row keeps its number of distinct lexemes
    (``search_length``, BM25's document length), included in the ``(user_id,
    embedding_model)`` index, made again so: the count and mean length of a user's
    memories are read from the index alone, with no index more to write. The GIN index on
    ``search`` alone goes: it lists every user's rows of a word, and no search uses it;
    :func:`user_search_index` makes the one searches use, by user, wherever btree_gin is
    there. Adding the column rewrites the table once (about 3 s for 60,000 memories)."""
    t, base = names.memories, names.memory_table
    conn.execute(
        f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS search_length integer "
        f"GENERATED ALWAYS AS (length({_SEARCH_VECTOR})) STORED"
    )
    claim_index(conn, names, f"ix_{base}_user_model", base)
    conn.execute(f"DROP INDEX IF EXISTS {names.q(f'ix_{base}_user_model')}")
    conn.execute(
        f'CREATE INDEX "ix_{base}_user_model" ON {t} (user_id, embedding_model) '
        "INCLUDE (search_length)"
    )
    claim_index(conn, names, f"ix_{base}_search", base)
    conn.execute(f"DROP INDEX IF EXISTS {names.q(f'ix_{base}_search')}")


@MIGRATIONS.append
def m003_rows_whole(conn: Connection, names: Names, extensions: Extensions) -> None:
    """Rows kept whole in the table's pages. PostgreSQL moves a row's largest values to
    the table's TOAST table once the row passes 2 kB, and a vector of 384 dimensions
    (1.5 kB) is the largest value of any memory that keeps the conversation it came from:
    a search by meaning, which reads every vector of the user, then fetched each from there
    (50 ms for 10,000 memories instead of 11). Rows now stay whole up to a page, and past
    that the vector is the last value to leave (``STORAGE MAIN``: the texts and the search
    words go first; a vector leaves only if it alone fills the page). Both are settings of
    the table, used for the rows written from now on: ``VACUUM FULL`` writes the rows
    already there again (docs/backends.md)."""
    row = conn.execute("SELECT current_setting('block_size')::int").fetchone()
    whole = 8192 if row is None else int(str(row[0]))
    whole -= 32  # a page less its header and one line pointer: the most PostgreSQL allows
    conn.execute(
        f"ALTER TABLE {names.memories} ALTER COLUMN embedding SET STORAGE MAIN, "
        f"SET (toast_tuple_target = {whole})"
    )


@MIGRATIONS.append
def m004_generations(conn: Connection, names: Names, extensions: Extensions) -> None:
    """Each user's generation: a number that every write of the user's memories moves on,
    first thing in its transaction (see ``noted.db.postgres.kept``). A user without a row
    is at generation 0."""
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {names.generations} "
        "(user_id text PRIMARY KEY, generation bigint NOT NULL)"
    )


@MIGRATIONS.append
def m005_vectors_move_generations(conn: Connection, names: Names, extensions: Extensions) -> None:
    """Nothing in the tables changes. From this version on, storing vectors moves their
    users' generations too, as every other write does: a process holds users' vectors
    between searches while their generation stays (see ``noted.db.postgres.held``). An
    earlier noted, which stores vectors without moving it, refuses tables of this version
    once it is recorded."""


# a row changed: its old figures away from its old user, its new ones to its new user
_OLD_AND_NEW: Final = (
    "SELECT OLD.user_id AS user_id, -1 AS memories, -OLD.search_length AS words "
    "UNION ALL SELECT NEW.user_id, 1, NEW.search_length"
)


@MIGRATIONS.append
def m006_user_counts(conn: Connection, names: Names, extensions: Extensions) -> None:
    """Each user's memory count and total length (the sum of ``search_length``: BM25's
    collection figures) in ``<memory_table>_counts``, kept by the database: triggers on the
    memory table add what each statement inserts and take away what it deletes (one
    update of each user's row per statement, whatever its rows), a row whose length or
    user changes moves its figures (so a vector stored, which changes neither, costs
    nothing), and a ``TRUNCATE`` empties them. So they hold for every write, by any
    process or by hand, in the writing transaction: a keyword search reads them in its own
    snapshot (see ``noted.db.postgres.keyword``) instead of counting the user's rows after
    every write. The table's writes wait while the figures of the rows already there are
    counted, so none is missed or counted twice; no other table is locked, so writers of an
    earlier noted, which lock the generations and the memories in either order, cannot
    deadlock with it."""
    t, c = names.memories, names.counts
    function = names.q(f"{names.memory_table}_count")
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {c} "
        "(user_id text PRIMARY KEY, memories bigint NOT NULL, words bigint NOT NULL)"
    )
    conn.execute(f"LOCK TABLE {t} IN SHARE ROW EXCLUSIVE MODE")

    def moved(rows: str) -> str:
        return _moved(c, rows)

    conn.execute(
        f"""CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $f$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                {moved("SELECT user_id, 1 AS memories, search_length AS words FROM added")}
            ELSIF TG_OP = 'DELETE' THEN
                {moved("SELECT user_id, -1 AS memories, -search_length AS words FROM removed")}
            ELSIF TG_OP = 'TRUNCATE' THEN
                DELETE FROM {c};
            ELSE
                {moved(_OLD_AND_NEW)}
            END IF;
            RETURN NULL;
        END $f$"""
    )
    conn.execute(
        f"CREATE TRIGGER noted_count_added AFTER INSERT ON {t} "
        f"REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
    )
    conn.execute(
        f"CREATE TRIGGER noted_count_removed AFTER DELETE ON {t} "
        f"REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
    )
    _count_changes(conn, names)
    conn.execute(
        f"CREATE TRIGGER noted_count_truncated AFTER TRUNCATE ON {t} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
    )
    conn.execute(f"DELETE FROM {c}")
    conn.execute(moved(f"SELECT user_id, 1 AS memories, search_length AS words FROM {t}"))


def _moved(counts: str, rows: str) -> str:
    """Add each user's rows of ``rows`` (user_id, memories, words) to their figures in
    ``counts``, users in order (a write moves its users' generations in that order too)."""
    return (
        f"INSERT INTO {counts} AS c (user_id, memories, words) "
        f"SELECT user_id, sum(memories), sum(words) FROM ({rows}) AS r "
        "GROUP BY user_id ORDER BY user_id ON CONFLICT (user_id) DO UPDATE SET "
        "memories = c.memories + excluded.memories, words = c.words + excluded.words;"
    )


def _count_changes(conn: Connection, names: Names) -> None:
    """The trigger that moves a changed row's figures (its user's or its length)."""
    function = names.q(f"{names.memory_table}_count")
    conn.execute(
        f"CREATE TRIGGER noted_count_changed AFTER UPDATE ON {names.memories} FOR EACH ROW "
        "WHEN (OLD.user_id IS DISTINCT FROM NEW.user_id "
        "OR OLD.search_length IS DISTINCT FROM NEW.search_length) "
        f"EXECUTE FUNCTION {function}()"
    )


@MIGRATIONS.append
def m007_words_folded(conn: Connection, names: Names, extensions: Extensions) -> None:
    """Keyword search folds accents and splits at punctuation as the other stores do:
    "cafe" finds "café", "example" finds "ava@example.com" (see FOLDED_VECTOR). The words
    are a new column, ``words`` (``search`` goes), so that a process of an earlier noted
    left running fails its keyword searches with an error, instead of finding nothing for
    words with accents. Every row's words and their count are made again (the table is
    written again once, holding its reads and writes), and each user's figures counted
    again. The indexes on them, and the trigger that reads the count, go with the old
    columns and are made again (the GIN indexes by user when the store opens,
    :func:`user_search_index`)."""
    t, base, c = names.memories, names.memory_table, names.counts
    conn.execute(f"LOCK TABLE {t} IN ACCESS EXCLUSIVE MODE")
    claim_index(conn, names, f"ix_{base}_user_model", base)
    conn.execute(f"ALTER TABLE {t} DROP COLUMN search_length CASCADE, DROP COLUMN search CASCADE")
    conn.execute(
        f"ALTER TABLE {t} "
        f"ADD COLUMN {WORDS} tsvector GENERATED ALWAYS AS ({FOLDED_VECTOR}) STORED, "
        f"ADD COLUMN search_length integer GENERATED ALWAYS AS (length({FOLDED_VECTOR})) STORED"
    )
    conn.execute(
        f'CREATE INDEX "ix_{base}_user_model" ON {t} (user_id, embedding_model) '
        "INCLUDE (search_length)"
    )
    _count_changes(conn, names)
    conn.execute(f"DELETE FROM {c}")
    conn.execute(_moved(c, f"SELECT user_id, 1 AS memories, search_length AS words FROM {t}"))


# the memory's words for keyword search (version 7 on; ``search`` before)
WORDS: Final = "words"
# the words of the memory's own text: the search vector's of weight A
TEXT_WORDS: Final = f"ts_filter({WORDS}, '{{a}}')"


def user_search_index(conn: Connection, names: Names) -> None:
    """Create the GIN indexes by user if they are not there (btree_gin must be): on
    ``(user_id, words)``, where a word's entry lists the rows of one user apart from every
    other user's, so a search reads only the user's rows that hold one of its words; and
    on ``(user_id, TEXT_WORDS)``, the words of the memories' own text, for searches of the
    text alone (a tenth of the first's size). Each looked up first: creating one, even when
    it is there, would wait for the table's writes."""
    for suffix, words in (("user_search", WORDS), ("user_text", TEXT_WORDS)):
        index = names.q(f"ix_{names.memory_table}_{suffix}")
        row = conn.execute(
            "SELECT 1 FROM pg_index WHERE indexrelid = to_regclass(%s) "
            "AND indrelid = to_regclass(%s)",
            (index, names.memories),
        ).fetchone()
        if row is None or row[0] is None:
            spec = f"USING gin (user_id, {words})"
            create_index(conn, names, f"ix_{names.memory_table}_{suffix}", names.memory_table, spec)


def create_extension(conn: Connection, name: str) -> bool:
    """Whether the extension ``name`` is installed, creating it if it can be (inside the
    caller's transaction: a failure rolls back only the attempt)."""
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = %s", (name,)).fetchone():
        return True
    try:
        with conn.transaction():
            conn.execute(f'CREATE EXTENSION IF NOT EXISTS "{name}"')
    except psycopg.Error as exc:
        log.debug("extension %s could not be created: %s", name, exc)
        return False
    return True


@SESSION_MIGRATIONS.append
def s001_create_sessions(conn: Connection, names: Names, extensions: Extensions) -> None:
    base = names.session_table
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {names.sessions} (
            session_id text PRIMARY KEY,
            user_id text NOT NULL,
            agent_id text,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            summary json,
            run_count integer NOT NULL DEFAULT 0
        )"""
    )
    create_index(conn, names, f"ix_{base}_user_updated", base, "(user_id, updated_at)")
    create_index(conn, names, f"ix_{base}_updated", base, "(updated_at)")
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {names.runs} (
            session_id text NOT NULL,
            run_index integer NOT NULL,
            run_id text NOT NULL UNIQUE,
            status text NOT NULL,
            created_at timestamptz NOT NULL,
            data json NOT NULL,
            PRIMARY KEY (session_id, run_index)
        )"""
    )


@SESSION_MIGRATIONS.append
def s002_jobs(conn: Connection, names: Names, extensions: Extensions) -> None:
    """The background jobs of the runs (see noted.db.jobs), written with their run;
    times are microseconds since the epoch, as the shared job SQL compares them."""
    base = names.session_table
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {names.jobs} (
            seq bigserial PRIMARY KEY,
            job_id text NOT NULL UNIQUE,
            job_key text NOT NULL,
            agent_id text,
            status text NOT NULL,
            attempts integer NOT NULL,
            due_at bigint NOT NULL,
            lease_until bigint,
            owner text,
            error text,
            plan text,
            payload text NOT NULL
        )"""
    )
    create_index(conn, names, f"ix_{base}_jobs_key", f"{base}_jobs", "(job_key, seq)")


def migrate_table(
    conn: Connection,
    names: Names,
    table: str,
    steps: list[Migration],
    extensions: Extensions,
    where_to: str,
) -> None:
    """Bring ``table`` to the last of its migrations ``steps``, in the caller's transaction,
    under a lock of its own; a table newer than this noted knows is a SchemaVersionError."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"noted:{table}",))
    version = current_version(conn, names, table)
    if version > len(steps):
        raise SchemaVersionError(
            f"{where_to}: table {table} has schema version {version}, newer "
            f"than this noted knows ({len(steps)}); upgrade noted"
        )
    for step in steps[version:]:
        step(conn, names, extensions)
    if version < len(steps):
        record_version(conn, names, table, len(steps))


def current_version(conn: Connection, names: Names, table: str) -> int:
    exists = conn.execute("SELECT to_regclass(%s)", (names.versions,)).fetchone()
    if exists is None or exists[0] is None:
        return 0
    row = conn.execute(
        f"SELECT version FROM {names.versions} WHERE table_name = %s", (table,)
    ).fetchone()
    return 0 if row is None else int(str(row[0]))


def record_version(conn: Connection, names: Names, table: str, version: int) -> None:
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {names.versions} (
            table_name text PRIMARY KEY,
            version integer NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    conn.execute(
        f"""INSERT INTO {names.versions} (table_name, version) VALUES (%s, %s)
        ON CONFLICT (table_name) DO UPDATE SET version = excluded.version, applied_at = now()""",
        (table, version),
    )
