"""What an import writes, and writing it through noted's public API.

A reader (Agno, mem0) turns its whole source into an :class:`ImportPlan` first, so a
malformed source fails before anything is written. :func:`apply_plan` then compares the
plan with the store (whose copies of the plan's memories and sessions it reads many at a
time) and writes only what is missing or different: the memories in one transaction
(``Memory.import_user_memories``), then each new run and changed summary with the session
store's own methods. Running the same import again writes nothing, a memory
changed in the store after the source's version of it (edited in noted since the last
import) is kept as it is, and one deleted in the store after the source's version of it
(its history ends with that deletion) stays deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from noted.db.base import MemoryStore, SessionStore
from noted.db.sessions_core import check_run
from noted.errors import UserError
from noted.memory.door import DEFAULT_USER_ID
from noted.memory.memory import Memory
from noted.schema import UserMemory
from noted.sessions import RunResult, Session, SessionSummary

__all__ = [
    "ImportPlan",
    "ImportReport",
    "ImportedSession",
    "apply_plan",
    "for_user",
    "memories_of",
    "not_stored_as_is",
    "stored_copies",
]

Progress = Callable[[int, int], None]


@dataclass
class ImportedSession:
    session_id: str
    user_id: str
    runs: list[RunResult] = field(default_factory=list)
    summary: SessionSummary | None = None


@dataclass
class ImportPlan:
    """Everything read from a source, validated, before anything is written."""

    source: str
    memories: list[UserMemory] = field(default_factory=list)
    sessions: list[ImportedSession] = field(default_factory=list)


def memories_of(memories: list[UserMemory], user_id: str) -> list[UserMemory]:
    """The memories that are ``user_id``'s, those that name no user made theirs."""
    for m in memories:
        m.user_id = m.user_id or user_id
    return [m for m in memories if m.user_id == user_id]


def for_user(plan: ImportPlan, user_id: str | None) -> tuple[ImportPlan, int]:
    """The part of ``plan`` that is ``user_id``'s (all of it when None): its memories
    (:func:`memories_of`) and sessions; and how many memories were left out."""
    if user_id is None:
        return plan, 0
    memories = memories_of(plan.memories, user_id)
    sessions = [s for s in plan.sessions if s.user_id == user_id]
    return ImportPlan(plan.source, memories, sessions), len(plan.memories) - len(memories)


@dataclass
class ImportReport:
    """What an import wrote (or, with ``dry_run``, would write)."""

    source: str
    memories_read: int = 0
    memories_written: int = 0
    sessions_read: int = 0
    runs_read: int = 0
    runs_written: int = 0
    summaries_written: int = 0
    dry_run: bool = False
    # those of other users when one user is imported, and those that name no user but
    # are kept under another user (whose import took them first)
    memories_skipped: int = 0
    # those the store holds changed after the source's version (updated_at later): kept
    memories_kept: int = 0
    # those deleted in the store after the source's version (a later "delete" event in
    # their history): not written again
    memories_deleted_here: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "memories_read": self.memories_read,
            "memories_written": self.memories_written,
            "sessions_read": self.sessions_read,
            "runs_read": self.runs_read,
            "runs_written": self.runs_written,
            "summaries_written": self.summaries_written,
            "dry_run": self.dry_run,
            "memories_skipped": self.memories_skipped,
            "memories_kept": self.memories_kept,
            "memories_deleted_here": self.memories_deleted_here,
        }


Stored = Mapping[tuple[str, str], UserMemory]


def stored_copies(store: MemoryStore, memories: Sequence[UserMemory]) -> Stored:
    """The store's copies of ``memories`` (by their ids and users), those it has, by user
    and id: each user's read many at a time where the store can (``get_memories``), else
    one by one."""
    by_user: dict[str, list[str]] = {}
    for m in memories:
        if m.memory_id is not None:
            by_user.setdefault(m.user_id or DEFAULT_USER_ID, []).append(m.memory_id)
    found: dict[tuple[str, str], UserMemory] = {}
    for user_id, ids in by_user.items():
        theirs = _get_memories(store, ids, user_id)
        found.update(((user_id, memory_id), m) for memory_id, m in theirs.items())
    return found


