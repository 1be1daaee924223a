"""InMemoryDb: the same behaviour as SqliteDb, kept in this process only."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from noted._time import EPOCH, utc_now
from noted.audit import AuditContext, EventType, MemoryEvent, new_event_ids, resolve_audit
from noted.db._client_search import keyword_rank, matches, semantic_rank, sort_memories
from noted.db._rows import stamped_keys
from noted.db.base import (
    MemoryQuery,
    QueryVector,
    ScoredMemory,
    StoreContext,
    WriteBatch,
    check_page,
    write_in_transaction,
)
from noted.db.revocations import InMemoryRevocations
from noted.errors import ConflictError, UserError
from noted.retrieval.vectors import Vector, check_vector, search_target
from noted.schema import UserMemory, UserStats
from noted.sessions import RunResult, Session, SessionSummary

__all__ = ["InMemoryDb"]

# What a history keeps of one side of a change: the text and its topics.
_Side = tuple[str, tuple[str, ...]] | None


def _side(memory: UserMemory | None) -> _Side:
    return None if memory is None else (memory.memory, tuple(memory.topics))


def _copied(results: list[ScoredMemory]) -> list[ScoredMemory]:
    return [ScoredMemory(r.memory.copy(), r.score) for r in results]


class InMemoryDb(InMemoryRevocations, StoreContext):
    """Memories and sessions in dicts; nothing is written to disk. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # a batch holds it around the calls it makes
        self._owner: dict[str, str] = {}  # memory_id -> user_id
        self._users: dict[str, dict[str, UserMemory]] = {}
        self._sessions: dict[str, Session] = {}  # without runs
        self._runs: dict[str, list[dict[str, Any]]] = {}  # session_id -> runs as dicts
        # (user_id, memory_id) -> its events, oldest first, as tuples of immutable values
        self._events: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        # memory_id -> (model, the text it was made from, vector)
        self._embeddings: dict[str, tuple[str, str, Vector]] = {}
        self._revoked: dict[str, float] = {}  # token revocations: subject -> cutoff

    def __repr__(self) -> str:
        return "InMemoryDb()"

    def close(self) -> None:
        """Nothing to release; the memories stay until the object is dropped."""

    def _record(
        self, changes: list[tuple[str, str, EventType, _Side, _Side]], audit: AuditContext
    ) -> None:
        """Append one event per (memory_id, user_id, event, old, new) change; under the lock."""
        now = utc_now()
        stamp = (audit.actor, audit.session_id, audit.run_id, now)
        for event_id, (memory_id, user_id, event, old, new) in zip(
            new_event_ids(len(changes)), changes, strict=True
        ):
            self._events.setdefault((user_id, memory_id), []).append(
                (event_id, event, old, new, *stamp)
            )

    def upsert_memories(
        self, memories: Sequence[UserMemory], *, audit: AuditContext | None = None
    ) -> None:
        context = resolve_audit(audit)
        stored = [(stamped_keys(m), m.copy()) for m in memories]
        with self._lock:
            owners: dict[str, str] = {}
            for (memory_id, user_id), _ in stored:
                owner = owners.get(memory_id) or self._owner.get(memory_id)
                if owner is not None and owner != user_id:
                    raise ConflictError(
                        f"memory_id {memory_id!r} belongs to another user; nothing was written"
                    )
                owners[memory_id] = user_id
            for (memory_id, _), m in stored:
                self._forget_stale(memory_id, m.memory)
            changes: list[tuple[str, str, EventType, _Side, _Side]] = []
            for (memory_id, user_id), m in stored:
                mine = self._users.setdefault(user_id, {})
                old = mine.get(memory_id)
                event: EventType = "add" if old is None else "update"
                changes.append((memory_id, user_id, event, _side(old), _side(m)))
                self._owner[memory_id] = user_id
                mine[memory_id] = m
            self._record(changes, context)

    def write_batch(
        self, batch: WriteBatch, *, audit: AuditContext | None = None
    ) -> list[UserMemory]:
        with self._lock:
            for m in batch.adds:  # the one way a batch can fail: checked before any change
                memory_id, _ = stamped_keys(m)
                owner = self._owner.get(memory_id)
                if owner is not None and owner != batch.user_id:
                    raise ConflictError(
                        f"memory_id {memory_id!r} belongs to another user; nothing was written"
                    )
            return write_in_transaction(self, batch, audit)

    def update_memory(self, memory: UserMemory, *, audit: AuditContext | None = None) -> bool:
        context = resolve_audit(audit)
        memory_id, user_id = stamped_keys(memory)
        with self._lock:
            current = self._users.get(user_id, {}).get(memory_id)
            if current is None:
                return False
            new = memory.copy()
            new.created_at = current.created_at
            self._forget_stale(memory_id, new.memory)
            for name in ("input", "agent_id", "team_id", "session_id"):
                if getattr(new, name) is None:
                    setattr(new, name, getattr(current, name))
            self._users[user_id][memory_id] = new
            self._record([(memory_id, user_id, "update", _side(current), _side(new))], context)
            return True

    def _forget_stale(self, memory_id: str, text: str) -> None:
        """Drop the embedding of a memory whose text is changing; under the lock."""
        held = self._embeddings.get(memory_id)
        if held is not None and held[1] != text:
            del self._embeddings[memory_id]

    def get_memory(self, memory_id: str, user_id: str) -> UserMemory | None:
        with self._lock:
            found = self._users.get(user_id, {}).get(memory_id)
            return None if found is None else found.copy()

    def _matching(self, query: MemoryQuery) -> list[UserMemory]:
        if query.user_id is None:
            pool = [m for user in self._users.values() for m in user.values()]
        else:
            pool = list(self._users.get(query.user_id, {}).values())
        return [m for m in pool if matches(query, m)]

    def list_memories(self, query: MemoryQuery) -> list[UserMemory]:
        with self._lock:
            found = self._matching(query)
        return [m.copy() for m in sort_memories(found, query)]

    def keyword_search(self, query: MemoryQuery, text: str) -> list[ScoredMemory]:
        if query.user_id is None:
            raise UserError("keyword search is for one user: give a user_id")
        with self._lock:
            found = self._matching(query)
        # stored memories are replaced, never changed in place: rank them as they are and
        # copy only the page
        return _copied(keyword_rank(found, query, text))

    def semantic_search(
        self, query: MemoryQuery, vector: QueryVector, model: str
    ) -> list[ScoredMemory]:
        _, target = search_target(query.user_id, vector)
        with self._lock:
            found: list[tuple[UserMemory, Vector]] = []
            for m in self._matching(query):
                held = self._embeddings.get(m.memory_id or "")
                if held is not None and held[0] == model:
                    found.append((m, held[2]))
        return _copied(semantic_rank(found, query, target))

    def _to_embed(self, user_id: str | None, model: str) -> list[UserMemory]:
        users = self._users.values() if user_id is None else [self._users.get(user_id, {})]
        return [
            m
            for user in users
            for m in user.values()
            if self._embeddings.get(m.memory_id or "", ("",))[0] != model
        ]

    def memories_to_embed(
        self, user_id: str | None, model: str, limit: int | None = None
    ) -> list[UserMemory]:
        check_page(limit, 0)
        with self._lock:
            pending = [m.copy() for m in self._to_embed(user_id, model)]
        return pending[:limit]

    def count_memories_to_embed(self, user_id: str | None, model: str) -> int:
        with self._lock:
            return len(self._to_embed(user_id, model))

    def set_embeddings(self, model: str, items: Sequence[tuple[UserMemory, QueryVector]]) -> int:
        checked = [(m, check_vector(v).copy()) for m, v in items]
        stored = 0
        with self._lock:
            for m, vector in checked:
                current = self._users.get(m.user_id or "", {}).get(m.memory_id or "")
                if current is not None and current.memory == m.memory:
                    self._embeddings[current.memory_id or ""] = (model, m.memory, vector)
                    stored += 1
        return stored

    def count_memories(self, query: MemoryQuery) -> int:
        with self._lock:
            return len(self._matching(query))

    def _deleted(self, user_id: str, removed: Iterable[UserMemory], audit: AuditContext) -> int:
        """Forget the owners of removed memories and record their deletion; under the lock."""
        changes: list[tuple[str, str, EventType, _Side, _Side]] = []
        for m in sorted(removed, key=lambda m: (m.created_at or EPOCH, m.memory_id or "")):
            assert m.memory_id is not None
            del self._owner[m.memory_id]
            self._embeddings.pop(m.memory_id, None)
            changes.append((m.memory_id, user_id, "delete", _side(m), None))
        self._record(changes, audit)
        return len(changes)

    def delete_memories(
        self, memory_ids: Sequence[str], user_id: str, *, audit: AuditContext | None = None
    ) -> int:
        context = resolve_audit(audit)
        with self._lock:
            mine = self._users.get(user_id, {})
            removed = [mine.pop(i) for i in dict.fromkeys(memory_ids) if i in mine]
            return self._deleted(user_id, removed, context)

    def clear_memories(self, user_id: str, *, audit: AuditContext | None = None) -> int:
        context = resolve_audit(audit)
        with self._lock:
            return self._deleted(user_id, self._users.pop(user_id, {}).values(), context)

    def clear_all_memories(self, *, audit: AuditContext | None = None) -> int:
        context = resolve_audit(audit)
        with self._lock:
            users = list(self._users.items())
            self._users.clear()
            return sum(self._deleted(user_id, mine.values(), context) for user_id, mine in users)

    def get_memory_history(self, memory_id: str, user_id: str) -> list[MemoryEvent]:
        with self._lock:
            events = list(self._events.get((user_id, memory_id), ()))
        return [
            MemoryEvent(
                event_id,
                memory_id,
                user_id,
                event,
                None if old is None else old[0],
                None if new is None else new[0],
                None if old is None else list(old[1]),
                None if new is None else list(new[1]),
                actor,
                session_id,
                run_id,
                created_at,
            )
            for event_id, event, old, new, actor, session_id, run_id, created_at in events
        ]

    def get_topics(self, user_id: str | None) -> list[str]:
        with self._lock:
            users = self._users.values() if user_id is None else [self._users.get(user_id, {})]
            return sorted({t for user in users for m in user.values() for t in m.topics})

    def get_user_stats(self, limit: int | None = None, offset: int = 0) -> list[UserStats]:
        with self._lock:
            stats = [
                UserStats(
                    user_id,
                    len(mine),
                    max(m.updated_at for m in mine.values() if m.updated_at is not None),
                )
                for user_id, mine in self._users.items()
                if mine
            ]
        stats.sort(key=lambda s: (-s.last_updated.timestamp(), s.user_id))
        end = None if limit is None else offset + limit
        return stats[offset:end]

    # -- SessionStore (runs are kept as dicts, so callers never share objects with it) ----

    def append_run(self, run: RunResult) -> None:
        data = run.to_dict()
        with self._lock:
            session = self._sessions.get(run.session_id)
            now = utc_now()
            if session is None:
                session = Session(run.session_id, run.user_id, run.agent_id, now, now)
                self._sessions[run.session_id] = session
                self._runs[run.session_id] = []
            elif session.user_id != run.user_id:
                raise ConflictError(f"session {run.session_id!r} belongs to another user")
            self._runs[run.session_id].append(data)
            session.updated_at = now
            session.run_count += 1

    def get_runs(
        self,
        session_id: str,
        user_id: str,
        *,
        last_n: int | None = None,
        completed_only: bool = False,
    ) -> list[RunResult]:
        check_page(last_n, 0)
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return []
            if session.user_id != user_id:
                raise ConflictError(f"session {session_id!r} belongs to another user")
            runs = self._runs[session_id]
            if completed_only:
                runs = [r for r in runs if r["status"] == "completed"]
            if last_n is not None:
                runs = runs[len(runs) - last_n :] if last_n else []
            return [RunResult.from_dict(r) for r in runs]

    def _copy_session(self, session: Session) -> Session:
        return Session(
            session.session_id,
            session.user_id,
            session.agent_id,
            session.created_at,
            session.updated_at,
            None
            if session.summary is None
            else SessionSummary.from_dict(session.summary.to_dict()),
            session.run_count,
        )

    def get_session(self, session_id: str, user_id: str | None) -> Session | None:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None or (user_id is not None and session.user_id != user_id):
                return None
            found = self._copy_session(session)
            found.runs = [RunResult.from_dict(r) for r in self._runs[session_id]]
            return found

    def list_sessions(
        self, user_id: str | None, *, limit: int | None = None, offset: int = 0
    ) -> list[Session]:
        check_page(limit, offset)
        with self._lock:
            found = [
                self._copy_session(s)
                for s in self._sessions.values()
                if user_id is None or s.user_id == user_id
            ]
        found.sort(key=lambda s: s.session_id)
        found.sort(key=lambda s: s.updated_at, reverse=True)
        end = None if limit is None else offset + limit
        return found[offset:end]

    def delete_session(self, session_id: str, user_id: str | None) -> bool:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None or (user_id is not None and session.user_id != user_id):
                return False
            del self._sessions[session_id]
            del self._runs[session_id]
            return True

    def get_session_summary(self, session_id: str, user_id: str) -> SessionSummary | None:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None or session.user_id != user_id or session.summary is None:
                return None
            return SessionSummary.from_dict(session.summary.to_dict())

    def set_session_summary(self, session_id: str, user_id: str, summary: SessionSummary) -> bool:
        stored = SessionSummary.from_dict(summary.to_dict())
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return False
            if session.user_id != user_id:
                raise ConflictError(f"session {session_id!r} belongs to another user")
            session.summary = stored
            return True
