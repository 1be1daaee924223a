"""The one exception tree of noted.

Everything noted raises on purpose derives from :class:`NotedError`, so callers can catch
noted's failures without catching unrelated faults.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from noted.sessions import RunResult

__all__ = [
    "ConflictError",
    "DamagedMemoryError",
    "MissingDependencyError",
    "ModelConnectionError",
    "ModelError",
    "ModelHTTPError",
    "ModelOutputError",
    "ModelRateLimitError",
    "ModelServerError",
    "NotFoundError",
    "NotedError",
    "RunNotSavedError",
    "RunTooLargeError",
    "SchemaVersionError",
    "StoreError",
    "UserError",
]


class NotedError(Exception):
    """Base class of every error noted raises on purpose."""


class UserError(NotedError, ValueError):
    """The caller passed a bad value: the message names it and says what is accepted."""


class RunTooLargeError(UserError):
    """A run is larger than a session store keeps (:data:`noted.limits.MAX_RUN_BYTES`, the
    run as JSON in UTF-8 bytes), and nothing of it was written; the same on every store.
    Trying again does not help: the message says how large the run is and the limit.
    ``run_id`` is None for a message an agent refused before its run began (the message
    alone makes a run too large); ``run`` is the whole run, its answer included, when an
    agent made it and could not save it."""

    def __init__(self, run_id: str | None, size: int, limit: int) -> None:
        what = "the message alone makes a run of" if run_id is None else f"run {run_id!r} is"
        super().__init__(
            f"{what} {size:,} bytes as JSON, over the {limit:,} bytes a session store "
            "keeps of one run (noted.limits.MAX_RUN_BYTES); nothing of it was written"
        )
        self.run_id = run_id
        self.size = size
        self.limit = limit
        self.run: RunResult | None = None


class NotFoundError(NotedError, LookupError):
    """A memory (or other record) does not exist for the user who asked for it."""


class ConflictError(NotedError):
    """A write was refused because it would overwrite data that belongs to someone else."""


class StoreError(NotedError):
    """The database could not be opened, read or written."""


class RunNotSavedError(StoreError):
    """An agent's run was answered, but its session store failed to save it (the store's
    error is chained and its text ends the message). ``run`` is the whole run, its answer
    included: the caller keeps what the model answered. Nothing is learned from the run
    (no memory or summary update); the session keeps its other runs, and the next run
    continues it without this turn."""

    def __init__(self, run: RunResult, cause: StoreError) -> None:
        super().__init__(
            f"run {run.run_id!r} was answered but not saved to session {run.session_id!r}: {cause}"
        )
        self.run = run


class DamagedMemoryError(StoreError):
    """A change or an export that needs a memory's stored topics met them damaged (not a
    list of strings: a hand-edited or damaged database): the message says which memory
    and what is wrong. Reads list such a memory with no topics and ``damaged`` set
    (:attr:`noted.UserMemory.damaged`); giving it topics (an edit, a replace) repairs
    it, and deleting it is always possible."""

    def __init__(self, memory_id: str, reason: str) -> None:
        super().__init__(f"memory {memory_id!r} has damaged topics: {reason}")
        self.memory_id = memory_id
        self.reason = reason


class SchemaVersionError(StoreError):
    """The database was written by a newer noted than this one."""


class MissingDependencyError(NotedError, ImportError):
    """An optional extra is needed and not installed; the message says what to install."""


class ModelError(NotedError):
    """A chat model or embedder failed to answer usefully."""

    retryable = False


class ModelHTTPError(ModelError):
    """The provider answered with an HTTP error; ``message`` is the provider's own text."""

    retryable = False

    def __init__(self, provider: str, status_code: int, message: str) -> None:
        super().__init__(f"{provider} answered HTTP {status_code}: {message}")
        self.provider = provider
        self.status_code = status_code
        self.message = message
        self.retry_after: float | None = None


class ModelRateLimitError(ModelHTTPError):
    """HTTP 429: too many requests or tokens; retried with backoff before it is raised."""

    retryable = True


class ModelServerError(ModelHTTPError):
    """HTTP 5xx: the provider failed; retried with backoff before it is raised."""

    retryable = True


class ModelConnectionError(ModelError):
    """The provider could not be reached, lost the connection, or did not answer in time;
    retried before raised."""

    retryable = True


class ModelOutputError(ModelError):
    """The model answered, but not in the shape that was asked for."""
