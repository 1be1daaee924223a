"""The SessionStore methods written once, over the primitives each backend provides.

:class:`SessionRules` is the :class:`~noted.db.base.SessionStore` a backend class gets by
inheriting it: it checks the paging arguments, reads the clock for a new run and answers a
page of none without asking the database, then calls the backend's primitives (the
``_..._session``/``_..._runs`` methods below). Who owns a session is a rule every primitive
keeps (a session of another user is never read, listed or deleted; appending to it or
setting its summary raises :func:`~noted.db._rows.foreign_session`), where the database can
check it in the same statement or transaction as the write; the decision on the owner read
is :func:`owns_session` (reading runs, writing a summary) or :func:`sees_session` (reading
or deleting a session), wherever the owner is read in Python.

:class:`SessionsInModule` provides those primitives for a backend whose sessions live in a
module of functions taking a connection and the backend's names first (SQLite, PostgreSQL,
MongoDB): the backend names the module, its read and write connections and its names.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

from noted._time import now_micros
from noted.db._rows import foreign_session
from noted.db.base import SessionStore, check_page
from noted.errors import ConflictError, RunTooLargeError, UserError
from noted.limits import MAX_RUN_BYTES
from noted.schema import check_id, check_time, check_unicode, require_id
from noted.sessions import RunResult, Session, SessionSummary, run_bytes

__all__ = [
    "SessionFunctions",
    "SessionRead",
    "SessionRules",
    "SessionsInModule",
    "check_run",
    "owns_session",
    "run_window",
    "sees_session",
    "session_pages",
    "summary_fits",
    "takes_run",
]


def check_run(run: RunResult, existing: bool | str = False) -> RunResult:
    """``run`` when every store can keep it alike: ids as the Memory API takes them, the
    texts said (the input, the answer, each message) without unpaired surrogates, and a
    timezone-aware ``created_at``, and no larger than :data:`~noted.limits.MAX_RUN_BYTES`
    (:class:`~noted.errors.RunTooLargeError`); ``existing`` as :func:`takes_run` reads it
    (a run id is checked as an id). A :class:`~noted.errors.UserError` naming the field
    otherwise (nothing is written)."""
    for name in ("run_id", "session_id", "user_id"):
        require_id(name, getattr(run, name))
    check_id("agent_id", run.agent_id)
    if isinstance(existing, str):
        require_id("existing", existing)
    elif not isinstance(existing, bool):
        raise UserError(f"existing must be a bool or a run id, got {existing!r}")
    check_unicode("input", run.input)
    if run.content is not None:
        check_unicode("content", run.content)
    for message in run.messages:
        if message.content is not None:
            check_unicode("a message's content", message.content)
    if check_time("created_at", run.created_at) is None:
        raise UserError("a run's created_at must be a datetime, got None")
    size = run_bytes(run)
    if size > MAX_RUN_BYTES:
        raise RunTooLargeError(run.run_id, size, MAX_RUN_BYTES)
    return run


_Run = TypeVar("_Run")


def run_window(runs: Sequence[_Run], last_n: int | None, offset: int) -> list[_Run]:
    """The last ``last_n`` (None: all) of ``runs`` (oldest first, as runs or as their
    stored form) before the newest ``offset``."""
    end = max(len(runs) - offset, 0)
    return list(runs[0 if last_n is None else max(end - last_n, 0) : end])


SessionRead = Callable[[str, str | None, int | None, int], Session | None]
"""A read of a session with a page of its runs: ``(session_id, user_id, last_n, offset)``,
as :meth:`~noted.db.base.SessionStore.get_session` takes them."""


def session_pages(store: SessionStore) -> SessionRead:
    """How ``store`` reads a session with a page of its runs: its own ``get_session`` with
    ``last_n`` and ``offset``, or, for a store whose ``get_session`` takes neither (the
    SessionStore interface before pages of runs), the whole session with the page cut
    from its runs. The store's signature is read once, here."""
    if _takes_pages(store.get_session):
        return lambda session_id, user_id, last_n, offset: store.get_session(
            session_id, user_id, last_n=last_n, offset=offset
        )

    def cut(
        session_id: str, user_id: str | None, last_n: int | None, offset: int
    ) -> Session | None:
        check_page(last_n, offset)
        session = store.get_session(session_id, user_id)
        if session is not None:
            session.runs = run_window(session.runs, last_n, offset)
        return session

    return cut


def _takes_pages(method: Callable[..., object]) -> bool:
    """Whether ``method`` takes ``last_n`` and ``offset`` by keyword (a signature that
    cannot be read is taken to)."""
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return True
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return True
    keyword = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return all(
        name in parameters and parameters[name].kind in keyword for name in ("last_n", "offset")
    )


def run_id_taken(run_id: str) -> ConflictError:
    """The error of a run whose id a stored run has (in any session, of any user): nothing
    of it is written."""
    return ConflictError(f"run_id {run_id!r} is taken by another run; nothing was written")