def _get_memories(store: MemoryStore, ids: Sequence[str], user_id: str) -> Mapping[str, UserMemory]:
    """The memories among ``ids`` that ``user_id`` has, by id: at once where the store
    reads many (``get_memories``), else each in turn."""
    at_once = getattr(store, "get_memories", None)
    if callable(at_once):
        found: Mapping[str, UserMemory] = at_once(ids, user_id)
        return found
    one_by_one = ((memory_id, store.get_memory(memory_id, user_id)) for memory_id in ids)
    return {memory_id: m for memory_id, m in one_by_one if m is not None}


def _stored(stored: Stored, new: UserMemory) -> UserMemory | None:
    """The store's copy of ``new`` among ``stored`` (see :func:`stored_copies`)."""
    if new.memory_id is None:
        return None
    return stored.get((new.user_id or DEFAULT_USER_ID, new.memory_id))


def not_stored_as_is(store: MemoryStore, memories: Sequence[UserMemory]) -> list[UserMemory]:
    """Those of ``memories`` that ``store`` does not hold as they are (writing the others
    would change nothing)."""
    stored = stored_copies(store, memories)
    return [m for m in memories if (old := _stored(stored, m)) is None or not _same(old, m)]


def _changed_since(stored: UserMemory, new: UserMemory) -> bool:
    """Whether the stored memory was changed after the source's version of it: writing
    the source's would put an older text back over a newer one."""
    return (
        new.updated_at is not None
        and stored.updated_at is not None
        and stored.updated_at > new.updated_at
    )


@dataclass
class _Compared:
    """The plan's memories set against the store: those to write, and how many of the
    others the store holds changed since the source's version (``kept``), lacks because
    they were deleted there since (``deleted``), or keeps under another user (``taken``:
    memories that name no user in the source, see :func:`_taken`)."""

    write: list[UserMemory]
    kept: int
    deleted: int
    taken: int


def _to_write(store: MemoryStore, memories: list[UserMemory], unowned: set[str]) -> _Compared:
    """The memories the store lacks or holds otherwise than the source, leaving out those
    it holds changed since (see :func:`_changed_since`), those of ``unowned`` (the ids of
    the memories that name no user in the source) it keeps under another user (see
    :func:`_taken`) and those it deleted since (see :func:`_deleted_since`)."""
    write: list[UserMemory] = []
    missing: list[UserMemory] = []
    kept = 0
    copies = stored_copies(store, memories)
    for new in memories:
        stored = _stored(copies, new)
        if stored is None:
            missing.append(new)
            write.append(new)
        elif _same(stored, new):
            continue
        elif _changed_since(stored, new):
            kept += 1
        else:
            write.append(new)
    taken = _taken(store, [m for m in missing if m.memory_id in unowned])
    deleted = _deleted_since(store, [m for m in missing if m.memory_id not in taken], unowned)
    if deleted or taken:
        write = [m for m in write if m.memory_id not in deleted and m.memory_id not in taken]
    return _Compared(write, kept, len(deleted), len(taken))


def _deleted_since(store: MemoryStore, missing: list[UserMemory], unowned: set[str]) -> set[str]:
    """The ids of ``missing`` (memories the store does not hold for their user) that the
    store deleted at or after the source's version of them: writing them would bring back
    what the user deleted. A source version later than the deletion is written (the fact
    changed again there); one without a time is not.

    A memory's deletion is looked up for its user; for one of ``unowned`` (it names no
    user in the source, and became the user's of the import that first wrote it), for
    every user: whichever user it was imported as and deleted it, it is not written again,
    for that user nor for another (the import of one user, or of all as ``default``)."""
    by_user: dict[str | None, list[UserMemory]] = {}
    for m in missing:
        user_id = None if m.memory_id in unowned else m.user_id or DEFAULT_USER_ID
        by_user.setdefault(user_id, []).append(m)
    deleted: set[str] = set()
    for user_id, theirs in by_user.items():
        ids = [m.memory_id for m in theirs if m.memory_id is not None]
        when = _last_deletions(store, ids, user_id)
        for m in theirs:
            at = when.get(m.memory_id or "")
            if at is not None and (m.updated_at is None or m.updated_at <= at):
                deleted.add(m.memory_id or "")
    return deleted


