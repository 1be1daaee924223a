"""InMemoryDb: the same behaviour as SqliteDb, kept in this process only."""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from itertools import islice
from typing import Any, Final

import numpy as np

from noted._time import EPOCH, from_micros, to_micros, utc_now
from noted.audit import AuditContext, MemoryEvent, resolve_audit
from noted.db import core
from noted.db._client_search import (
    Shape,
    SnapshotCache,
    UserSnapshot,
    keyword_rank,
    matches,
    semantic_rank,
    sort_memories,
)
from noted.db._rows import stamped_keys
from noted.db.base import (
    SORT_FIELDS,
    MemoryQuery,
    QueryVector,
    ScoredMemory,
    SortField,
    StoreContext,
    WriteBatch,
)
from noted.db.revocations import InMemoryRevocations
from noted.db.sessions_core import (
    SessionRules,
    owns_session,
    run_id_taken,
    run_window,
    sees_session,
    summary_fits,
    takes_run,
)
from noted.retrieval.vectors import (
    UserVectors,
    Vector,
    check_centering,
    check_vector,
    mean_direction,
    search_target,
)
from noted.schema import UserMemory, UserStats
from noted.sessions import RunResult, Session, SessionSummary

__all__ = ["InMemoryDb"]

# what the kept snapshots may take in all: a user's is made by their first search after a
# change of their memories or vectors, its keyword index and each model's vectors as a
# search needs them, and it ranks every search until the next change. A user with more
# memories than _KEPT_UP_TO (some 75 MB of keyword index) is ranked afresh on every search
# instead, which costs less than building a snapshot that would not be kept.
_CACHE_BYTES: Final = 256 * 2**20
_KEPT_UP_TO: Final = 100_000
_WRITTEN_KEPT: Final = 4096  # a user's changes noted by memory id (then noted afresh)
_PENDING_KEPT: Final = 4096  # users' counts of memories to embed kept (then counted afresh)
# a page of a user's memories is read from their kept order when it follows a memory
# (MemoryQuery.after) or is at most 1/_FROM_ORDER of them (else sorting them is as quick)
_FROM_ORDER: Final = 32
_MOVED_ONE_BY_ONE: Final = 64  # a write of more memories re-sorts their user's order once


def _from_cursor(
    order: list[tuple[datetime, str]], query: MemoryQuery
) -> Iterable[tuple[datetime, str]]:
    """A user's kept order by the query's field in its direction, from just past its
    ``after`` (from the start without one)."""
    after = query.after
    if query.sort_order == "desc":
        end = len(order) if after is None else bisect_left(order, after)
        return (order[k] for k in range(end - 1, -1, -1))
    start = 0 if after is None else bisect_right(order, after)
    return islice(order, start, None)


def _entry(memory: UserMemory) -> tuple[str, str, str, tuple[str, ...]]:
    """What the rules take of a memory: id, user, text and topics (immutable)."""
    memory_id, user_id = stamped_keys(memory)
    return memory_id, user_id, memory.memory, tuple(memory.topics)


def _place_by(field: SortField, memory: UserMemory) -> tuple[datetime, str]:
    """Where a stored memory (stamped: both are set) stands in its user's order by
    ``field``, then by id."""
    return getattr(memory, field) or EPOCH, memory.memory_id or ""


def _fields(memory: UserMemory) -> dict[str, Any]:
    """The fields of a memory a replace may keep (see core.replaced_fields)."""
    return {name: getattr(memory, name) for name in ("created_at", *core.KEPT_UNLESS_GIVEN)}


def _copied(results: list[ScoredMemory]) -> list[ScoredMemory]:
    return [ScoredMemory(r.memory.copy(), r.score) for r in results]


