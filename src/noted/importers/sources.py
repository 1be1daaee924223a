"""Reading tables from a source database: a SQLite file or a PostgreSQL URL, read-only."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from noted.db._rows import check_table_name
from noted.errors import MissingDependencyError, StoreError, UserError

__all__ = ["Source", "open_source"]


class Source(Protocol):
    name: str

    def columns(self, table: str) -> list[str] | None:
        """The table's column names, or None when there is no such table."""
        ...

    def tables(self) -> list[str]:
        """The names of the source's tables (of its schema, on PostgreSQL), sorted."""
        ...

    def rows(self, table: str, order_by: str) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


@contextmanager
def _unreadable(
    source: str, what: str, errors: type[Exception] | tuple[type[Exception], ...]
) -> Iterator[None]:
    """The database's own ``errors`` while reading ``what`` (a damaged file, a lost
    connection) as a StoreError that names the source and what was being read."""
    try:
        yield
    except errors as exc:
        raise StoreError(f"{source}: cannot read {what}: {exc}") from exc


class SqliteSource:
    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise UserError(f"{path}: no such file")
        self.name = str(path)
        try:
            self._conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: not a readable SQLite database ({exc})") from exc
        self._conn.row_factory = sqlite3.Row

    def columns(self, table: str) -> list[str] | None:
        check_table_name(table, "table")
        with _unreadable(self.name, f"the columns of table {table!r}", sqlite3.Error):
            found = self._conn.execute(f"PRAGMA table_info({table})").fetchall()
        return [row["name"] for row in found] or None

    def tables(self) -> list[str]:
        query = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        with _unreadable(self.name, "its tables", sqlite3.Error):
            return [row["name"] for row in self._conn.execute(query)]

    def rows(self, table: str, order_by: str) -> list[dict[str, Any]]:
        check_table_name(table, "table")
        query = f"SELECT * FROM {table} ORDER BY {order_by}"
        with _unreadable(self.name, f"table {table!r}", sqlite3.Error):
            return [dict(row) for row in self._conn.execute(query)]

    def close(self) -> None:
        self._conn.close()


class PostgresSource:
    def __init__(self, url: str, schema: str) -> None:
        try:
            import psycopg
            from psycopg.rows import dict_row
        except ImportError as exc:
            raise MissingDependencyError(
                "reading PostgreSQL needs psycopg: pip install 'noted[postgres]'"
            ) from exc
        parts = urlsplit(url)
        self.name = f"postgresql://{parts.hostname}:{parts.port or 5432}{parts.path}"
        self.schema = check_table_name(schema, "schema")
        conninfo = urlunsplit(parts._replace(scheme="postgresql"))
        try:
            self._conn = psycopg.connect(conninfo, row_factory=dict_row, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {self.name}: {exc}") from exc
        self._errors = psycopg.Error
        self._conn.read_only = True

    def _columns(self, table: str, types: tuple[str, ...] | None = None) -> list[str]:
        check_table_name(table, "table")
        query = (
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position"
        )
        with _unreadable(self.name, f"the columns of table {table!r}", self._errors):
            found = self._conn.execute(query, (self.schema, table)).fetchall()
        return [r["column_name"] for r in found if types is None or r["data_type"] in types]

    def columns(self, table: str) -> list[str] | None:
        return self._columns(table) or None

    def tables(self) -> list[str]:
        query = (
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
            "ORDER BY table_name"
        )
        with _unreadable(self.name, f"the tables of schema {self.schema!r}", self._errors):
            found = self._conn.execute(query, (self.schema,)).fetchall()
        return [r["table_name"] for r in found]

    def rows(self, table: str, order_by: str) -> list[dict[str, Any]]:
        """The rows, with JSON columns given back as JSON text, as SQLite gives them (so
        one decoding reads both; psycopg would hand them over decoded)."""
        as_json = set(self._columns(table, ("json", "jsonb")))
        query = f'SELECT * FROM "{self.schema}"."{table}" ORDER BY {order_by}'
        with _unreadable(self.name, f"table {table!r}", self._errors):
            rows = list(self._conn.execute(query).fetchall())
        for row in rows:
            for column in as_json & row.keys():
                if row[column] is not None:
                    row[column] = json.dumps(row[column], ensure_ascii=False)
        return rows

    def close(self) -> None:
        self._conn.close()


def open_source(target: str, schema: str = "ai") -> SqliteSource | PostgresSource:
    """A SQLite file (a path or ``sqlite:///PATH``) or a PostgreSQL URL, opened read-only."""
    if not isinstance(target, str) or not target.strip():
        raise UserError(f"a source must be a SQLite file or a postgresql:// URL, got {target!r}")
    scheme = urlsplit(target).scheme.split("+", 1)[0].lower() if "://" in target else ""
    if scheme in ("postgresql", "postgres"):
        return PostgresSource(target, schema)
    if scheme == "sqlite":
        return SqliteSource(Path(target.split("://", 1)[1].removeprefix("/")))
    if scheme:
        raise UserError(f"a source must be a SQLite file or a postgresql:// URL, got {target!r}")
    return SqliteSource(Path(target))
