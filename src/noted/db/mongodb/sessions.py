"""MongoDb's sessions: ``<session_table>`` (one document per session, ``_id`` its id) and
``<session_table>_runs`` (one per run, its place in ``run_index``), each function on the
caller's collections, as in sqlite_sessions and postgres_sessions."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol

from noted._time import from_micros, now_micros, to_micros
from noted.db.sessions_core import (
    owns_session,
    run_id_taken,
    sees_session,
    summary_fits,
    takes_run,
)
from noted.errors import StoreError
from noted.sessions import RunResult, Session, SessionSummary

if TYPE_CHECKING:
    from pymongo.collection import Collection

__all__ = [
    "SessionCollections",
    "add_run",
    "append_run",
    "delete_session",
    "get_runs",
    "get_session",
    "get_sessions",
    "get_summary",
    "list_sessions",
    "set_summary",
]

Doc = dict[str, Any]

_SESSIONS_PER_QUERY: Final = 1000  # sessions read per query by get_sessions (with their runs)


class SessionCollections(Protocol):
    """Where a store keeps its sessions and their runs."""

    @property
    def sessions(self) -> Collection[Doc]: ...

    @property
    def runs(self) -> Collection[Doc]: ...


_CLAIM_ROUNDS = 5  # tries at a run's place while other writers create or drop the session
# A run document's: the created_at of the session it was written in. A session deleted and
# begun again under its id has another, so what a write left of the deleted one (a write
# whose steps a delete came between, and whose writer stopped before taking it away) is
# never read as the new one's; runs stored before it have none, and are read as before.
_SESSION_CREATED = "session_created_at"


def _owner(sessions: Collection[Doc], session_id: str) -> Doc | None:
    """The session's owner and created_at, or None when there is no such session."""
    return sessions.find_one({"_id": session_id}, {"user_id": 1, "created_at": 1})


def _runs_in(session_id: str, created: Any) -> Doc:
    """The query for the runs of the session ``session_id`` created at ``created``: those
    written in it, and those stored before runs recorded their session (which are read as
    any session's of that id)."""
    return {"session_id": session_id, _SESSION_CREATED: {"$in": [created, None]}}


def _holder(runs: Collection[Doc], session_id: str, created: Any) -> Callable[[str], bool]:
    """Whether the session ``session_id`` created at ``created`` holds a run, by its id (a
    run left of a deleted session of that id is not held by the one begun again)."""

    def holds(run_id: str) -> bool:
        return (
            runs.find_one({"run_id": run_id, **_runs_in(session_id, created)}, {"_id": 1})
            is not None
        )

    return holds


def _session_of(doc: Mapping[str, Any]) -> Session:
    summary = doc.get("summary")
    return Session(
        session_id=doc["_id"],
        user_id=doc["user_id"],
        agent_id=doc.get("agent_id"),
        created_at=from_micros(doc["created_at"]),
        updated_at=from_micros(doc["updated_at"]),
        summary=None if summary is None else SessionSummary.from_dict(summary),
        run_count=int(doc["run_count"]),
    )


def _runs_of(
    runs: Collection[Doc],
    session: Mapping[str, Any],
    last_n: int | None,
    completed_only: bool,
    offset: int = 0,
) -> list[RunResult]:
    """The runs of ``session`` (its document), oldest first (the last ``last_n`` before
    the newest ``offset``, read newest first): only its owner's, so a session deleted and
    begun again by another user since its document was read answers none of the new
    owner's runs (not even runs stored before runs named their session's start).
    ``last_n`` 0 is none, asked for nothing (MongoDB's limit 0 is no limit)."""
    if last_n == 0:
        return []
    query = _runs_in(session["_id"], session["created_at"])
    query["data.user_id"] = session["user_id"]
    if completed_only:
        query["status"] = "completed"
    cursor = runs.find(query, {"data": 1}).sort("run_index", -1)
    if offset:
        cursor = cursor.skip(offset)
    if last_n is not None:
        cursor = cursor.limit(last_n)
    docs = list(cursor)
    return [RunResult.from_dict(doc["data"]) for doc in reversed(docs)]