class InMemoryDb(InMemoryRevocations, core.DeleteRules, core.PageRules, SessionRules, StoreContext):
    """Memories and sessions in dicts; nothing is written to disk. Thread-safe."""

    capabilities = core.Capabilities(transactions=False)  # a write is atomic under the lock

    def __init__(self) -> None:
        self._lock = threading.RLock()  # a batch holds it around the calls it makes
        self._owner: dict[str, str] = {}  # memory_id -> user_id
        self._users: dict[str, dict[str, UserMemory]] = {}
        self._sessions: dict[str, Session] = {}  # without runs
        self._runs: dict[str, list[dict[str, Any]]] = {}  # session_id -> runs as dicts
        self._run_ids: dict[str, str] = {}  # run_id -> session_id, of every stored run
        # (user_id, memory_id) -> its event rows (EVENT_COLUMNS order, topics as tuples)
        self._events: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        # memory_id -> (model, vector)
        self._embeddings: dict[str, tuple[str, Vector]] = {}
        self._revoked: dict[str, float] = {}  # token revocations: subject -> cutoff
        # user_id -> how many changes of their memories (see _record) and vectors (see
        # set_embeddings) there were: a kept snapshot is the user's while the count it was
        # made at is theirs
        self._changes: dict[str, int] = {}
        # (user_id, model) -> (the user's count of changes, their memories without a
        # vector by the model then)
        self._pending: dict[tuple[str, str], tuple[int, int]] = {}
        self._snapshots = SnapshotCache(_CACHE_BYTES)
        self._made: dict[str, int] = {}  # user_id -> the count their last snapshot was made at
        # user_id -> (the count before its first entry, the memory id of each change since):
        # a kept snapshot behind by a few changes takes in only the memories they name
        self._written: dict[str, tuple[int, list[str]]] = {}
        # memory_id -> when it entered its user's dict: the dict's order, which a
        # snapshot's memories follow (a replace keeps its place, a delete gives it up)
        self._entered: dict[str, int] = {}
        self._entries = 0
        # sort field -> user_id -> (that time, memory_id) of each of their memories, in
        # that order: a page of the newest (what an agent's selection asks each turn), or
        # the page after a memory (an export's), without a sort
        self._orders: dict[SortField, dict[str, list[tuple[datetime, str]]]] = {
            field: {} for field in SORT_FIELDS
        }

    def __repr__(self) -> str:
        return "InMemoryDb()"

    def close(self) -> None:
        """Nothing to release; the memories stay until the object is dropped."""

    def _record(self, changes: Sequence[core.Change[tuple[str, ...]]], audit: AuditContext) -> None:
        """Append each change's event row to its memory's history, and count it as a
        change of its user's memories; under the lock. Every write of a memory (add,
        replace, delete) records its change here."""
        for row in core.history_rows(changes, audit, utc_now()):
            self._events.setdefault((row[2], row[1]), []).append(row)
            self._changed(row[2], row[1])

    def _changed(self, user_id: str, memory_id: str) -> None:
        """Count a change of the user's memory ``memory_id`` or its vector (their kept
        snapshot is stale from now), and note which memory it was; under the lock."""
        count = self._changes.get(user_id, 0)
        self._changes[user_id] = count + 1
        base, ids = self._written.get(user_id) or (count, [])
        if base + len(ids) != count or len(ids) >= _WRITTEN_KEPT:
            base, ids = count, []
        ids.append(memory_id)
        self._written[user_id] = (base, ids)

    def _reorder(
        self, user_id: str, leaving: Sequence[UserMemory], entering: Sequence[UserMemory]
    ) -> None:
        """Keep the user's orders (by each sort field) as the memories ``leaving`` (as
        they were) go and those ``entering`` (as stored now) come: a few moved by
        bisection, many (a bulk import or delete) by one pass and one sort. Under the
        lock."""
        for field, orders in self._orders.items():
            order = orders.setdefault(user_id, [])
            gone = [_place_by(field, old) for old in leaving]
            come = [_place_by(field, new) for new in entering]
            if gone == come:  # replaced in place (an edit leaves created_at as it was)
                continue
            if len(gone) + len(come) <= _MOVED_ONE_BY_ONE:
                for key in gone:
                    del order[bisect_left(order, key)]
                for key in come:
                    insort(order, key)
                continue
            if gone:
                leaving_keys = set(gone)
                order[:] = [key for key in order if key not in leaving_keys]
            order.extend(come)
            order.sort()

    def _written_since(self, user_id: str, count: int) -> set[str] | None:
        """The memories changed since the user's ``count``-th change, or None when that
        is no longer noted; under the lock."""
        base, ids = self._written.get(user_id) or (0, [])
        if count < base or base + len(ids) != self._changes.get(user_id, 0):
            return None
        return set(ids[count - base :])

    def _held(
        self, memories: Sequence[UserMemory], model: str
    ) -> Iterator[tuple[int, UserMemory, Vector]]:
        """The position, memory and vector of each of ``memories`` embedded by ``model``;
        under the lock."""
        for position, m in enumerate(memories):
            held = self._embeddings.get(m.memory_id or "")
            if held is not None and held[0] == model:
                yield position, m, held[1]

    def _stored(self, memory_ids: Iterable[str]) -> dict[str, core.StoredSide[tuple[str, ...]]]:
        """What the rules need of the given ids that are stored (any user); under the lock."""
        stored: dict[str, core.StoredSide[tuple[str, ...]]] = {}
        for memory_id in memory_ids:
            owner = self._owner.get(memory_id)
            if owner is not None:
                m = self._users[owner][memory_id]
                stored[memory_id] = core.StoredSide(owner, m.memory, tuple(m.topics))
        return stored

    def memory_owners(self, memory_ids: Sequence[str]) -> dict[str, str]:
        with self._lock:
            return {i: self._owner[i] for i in memory_ids if i in self._owner}

    def memory_times(self, memory_ids: Sequence[str], user_id: str) -> dict[str, int]:
        with self._lock:
            mine = self._users.get(user_id, {})
            found = (mine.get(i) for i in memory_ids)
            return {
                m.memory_id: to_micros(m.updated_at)
                for m in found
                if m is not None and m.memory_id is not None and m.updated_at is not None
            }

    def upsert_memories(
        self, memories: Sequence[UserMemory], *, audit: AuditContext | None = None
    ) -> None:
        context = resolve_audit(audit)
        entries = [_entry(m) for m in memories]
        copies = [m.copy() for m in memories]
        with self._lock:
            changes = core.upsert_changes(entries, self._stored(e[0] for e in entries))
            # user_id -> memory_id -> the memory as it was before this call (None: new)
            before: dict[str, dict[str, UserMemory | None]] = {}
            for change, m in zip(changes, copies, strict=True):
                memory_id, user_id = change.memory_id, change.user_id
                if core.clears_embedding(change):
                    self._embeddings.pop(memory_id, None)
                self._owner[memory_id] = user_id
                mine = self._users.setdefault(user_id, {})
                if memory_id not in mine:
                    self._entries += 1
                    self._entered[memory_id] = self._entries
                before.setdefault(user_id, {}).setdefault(memory_id, mine.get(memory_id))
                mine[memory_id] = m
            for user_id, written in before.items():
                leaving = [old for old in written.values() if old is not None]
                self._reorder(user_id, leaving, [self._users[user_id][i] for i in written])
            self._record(changes, context)

    def write_batch(
        self, batch: WriteBatch, *, audit: AuditContext | None = None
    ) -> list[UserMemory]:
        with self._lock:
            return core.write_batch(self, batch, audit)

    def update_memory(
        self, memory: UserMemory, *, audit: AuditContext | None = None
    ) -> UserMemory | None:
        context = resolve_audit(audit)
        memory_id, user_id = stamped_keys(memory)
        with self._lock:
            current = self._users.get(user_id, {}).get(memory_id)
            if current is None:
                return None
            new = memory.copy()
            kept = core.replaced_fields(_fields(new), _fields(current))
            for name, value in kept.items():
                setattr(new, name, value)
            old, now = _entry(current), _entry(new)
            change = core.replacement(memory_id, user_id, old[2:], now[2], now[3])
            if core.clears_embedding(change):
                self._embeddings.pop(memory_id, None)
            self._reorder(user_id, [current], [new])
            self._users[user_id][memory_id] = new
            self._record([change], context)
            return new.copy()

    def get_memory(self, memory_id: str, user_id: str) -> UserMemory | None:
        with self._lock:
            found = self._users.get(user_id, {}).get(memory_id)
            return None if found is None else found.copy()

    def get_memories(self, memory_ids: Sequence[str], user_id: str) -> dict[str, UserMemory]:
        """The memories among ``memory_ids`` that ``user_id`` has, by id: what
        :meth:`get_memory` answers for each, read many at a time."""
        with self._lock:
            mine = self._users.get(user_id, {})
            return {i: mine[i].copy() for i in memory_ids if i in mine}

    def _matching(self, query: MemoryQuery) -> list[UserMemory]:
        if query.user_id is None:
            pool = [m for user in self._users.values() for m in user.values()]
        else:
            pool = list(self._users.get(query.user_id, {}).values())
        return [m for m in pool if matches(query, m)] if query.filtered else pool

    def list_memories(self, query: MemoryQuery) -> list[UserMemory]:
        with self._lock:
            page = self._page_from_order(query)
            if page is None:
                page = sort_memories(self._matching(query), query)
        return [m.copy() for m in page]

    def _page_from_order(self, query: MemoryQuery) -> list[UserMemory] | None:
        """A page of one user's memories from their kept order (the filters checked on
        the way): a small one, or one that follows a memory; None for other queries.
        Under the lock."""
        if query.user_id is None or query.limit is None:
            return None
        mine = self._users.get(query.user_id, {})
        count = query.offset + query.limit
        if not count or (query.after is None and count * _FROM_ORDER > len(mine)):
            return None
        order = self._orders[query.sort_by].get(query.user_id, [])
        picked: list[UserMemory] = []
        for _, memory_id in _from_cursor(order, query):
            memory = mine[memory_id]
            if not query.filtered or matches(query, memory):
                picked.append(memory)
                if len(picked) == count:
                    break
        return picked[query.offset :]

    def _kept(self, user_id: str) -> UserSnapshot | None:
        """The user's memories as searches rank them (see UserSnapshot), kept until they
        change, then brought up to date with the memories changed since (see
        ``_written``); None when the user is ranked afresh: too large to keep, or made at
        this count of changes and since dropped from the cache (made once per change at
        most). Under the lock."""
        mine = self._users.get(user_id, {})
        changes = self._changes.get(user_id, 0)
        snapshot = self._snapshots.get(user_id)
        if snapshot is not None and snapshot.generation == changes:
            return snapshot
        written = None if snapshot is None else self._written_since(user_id, snapshot.generation)
        if snapshot is not None and written is not None and len(mine) <= _KEPT_UP_TO:
            rows = [mine[i] for i in written if i in mine]
            vectors = [self._embeddings.get(m.memory_id or "") for m in rows]
            snapshot = snapshot.patched(changes, written, rows, vectors, self._place)
            self._snapshots.put(user_id, snapshot)
            return snapshot
        if len(mine) > _KEPT_UP_TO or self._made.get(user_id) == changes:
            return None
        self._made[user_id] = changes
        snapshot = UserSnapshot(changes, list(mine.values()))
        self._snapshots.put(user_id, snapshot)
        return snapshot

    def _place(self, memory: UserMemory) -> int:
        """Where a memory stands in its user's dict (see ``_entered``); under the lock."""
        return self._entered[memory.memory_id or ""]

    def _with_vectors(self, user_id: str, snapshot: UserSnapshot, shape: Shape) -> UserSnapshot:
        """``snapshot`` with the user's vectors of ``shape`` (model, size), kept with it.
        Under the lock."""
        if shape in (snapshot.vectors or {}):
            return snapshot
        model, size = shape
        keys: list[int] = []
        rows: list[Vector] = []
        for position, _, vector in self._held(snapshot.memories, model):
            if vector.size == size:
                keys.append(position)
                rows.append(vector)
        matrix = np.stack(rows) if rows else np.empty((0, size), dtype=np.float32)
        found = UserVectors(snapshot.generation, np.array(keys, dtype=np.int64), matrix)
        snapshot = snapshot.with_vectors(shape, found)
        self._snapshots.put(user_id, snapshot)
        return snapshot

    def keyword_search(
        self, query: MemoryQuery, text: str, *, text_only: bool = False
    ) -> list[ScoredMemory]:
        """BM25 from the user's kept snapshot (see UserSnapshot.keyword); stored memories
        are replaced, never changed in place, so it holds them as they are and only the
        page is copied."""
        user_id = core.keyword_user(query)
        with self._lock:
            snapshot = self._kept(user_id)
            found = self._matching(query) if snapshot is None else []
        if snapshot is None:
            return _copied(keyword_rank(found, query, text, text_only))
        return snapshot.keyword(query, text, text_only)

    def semantic_search(
        self, query: MemoryQuery, vector: QueryVector, model: str, centering: float = 0.0
    ) -> list[ScoredMemory]:
        """Cosine over the user's vectors by ``model`` of the target's size, kept as one
        matrix with the snapshot (see UserSnapshot.semantic)."""
        user_id, target = search_target(query.user_id, vector)
        centering = check_centering(centering)
        mean = None
        with self._lock:
            snapshot = self._kept(user_id)
            if snapshot is not None:
                snapshot = self._with_vectors(user_id, snapshot, (model, target.size))
            pool = self._matching(query) if snapshot is None else []
            found = [(m, vector) for _, m, vector in self._held(pool, model)]
            if snapshot is None and centering:  # the mean is over all of the user's vectors
                if query.filtered:
                    mine = self._matching(MemoryQuery(user_id))
                    found_all = [(m, v) for _, m, v in self._held(mine, model)]
                else:
                    found_all = found
                every = [v for _, v in found_all if v.shape == target.shape]
                mean = mean_direction(np.stack(every)) if every else None
        if snapshot is None:
            return _copied(semantic_rank(found, query, target, mean, centering))
        return snapshot.semantic(query, target, model, centering)

    def _to_embed(self, user_id: str | None, model: str) -> list[UserMemory]:
        users = self._users.values() if user_id is None else [self._users.get(user_id, {})]
        return [
            m
            for user in users
            for m in user.values()
            if self._embeddings.get(m.memory_id or "", ("",))[0] != model
        ]

    def _unembedded(self, user_id: str | None, model: str, limit: int | None) -> list[UserMemory]:
        oldest = MemoryQuery(user_id, sort_by="created_at", sort_order="asc", limit=limit)
        with self._lock:
            pending = sort_memories(self._to_embed(user_id, model), oldest)
            return [m.copy() for m in pending]

    def count_memories_to_embed(self, user_id: str | None, model: str) -> int:
        """For one user, kept with the count of the user's changes it was taken at (every
        search asks first: a pass over all of the user's memories otherwise)."""
        with self._lock:
            if user_id is None:
                return len(self._to_embed(None, model))
            changes = self._changes.get(user_id, 0)
            kept = self._pending.get((user_id, model))
            if kept is not None and kept[0] == changes:
                return kept[1]
            count = len(self._to_embed(user_id, model))
            if len(self._pending) >= _PENDING_KEPT:
                self._pending.clear()
            self._pending[(user_id, model)] = (changes, count)
            return count

    def set_embeddings(self, model: str, items: Sequence[tuple[UserMemory, QueryVector]]) -> int:
        checked = [(m, check_vector(v).copy()) for m, v in items]
        stored = 0
        with self._lock:
            for m, vector in checked:
                current = self._users.get(m.user_id or "", {}).get(m.memory_id or "")
                if current is not None and current.memory == m.memory:
                    self._embeddings[current.memory_id or ""] = (model, vector)
                    self._changed(current.user_id or "", current.memory_id or "")
                    stored += 1
        return stored

    def count_memories(self, query: MemoryQuery) -> int:
        with self._lock:
            return len(self._matching(query))

    def _deleted(self, user_id: str, removed: Iterable[UserMemory], audit: AuditContext) -> int:
        """Forget the owners of removed memories and record their deletion; under the lock."""
        gone = [
            _entry(m)
            for m in sorted(removed, key=lambda m: (m.created_at or EPOCH, m.memory_id or ""))
        ]
        for memory_id, *_ in gone:
            del self._owner[memory_id]
            self._embeddings.pop(memory_id, None)
            self._entered.pop(memory_id, None)
        self._record(core.deletions(gone), audit)
        return len(gone)

    def _delete_ids(self, ids: list[str], user_id: str, context: AuditContext) -> int:
        with self._lock:
            mine = self._users.get(user_id, {})
            removed = [mine.pop(i) for i in ids if i in mine]
            self._reorder(user_id, removed, [])
            return self._deleted(user_id, removed, context)

    def _delete_all(self, user_id: str | None, context: AuditContext) -> int:
        with self._lock:
            if user_id is not None:
                for orders in self._orders.values():
                    orders.pop(user_id, None)
                return self._deleted(user_id, self._users.pop(user_id, {}).values(), context)
            users = list(self._users.items())
            self._users.clear()
            for orders in self._orders.values():
                orders.clear()
            return sum(self._deleted(owner, mine.values(), context) for owner, mine in users)

    def last_deletions(self, memory_ids: Sequence[str], user_id: str | None) -> dict[str, datetime]:
        """When each of ``user_id``'s memories among ``memory_ids`` was last deleted (None:
        each memory of any user's with that id): the time of its latest ``"delete"``
        event, for those that have one."""
        wanted = set(memory_ids)
        found: dict[str, datetime] = {}
        with self._lock:
            if user_id is None:
                keys = [key for key in self._events if key[1] in wanted]
            else:
                keys = [(user_id, memory_id) for memory_id in wanted]
            for key in keys:
                deletes = [row[-1] for row in self._events.get(key, ()) if row[3] == "delete"]
                if deletes:
                    found[key[1]] = max(*deletes, found.get(key[1], deletes[0]))
        return found

    def get_memory_history(self, memory_id: str, user_id: str) -> list[MemoryEvent]:
        with self._lock:
            rows = list(self._events.get((user_id, memory_id), ()))
        return [
            MemoryEvent(
                event_id,
                memory_id,
                user_id,
                kind,
                old,
                new,
                None if old_t is None else list(old_t),
                None if new_t is None else list(new_t),
                actor,
                session,
                run,
                at,
            )
            for event_id, _, _, kind, old, new, old_t, new_t, actor, session, run, at in rows
        ]

    def get_topics(self, user_id: str | None) -> list[str]:
        with self._lock:
            users = self._users.values() if user_id is None else [self._users.get(user_id, {})]
            return sorted({t for user in users for m in user.values() for t in m.topics})

    def _user_stats(self, limit: int | None, offset: int) -> list[UserStats]:
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

    # -- sessions (SessionRules does the rest; runs are kept as dicts, so callers never
    # share objects with the store) ----

    def _store_run(self, run: RunResult, now_us: int, existing: bool | str) -> bool:
        data = run.to_dict()
        with self._lock:
            session = self._sessions.get(run.session_id)
            owner = None if session is None else session.user_id
            holds = self._run_ids.get
            if not takes_run(owner, run, existing, lambda id_: holds(id_) == run.session_id):
                return False
            if run.run_id in self._run_ids:
                raise run_id_taken(run.run_id)
            now = from_micros(now_us)
            if session is None:
                session = Session(run.session_id, run.user_id, run.agent_id, now, now)
                self._sessions[run.session_id] = session
                self._runs[run.session_id] = []
            self._runs[run.session_id].append(data)
            self._run_ids[run.run_id] = run.session_id
            session.updated_at = now
            session.run_count += 1
            return True

    def _read_runs(
        self, session_id: str, user_id: str, last_n: int | None, completed_only: bool
    ) -> list[RunResult]:
        with self._lock:
            if not owns_session(self._owner_of(session_id), user_id, session_id):
                return []
            runs = self._runs[session_id]
            if completed_only:
                runs = [r for r in runs if r["status"] == "completed"]
            if last_n is not None:
                runs = runs[max(len(runs) - last_n, 0) :] if last_n else []
            return [RunResult.from_dict(r) for r in runs]

    def _owner_of(self, session_id: str) -> str | None:
        """Who owns the session (None: there is no such session); under the lock."""
        session = self._sessions.get(session_id)
        return None if session is None else session.user_id

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

    def _read_session(self, session_id: str, user_id: str | None) -> Session | None:
        return self._read_session_window(session_id, user_id, None, 0)

    def _read_session_window(
        self, session_id: str, user_id: str | None, last_n: int | None, offset: int
    ) -> Session | None:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None or not sees_session(session.user_id, user_id):
                return None
            found = self._copy_session(session)
            window = run_window(self._runs[session_id], last_n, offset)
            found.runs = [RunResult.from_dict(r) for r in window]
            return found

    def _read_sessions_by_id(self, session_ids: list[str]) -> dict[str, Session]:
        found = ((i, self._read_session(i, None)) for i in session_ids)
        return {session_id: s for session_id, s in found if s is not None}

    def _read_sessions(self, user_id: str | None, limit: int | None, offset: int) -> list[Session]:
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

    def _remove_session(self, session_id: str, user_id: str | None) -> bool:
        with self._lock:
            if not sees_session(self._owner_of(session_id), user_id):
                return False
            del self._sessions[session_id]
            for r in self._runs.pop(session_id):
                del self._run_ids[r["run_id"]]
            return True

    def _read_summary(self, session_id: str, user_id: str) -> SessionSummary | None:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None or session.user_id != user_id or session.summary is None:
                return None
            return SessionSummary.from_dict(session.summary.to_dict())

    def _write_summary(self, session_id: str, user_id: str, summary: SessionSummary) -> bool:
        stored = SessionSummary.from_dict(summary.to_dict())
        with self._lock:
            if not owns_session(self._owner_of(session_id), user_id, session_id):
                return False
            runs = self._runs[session_id]
            if not summary_fits(summary, lambda run: any(r["run_id"] == run for r in runs)):
                return False
            self._sessions[session_id].summary = stored
            return True
