"""SqliteDb: the embedded default store, one SQLite file."""

from noted.db.sqlite.store import SqliteDb

__all__ = ["SqliteDb"]
