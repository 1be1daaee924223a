"""What SqliteDb says when one of its tables is gone from its file (dropped by hand while
a process ran, or before it opened the file): which tables are gone and the ways back,
as PostgresDb says it (see :mod:`noted.db.postgres.lost`).

The store sets its tables up when it opens the file, following ``noted_schema_versions``;
it does not set them up again under a running process, which keeps what it read of them
(its connection's statements and the users' generations its caches are kept by). A table
whose row is gone with it is made again, empty, once the store opens the file again (a
new process, or after ``close()``). A table dropped alone keeps its row, which says it is
there: the set-up cannot tell what else went with it, so it makes nothing, and the error
names the table and the ways back.
"""

from __future__ import annotations

import apsw

from noted.db._lost import gone_though_recorded, missing_tables
from noted.db.sqlite import migrations
from noted.db.sqlite.connection import Connection
from noted.errors import StoreError

__all__ = ["lost_table"]

# the tables of each row of noted_schema_versions, after the row's own table (the
# revocations' table is made when first needed, and the full-text index's shadow tables
# go with it)
MEMORY_SUFFIXES = ("_events", "_generations", "_fts", "_fts_terms", "_fts_users")
SESSION_SUFFIXES = ("_runs", "_jobs")


def _families(memory_table: str, session_table: str) -> dict[str, list[str]]:
    """Each table ``noted_schema_versions`` keeps a row for, with the tables it covers."""
    return {
        memory_table: [memory_table + s for s in ("", *MEMORY_SUFFIXES)],
        session_table: [session_table + s for s in ("", *SESSION_SUFFIXES)],
    }


def _missing(conn: Connection, families: dict[str, list[str]]) -> dict[str, list[str]]:
    """The store's tables that are not in the file, by the row that covers them."""
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    there = {str(name).lower() for (name,) in rows}  # SQLite's names ignore case
    return missing_tables(families, lambda table: table.lower() in there)


def lost_table(
    conn: Connection, where: str, tables: tuple[str, str], exc: apsw.Error
) -> StoreError | None:
    """The error of a call that met one of the store's tables gone (SQLite's ``no such
    table``), or None for any other error (or when the tables are all there)."""
    said = str(exc)
    if not isinstance(exc, apsw.SQLError) or "no such table" not in said:
        return None
    families = _families(*tables)
    try:
        missing = _missing(conn, families)
        if not missing:
            return None
        family, gone = next(iter(missing.items()))
        versions = {f: migrations.current_version(conn, f) for f in families}
    except apsw.Error:
        return None  # the error as it is
    start = f"{where}: {said}: table(s) {', '.join(gone)} are gone"
    reopen = "when it opens the file again (close() it, or start the process again)"
    if versions[family]:
        others = [t for t in families[family] if t not in gone]
        creates = f"the store creates them {reopen}"
        return gone_though_recorded(start, family, versions[family], others, "the file", creates)
    # the set-up makes again the tables of every row gone, and fails on one still there
    left = [
        t
        for f, ts in families.items()
        if not versions[f]
        for t in ts
        if t not in missing.get(f, [])
    ]
    if not left:
        return StoreError(
            f"{start}, with their row in {migrations.VERSION_TABLE} (dropped while the store "
            f"ran?): the store creates them again, empty, {reopen}; restore the file from "
            "a backup to have what they held"
        )
    return StoreError(
        f"{start}, and {migrations.VERSION_TABLE} has no row of table(s) {', '.join(left)}, "
        "which are still there (dropped while the store ran?). Restore the file from a "
        f"backup; or, to start again empty, drop those too: the store creates them all {reopen}"
    )