def _last_deletions(
    store: MemoryStore, ids: Sequence[str], user_id: str | None
) -> Mapping[str, datetime]:
    """When each of ``ids`` was last deleted from ``user_id``'s memories (None: from any
    user's) (those ever deleted): at once where the store tells (``last_deletions``), else
    from each one's history (for every user: of each user who has memories now)."""
    if not ids:
        return {}
    at_once = getattr(store, "last_deletions", None)
    if callable(at_once):
        found: Mapping[str, datetime] = at_once(ids, user_id)
        return found
    if user_id is not None:
        return history_deletions(store, ids, user_id)
    latest: dict[str, datetime] = {}
    for stats in store.get_user_stats():
        for memory_id, at in history_deletions(store, ids, stats.user_id).items():
            latest[memory_id] = max(at, latest.get(memory_id, at))
    return latest


def history_deletions(store: MemoryStore, ids: Sequence[str], user_id: str) -> dict[str, datetime]:
    """When each of ``ids`` was last deleted from ``user_id``'s memories, read from each
    one's history in turn (for a store without ``last_deletions``)."""
    times: dict[str, datetime] = {}
    for memory_id in ids:
        deletes = [
            e.created_at
            for e in store.get_memory_history(memory_id, user_id)
            if e.event == "delete"
        ]
        if deletes:
            times[memory_id] = max(deletes)
    return times


def _same(stored: UserMemory, new: UserMemory) -> bool:
    keys = ("memory", "topics", "input", "agent_id", "team_id", "session_id")
    if any(getattr(stored, k) != getattr(new, k) for k in keys):
        return False
    return (new.created_at is None or stored.created_at == new.created_at) and (
        new.updated_at is None or stored.updated_at == new.updated_at
    )


def _check_unique(plan: ImportPlan) -> None:
    seen: dict[str, str] = {}
    for m in plan.memories:
        assert m.memory_id is not None
        if m.memory_id in seen:
            raise UserError(f"{plan.source}: memory id {m.memory_id!r} appears twice")
        seen[m.memory_id] = m.user_id or ""