def append_run(
    sessions: Collection[Doc],
    runs: Collection[Doc],
    run: RunResult,
    where: str,
    extra: Doc | None = None,
    existing: bool | str = False,
    on_new_session: Callable[[], object] | None = None,
) -> bool:
    """``extra`` fields go in the run's document, written with it (the run's jobs). False,
    nothing written, when the run was to continue a session that is gone, or that does not
    hold the run named by ``existing`` (see sessions_core.takes_run).

    Three steps: the run's place is claimed in the session (which reads its created_at),
    the run is written with that created_at, and the session is looked for again. A
    delete that came between them (the session gone, or deleted and begun again) is seen
    then, and the writer takes its run away (False); a delete after that deletes the run
    with the session (see :func:`delete_session`). ``on_new_session`` is called when the
    run created its session."""
    from bson.int64 import Int64
    from pymongo.errors import DuplicateKeyError

    claim = _claim_run_index(sessions, runs, run, where, existing)
    if claim is None:
        return False
    index, created = claim
    if index == 0 and on_new_session is not None:
        on_new_session()
    doc: Doc = {
        "session_id": run.session_id,
        "run_index": index,
        _SESSION_CREATED: created,
        "run_id": run.run_id,
        "status": run.status,
        "created_at": Int64(to_micros(run.created_at)),
        "data": run.to_dict(),
        **(extra or {}),
    }
    try:
        _insert_run(runs, doc)
    except BaseException as exc:
        _give_back(sessions, run.session_id, index, created)
        if isinstance(exc, DuplicateKeyError) and "run_id" in (exc.details or {}).get(
            "keyPattern", {"run_id": 1}
        ):
            raise run_id_taken(run.run_id) from exc
        raise
    if sessions.find_one({"_id": run.session_id, "created_at": created}, {"_id": 1}) is None:
        runs.delete_one({"_id": doc["_id"]})
        return False
    return True


def _insert_run(runs: Collection[Doc], doc: Doc) -> None:
    """Write a run's document at the place claimed for it. A document of another session
    of that id (deleted since) there is one a writer has yet to take away, or left: it
    goes, and the run takes its place."""
    from pymongo.errors import DuplicateKeyError

    try:
        runs.insert_one(doc)
    except DuplicateKeyError:
        stale = {
            "session_id": doc["session_id"],
            "run_index": doc["run_index"],
            _SESSION_CREATED: {"$ne": doc[_SESSION_CREATED]},
        }
        if runs.delete_one(stale).deleted_count != 1:
            raise
        runs.insert_one(doc)


def _give_back(sessions: Collection[Doc], session_id: str, index: int, created: Any) -> None:
    """Undo the claim of place ``index`` (in the session created at ``created``) by a run
    that could not be written (too large, say) or was dropped, unless another run has
    taken a place after it: the session that run created goes, a session it did not
    create counts one run less."""
    from pymongo.errors import PyMongoError

    taken = {"_id": session_id, "created_at": created, "run_count": index + 1}
    with contextlib.suppress(PyMongoError):  # the server is gone too: its error says why
        if index == 0:
            sessions.delete_one(taken)
        else:
            sessions.update_one(taken, {"$inc": {"run_count": -1}})


def _claim_run_index(
    sessions: Collection[Doc],
    runs: Collection[Doc],
    run: RunResult,
    where: str,
    existing: bool | str,
) -> tuple[int, Any] | None:
    """The place of ``run`` in its session and the session's created_at, the place taken
    by counting the session's runs up in one atomic update (which never creates the
    session); the session is created for ``run.user_id`` on its first run. None is the
    answer of a run that was to continue a session that is gone, or that does not hold
    the run ``existing`` names (see sessions_core.takes_run): looked for after the claim,
    so found only in the session claimed (a delete takes a session's runs before it, and a
    run left of a deleted session of that id is not one it holds)."""
    from bson.int64 import Int64
    from pymongo import ReturnDocument
    from pymongo.errors import DuplicateKeyError

    for _ in range(_CLAIM_ROUNDS):  # each round ends unless another writer created or dropped it
        now = Int64(now_micros())
        before = sessions.find_one_and_update(
            {"_id": run.session_id, "user_id": run.user_id},
            {"$inc": {"run_count": 1}, "$set": {"updated_at": now}},
            projection={"run_count": 1, "created_at": 1},
            return_document=ReturnDocument.BEFORE,
        )
        if before is not None:
            index, created = int(before["run_count"]), before["created_at"]
            if takes_run(run.user_id, run, existing, _holder(runs, run.session_id, created)):
                return index, created
            _give_back(sessions, run.session_id, index, created)
            return None
        owner = _owner(sessions, run.session_id)
        user = None if owner is None else str(owner["user_id"])
        holds = _holder(runs, run.session_id, None if owner is None else owner["created_at"])
        if not takes_run(user, run, existing, holds):
            return None
        if owner is not None:
            continue  # the user's own session, created meanwhile: count on it
        try:
            sessions.insert_one(
                {
                    "_id": run.session_id,
                    "user_id": run.user_id,
                    "agent_id": run.agent_id,
                    "created_at": now,
                    "updated_at": now,
                    "summary": None,
                    "run_count": 1,
                }
            )
        except DuplicateKeyError:
            continue
        return 0, now
    raise StoreError(
        f"MongoDB at {where}: session {run.session_id!r} kept being created and "
        "deleted by other writers; the run was not stored"
    )


def add_run(
    db: SessionCollections, where: str, run: RunResult, now_us: int, existing: bool | str
) -> bool:
    """append_run as noted.db.sessions_core.SessionFunctions names it (a run's place is
    claimed with the server's own count, so ``now_us`` is read again there)."""
    return append_run(db.sessions, db.runs, run, where, existing=existing)


