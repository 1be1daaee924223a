"""A SQLite file made full, as on a full disk, and given room again."""

from __future__ import annotations

from noted import SqliteDb


def fill(db: SqliteDb) -> None:
    """No page more for the file: the next write that needs one fails as on a full disk."""
    with db._session() as conn:
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages}")


def free(db: SqliteDb) -> None:
    with db._session() as conn:
        conn.execute("PRAGMA max_page_count = 1073741823")