def _owned(session_id: str, user_id: str) -> tuple[str, str]:
    """A session id and the user it must belong to, checked as the Memory API checks ids."""
    return require_id("session_id", session_id), require_id("user_id", user_id)


def owns_session(owner: str | None, user_id: str, session_id: str) -> bool:
    """Whether ``user_id`` has the session ``session_id``, whose owner is ``owner`` (None:
    there is no such session), to read the runs of or write the summary of: False when
    there is none; :func:`~noted.db._rows.foreign_session` when another user owns it."""
    if owner is None:
        return False
    if owner != user_id:
        raise foreign_session(session_id)
    return True


def summary_fits(summary: SessionSummary, holds_run: Callable[[str], bool]) -> bool:
    """Whether a session may take ``summary``: it names no last run, or one the session
    holds (``holds_run(run_id)``); else it is a summary of runs deleted since, of a
    session deleted while it was written and perhaps begun again."""
    return summary.last_run_id is None or holds_run(summary.last_run_id)


def takes_run(
    owner: str | None, run: RunResult, existing: bool | str, holds_run: Callable[[str], bool]
) -> bool:
    """Whether ``run`` is written to its session, whose owner is ``owner`` (None: there is
    no such session). ``existing`` says which session the run continues: False, none (the
    run may begin its session, or join the one another run began meanwhile); the id of a
    run its caller read from the session when the run began, the session that holds that
    run (``holds_run(run_id)``, asked only of a session the store has); True, whichever
    session of that id there is (a caller that read no run id).

    The user's own session takes the run; a missing one is created by a run that may begin
    it and stays missing for a run that continues one (the session was deleted since, and
    the run is dropped with it); a session that does not hold the run named was deleted
    and begun again since (by another writer, perhaps another user): not the run's, which
    is dropped too; :func:`~noted.db._rows.foreign_session` for another user's session
    otherwise. The same rule on every store, decided on what is read in the write's own
    transaction (or script, or lock; on MongoDB, against the session's ``created_at``
    claimed with the run's place)."""
    if owner is None:
        return not existing
    if isinstance(existing, str) and not holds_run(existing):
        return False
    if owner != run.user_id:
        raise foreign_session(run.session_id)
    return True


def sees_session(owner: str | None, user_id: str | None) -> bool:
    """Whether a caller naming ``user_id`` (None: every user, for administrative callers)
    sees, and may delete, a session owned by ``owner`` (None: there is no such session)."""
    return owner is not None and (user_id is None or owner == user_id)


class SessionRules:
    """The SessionStore protocol's methods, over the backend's primitives."""

    def append_run(self, run: RunResult, *, existing: bool | str = False) -> bool:
        return self._store_run(check_run(run, existing), now_micros(), existing)

    def get_runs(
        self,
        session_id: str,
        user_id: str,
        *,
        last_n: int | None = None,
        completed_only: bool = False,
    ) -> list[RunResult]:
        check_page(last_n, 0)
        return self._read_runs(*_owned(session_id, user_id), last_n, completed_only)

    def get_session(
        self,
        session_id: str,
        user_id: str | None,
        *,
        last_n: int | None = None,
        offset: int = 0,
    ) -> Session | None:
        check_page(last_n, offset)
        return self._read_session_window(
            require_id("session_id", session_id), check_id("user_id", user_id), last_n, offset
        )

    def get_sessions(self, session_ids: Sequence[str]) -> dict[str, Session]:
        """The sessions among ``session_ids``, of every user, by id: what
        ``get_session(session_id, None)`` answers for each (runs and summary), read many
        at a time (what an import reads of the sessions it would write)."""
        ids = list(dict.fromkeys(require_id("session_id", i) for i in session_ids))
        return self._read_sessions_by_id(ids) if ids else {}

    def list_sessions(
        self, user_id: str | None, *, limit: int | None = None, offset: int = 0
    ) -> list[Session]:
        check_page(limit, offset)
        user_id = check_id("user_id", user_id)
        return [] if limit == 0 else self._read_sessions(user_id, limit, offset)

    def delete_session(self, session_id: str, user_id: str | None) -> bool:
        user = check_id("user_id", user_id)
        return self._remove_session(require_id("session_id", session_id), user)

    def get_session_summary(self, session_id: str, user_id: str) -> SessionSummary | None:
        return self._read_summary(*_owned(session_id, user_id))

    def set_session_summary(self, session_id: str, user_id: str, summary: SessionSummary) -> bool:
        return self._write_summary(*_owned(session_id, user_id), summary)

    # -- the backend's primitives ---------------------------------------------------------

    def _store_run(self, run: RunResult, now_us: int, existing: bool | str) -> bool:
        """Append ``run``, creating its session (at ``now_us``) on its first run, as
        :func:`takes_run` decides; False when it was dropped (nothing is written)."""
        raise NotImplementedError

    def _read_runs(
        self, session_id: str, user_id: str, last_n: int | None, completed_only: bool
    ) -> list[RunResult]:
        raise NotImplementedError

    def _read_session(self, session_id: str, user_id: str | None) -> Session | None:
        raise NotImplementedError

    def _read_session_window(
        self, session_id: str, user_id: str | None, last_n: int | None, offset: int
    ) -> Session | None:
        """The session with the last ``last_n`` (None: all) of its runs before the newest
        ``offset``. This default reads every run; a backend reads only those."""
        session = self._read_session(session_id, user_id)
        if session is not None:
            session.runs = run_window(session.runs, last_n, offset)
        return session

    def _read_sessions(self, user_id: str | None, limit: int | None, offset: int) -> list[Session]:
        raise NotImplementedError

    def _read_sessions_by_id(self, session_ids: list[str]) -> dict[str, Session]:
        """The sessions among ``session_ids`` (distinct, at least one), whole, by id."""
        raise NotImplementedError

    def _remove_session(self, session_id: str, user_id: str | None) -> bool:
        raise NotImplementedError

    def _read_summary(self, session_id: str, user_id: str) -> SessionSummary | None:
        raise NotImplementedError

    def _write_summary(self, session_id: str, user_id: str, summary: SessionSummary) -> bool:
        raise NotImplementedError