def get_runs(
    db: SessionCollections,
    where: str,
    session_id: str,
    user_id: str,
    last_n: int | None,
    completed_only: bool,
) -> list[RunResult]:
    owner = _owner(db.sessions, session_id)
    if not owns_session(None if owner is None else str(owner["user_id"]), user_id, session_id):
        return []
    assert owner is not None
    return _runs_of(db.runs, owner, last_n, completed_only)


def get_session(
    db: SessionCollections,
    where: str,
    session_id: str,
    user_id: str | None,
    last_n: int | None = None,
    offset: int = 0,
) -> Session | None:
    """The session with the last ``last_n`` (None: all) of its runs before the newest
    ``offset``."""
    doc = db.sessions.find_one({"_id": session_id})
    if doc is None or not sees_session(doc["user_id"], user_id):
        return None
    session = _session_of(doc)
    session.runs = _runs_of(db.runs, doc, last_n, False, offset)
    return session


def get_sessions(db: SessionCollections, where: str, session_ids: list[str]) -> dict[str, Session]:
    """The sessions among ``session_ids``, whole, by id: two queries (sessions, runs) per
    _SESSIONS_PER_QUERY."""
    found: dict[str, Session] = {}
    for start in range(0, len(session_ids), _SESSIONS_PER_QUERY):
        chunk = session_ids[start : start + _SESSIONS_PER_QUERY]
        docs = {doc["_id"]: doc for doc in db.sessions.find({"_id": {"$in": chunk}})}
        sessions = {session_id: _session_of(doc) for session_id, doc in docs.items()}
        runs = db.runs.find(
            {"session_id": {"$in": chunk}}, {"session_id": 1, "data": 1, _SESSION_CREATED: 1}
        ).sort([("session_id", 1), ("run_index", 1)])
        for doc in runs:  # not those of a session begun after the rows were read
            session = docs.get(doc["session_id"])
            if session is not None and doc.get(_SESSION_CREATED) in (None, session["created_at"]):
                sessions[doc["session_id"]].runs.append(RunResult.from_dict(doc["data"]))
        found.update(sessions)
    return found


def list_sessions(
    db: SessionCollections, where: str, user_id: str | None, limit: int | None, offset: int
) -> list[Session]:
    cursor = (
        db.sessions.find({} if user_id is None else {"user_id": user_id})
        .sort([("updated_at", -1), ("_id", 1)])
        .skip(offset)
    )
    if limit is not None:
        cursor = cursor.limit(limit)
    return [_session_of(doc) for doc in cursor]


def delete_session(
    db: SessionCollections, where: str, session_id: str, user_id: str | None
) -> bool:
    """The session's runs first, then the session, then the runs written meanwhile (their
    places claimed before the session went, so their writers found it still there). Only
    the runs of the session read first go: when another delete took it and a run began it
    again (for any user) between the read and the deletes, the new session keeps its runs."""
    owner = _owner(db.sessions, session_id)
    if owner is None or not sees_session(str(owner["user_id"]), user_id):
        return False
    db.runs.delete_many(_runs_in(session_id, owner["created_at"]))
    key = {"_id": session_id, "user_id": owner["user_id"], "created_at": owner["created_at"]}
    deleted = db.sessions.delete_one(key).deleted_count == 1
    db.runs.delete_many({"session_id": session_id, _SESSION_CREATED: owner["created_at"]})
    return deleted


def get_summary(
    db: SessionCollections, where: str, session_id: str, user_id: str
) -> SessionSummary | None:
    doc = db.sessions.find_one({"_id": session_id, "user_id": user_id}, {"summary": 1})
    summary = None if doc is None else doc.get("summary")
    return None if summary is None else SessionSummary.from_dict(summary)


def set_summary(
    db: SessionCollections,
    where: str,
    session_id: str,
    user_id: str,
    summary: SessionSummary,
    newer_only: bool = False,
) -> bool:
    """Only while the session holds the summary's last run: the session's ``created_at``
    in the update's filter keeps it off a session deleted and begun again meanwhile.
    ``newer_only``: not over a summary of more runs (a job's summary, which a worker
    whose job was taken over may still send after a later job's)."""
    doc = db.sessions.find_one({"_id": session_id}, {"user_id": 1, "created_at": 1})
    if not owns_session(None if doc is None else str(doc["user_id"]), user_id, session_id):
        return False
    assert doc is not None
    if not summary_fits(summary, _holder(db.runs, session_id, doc["created_at"])):
        return False
    key: dict[str, Any] = {"_id": session_id, "user_id": user_id, "created_at": doc["created_at"]}
    if newer_only:
        key["$or"] = [{"summary": None}, {"summary.run_count": {"$lte": summary.run_count}}]
    return db.sessions.update_one(key, {"$set": {"summary": summary.to_dict()}}).matched_count == 1
