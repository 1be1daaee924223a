"""PostgresDb: memories and sessions in PostgreSQL, searched with pgvector when it is there."""

from noted.db.postgres.store import KEYWORD_MATCH, PostgresDb

__all__ = ["KEYWORD_MATCH", "PostgresDb"]