class SessionFunctions(Protocol):
    """A backend's sessions module: each function takes the connection and the backend's
    names (tables, or where the server is) first; the writing ones run inside the write
    connection's transaction."""

    def add_run(
        self, conn: Any, names: Any, run: RunResult, now_us: int, existing: bool | str
    ) -> bool: ...

    def get_runs(
        self,
        conn: Any,
        names: Any,
        session_id: str,
        user_id: str,
        last_n: int | None,
        completed_only: bool,
    ) -> list[RunResult]: ...

    def get_session(
        self,
        conn: Any,
        names: Any,
        session_id: str,
        user_id: str | None,
        last_n: int | None,
        offset: int,
    ) -> Session | None:
        """The session with the last ``last_n`` (None: all) of its runs before the newest
        ``offset``."""

    def get_sessions(self, conn: Any, names: Any, session_ids: list[str]) -> dict[str, Session]: ...

    def list_sessions(
        self, conn: Any, names: Any, user_id: str | None, limit: int | None, offset: int
    ) -> list[Session]: ...

    def delete_session(
        self, conn: Any, names: Any, session_id: str, user_id: str | None
    ) -> bool: ...

    def get_summary(
        self, conn: Any, names: Any, session_id: str, user_id: str
    ) -> SessionSummary | None: ...

    def set_summary(
        self, conn: Any, names: Any, session_id: str, user_id: str, summary: SessionSummary
    ) -> bool: ...


class SessionsInModule(SessionRules):
    """The primitives over a sessions module: the backend sets ``_session_functions`` (the
    module), ``_session_names`` and the two connection factories."""

    _session_functions: SessionFunctions
    _session_names: Any
    _session_reader: Callable[..., AbstractContextManager[Any]]
    _session_writer: Callable[..., AbstractContextManager[Any]]

    def _store_run(self, run: RunResult, now_us: int, existing: bool | str) -> bool:
        with self._session_writer() as conn:
            return self._session_functions.add_run(conn, self._session_names, run, now_us, existing)

    def _read_runs(
        self, session_id: str, user_id: str, last_n: int | None, completed_only: bool
    ) -> list[RunResult]:
        with self._session_reader() as conn:
            return self._session_functions.get_runs(
                conn, self._session_names, session_id, user_id, last_n, completed_only
            )

    def _read_session(self, session_id: str, user_id: str | None) -> Session | None:
        return self._read_session_window(session_id, user_id, None, 0)

    def _read_session_window(
        self, session_id: str, user_id: str | None, last_n: int | None, offset: int
    ) -> Session | None:
        with self._session_reader() as conn:
            return self._session_functions.get_session(
                conn, self._session_names, session_id, user_id, last_n, offset
            )

    def _read_sessions_by_id(self, session_ids: list[str]) -> dict[str, Session]:
        with self._session_reader() as conn:
            return self._session_functions.get_sessions(conn, self._session_names, session_ids)

    def _read_sessions(self, user_id: str | None, limit: int | None, offset: int) -> list[Session]:
        with self._session_reader() as conn:
            return self._session_functions.list_sessions(
                conn, self._session_names, user_id, limit, offset
            )

    def _remove_session(self, session_id: str, user_id: str | None) -> bool:
        with self._session_writer() as conn:
            return self._session_functions.delete_session(
                conn, self._session_names, session_id, user_id
            )

    def _read_summary(self, session_id: str, user_id: str) -> SessionSummary | None:
        with self._session_reader() as conn:
            return self._session_functions.get_summary(
                conn, self._session_names, session_id, user_id
            )

    def _write_summary(self, session_id: str, user_id: str, summary: SessionSummary) -> bool:
        with self._session_writer() as conn:
            return self._session_functions.set_summary(
                conn, self._session_names, session_id, user_id, summary
            )
