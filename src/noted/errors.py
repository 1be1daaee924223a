"""The one exception tree of noted.

Everything noted raises on purpose derives from :class:`NotedError`, so callers can catch
noted's failures without catching unrelated faults.
"""

from __future__ import annotations

__all__ = [
    "ConflictError",
    "ModelError",
    "NotFoundError",
    "NotedError",
    "SchemaVersionError",
    "StoreError",
    "UserError",
]


class NotedError(Exception):
    """Base class of every error noted raises on purpose."""


class UserError(NotedError, ValueError):
    """The caller passed a bad value: the message names it and says what is accepted."""


class NotFoundError(NotedError, LookupError):
    """A memory (or other record) does not exist for the user who asked for it."""


class ConflictError(NotedError):
    """A write was refused because it would overwrite data that belongs to someone else."""


class StoreError(NotedError):
    """The database could not be opened, read or written."""


class SchemaVersionError(StoreError):
    """The database was written by a newer noted than this one."""


class ModelError(NotedError):
    """A chat model or embedder failed to answer usefully."""