def apply_plan(
    plan: ImportPlan,
    memory: Memory,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    user_id: str | None = None,
) -> ImportReport:
    """Write what ``plan`` holds that ``memory``'s store does not have yet; with
    ``user_id``, only that user's part of it (see :func:`for_user`)."""
    _check_unique(plan)
    unowned = {m.memory_id for m in plan.memories if not m.user_id and m.memory_id is not None}
    plan, skipped = for_user(plan, user_id)
    report = ImportReport(
        plan.source,
        memories_skipped=skipped,
        memories_read=len(plan.memories) + skipped,
        sessions_read=len(plan.sessions),
        runs_read=sum(len(s.runs) for s in plan.sessions),
        dry_run=dry_run,
    )
    total = len(plan.memories) + report.runs_read
    done = 0
    store = memory.db
    sessions = store if isinstance(store, SessionStore) else None
    if plan.sessions and sessions is None:
        raise UserError(f"{store!r} keeps no sessions; import into a store such as SqliteDb")
    compared = _to_write(store, plan.memories, unowned)
    changed = compared.write
    report.memories_kept, report.memories_deleted_here = compared.kept, compared.deleted
    report.memories_skipped += compared.taken
    held = _stored_sessions(sessions, plan.sessions) if sessions is not None else {}
    new_runs: list[tuple[ImportedSession, list[RunResult]]] = []
    for s in plan.sessions:
        stored = held.get(s.session_id)
        if stored is not None and stored.user_id != s.user_id:
            raise UserError(
                f"{plan.source}: session {s.session_id!r} belongs to user {stored.user_id!r} "
                f"in the store, not {s.user_id!r}; nothing was written"
            )
        have = {r.run_id for r in stored.runs} if stored is not None else set()
        new_runs.append((s, [r for r in s.runs if r.run_id not in have]))
    for changed_memory in changed:  # a dry run refuses what the import would refuse
        memory.door.check(changed_memory)
    for _, runs in new_runs:  # as the store checks each, before anything is written
        for run in runs:
            check_run(run)
    report.memories_written = len(changed)
    report.runs_written = sum(len(runs) for _, runs in new_runs)
    if dry_run:
        report.summaries_written = sum(
            1 for s in plan.sessions if _summary_to_write(held.get(s.session_id), s)
        )
        return report
    if changed:
        memory.import_user_memories(changed)
    done += len(plan.memories)
    if progress is not None:
        progress(done, total)
    for s, runs in new_runs:
        assert sessions is not None
        for run in runs:
            sessions.append_run(run)
        done += len(s.runs)
        if _summary_to_write(held.get(s.session_id), s):
            assert s.summary is not None
            if sessions.set_session_summary(s.session_id, s.user_id, s.summary):
                report.summaries_written += 1
        if progress is not None:
            progress(done, total)
    return report


def _taken(store: MemoryStore, memories: list[UserMemory]) -> set[str]:
    """The ids of ``memories`` (which name no user in the source) that the store keeps
    under another user than the one they would be written for: the first import that
    took them gave them to its user."""
    if not memories:
        return set()
    wanted = {m.memory_id: m.user_id or DEFAULT_USER_ID for m in memories if m.memory_id}
    owners = _owners(store, list(wanted))
    return {memory_id for memory_id, owner in owners.items() if owner != wanted.get(memory_id)}


def _owners(store: MemoryStore, ids: list[str]) -> Mapping[str, str]:
    """Who owns each of ``ids`` the store holds: at once where the store tells
    (``memory_owners``), else by asking each of its users."""
    at_once = getattr(store, "memory_owners", None)
    if callable(at_once):
        found: Mapping[str, str] = at_once(ids)
        return found
    owners: dict[str, str] = {}
    for stats in store.get_user_stats():
        for memory_id in ids:
            if memory_id not in owners and store.get_memory(memory_id, stats.user_id) is not None:
                owners[memory_id] = stats.user_id
        if len(owners) == len(set(ids)):
            break
    return owners


def _stored_sessions(store: SessionStore, wanted: Sequence[ImportedSession]) -> dict[str, Session]:
    """The store's copies of the ``wanted`` sessions (of any user, whole), those it has,
    by id: at once where the store reads many (``get_sessions``), else each in turn."""
    ids = list(dict.fromkeys(s.session_id for s in wanted))
    if not ids:
        return {}
    at_once = getattr(store, "get_sessions", None)
    if callable(at_once):
        found: dict[str, Session] = at_once(ids)
        return found
    one_by_one = ((session_id, store.get_session(session_id, None)) for session_id in ids)
    return {session_id: stored for session_id, stored in one_by_one if stored is not None}


def _summary_to_write(stored: Session | None, s: ImportedSession) -> bool:
    """Whether ``s`` has a summary the store lacks, for a session the store has
    (``stored``, its owner's: see apply_plan) or makes with its first run (a session
    without runs is not kept: there is nothing to summarize)."""
    new = s.summary
    if new is None:
        return False
    if stored is None:  # its first run makes it
        return bool(s.runs)
    old = stored.summary
    return old is None or (old.summary, old.topics, old.updated_at) != (
        new.summary,
        new.topics,
        new.updated_at,
    )
