"""RedisDb's reads (listings, counts, search over the per-user cache, the memories still
to embed, history, topics, stats), the plumbing its writes share, and the conversions
between script replies and memories. The key layout is in :mod:`.store`'s notes."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from noted._time import from_micros, to_micros
from noted.audit import MemoryEvent
from noted.db._client_search import Shape, SnapshotCache, UserSnapshot, matches, sort_memories
from noted.db._rows import COLUMNS, decode_topics, foreign_session, row_to_event, topics_damage
from noted.db.base import MemoryQuery, QueryVector, ScoredMemory
from noted.db.core import PageRules, PendingCounts, keyword_user
from noted.db.redisdb.changes import mark_of, read_changes, script_memories, upd_order
from noted.db.sessions_core import run_id_taken
from noted.errors import StoreError
from noted.retrieval.vectors import UserVectors, check_centering, from_blobs, search_target
from noted.schema import UserMemory, UserStats
from noted.sessions import RunResult

if TYPE_CHECKING:
    import redis
    from redis.commands.core import Script

__all__ = [
    "PAST_THE_END",
    "Arg",
    "RedisReads",
    "appended_to",
    "continued",
    "decoded",
    "last_rank",
    "opt",
    "owned_by",
    "scope",
    "to_json",
]

Arg = str | bytes | int | float  # what a script argument may be

_MEMORY_FIELDS: Final = COLUMNS[1:]  # a memory hash's fields
_LISTED_AT_MOST: Final = 256  # a count of memories to embed keeps their ids up to this many


def opt(value: str | None) -> str:
    """An optional text as a script argument: "" for None, else "+" and the text."""
    return "" if value is None else "+" + value


def continued(existing: bool | str) -> str:
    """An append script's ARGV[9]: the session a run continues (``existing``, as
    sessions_core.takes_run reads it): "" none, "*" whichever there is, or "+" and the id
    of a run it must hold."""
    if isinstance(existing, str):
        return opt(existing)
    return "*" if existing else ""


def decoded(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def owned_by(owner: bytes | str | None, user_id: str) -> bool:
    return owner is not None and decoded(owner) == user_id


def to_json(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _event(memory_id: str, user_id: str, raw: bytes | str) -> MemoryEvent:
    """One history event as a script stored it: [event_id, event, old and new text, old
    and new topics as JSON text, actor, session_id, run_id, time as a string]."""
    event_id, kind, old, new, old_topics, new_topics, *context, at = json.loads(raw)
    change = (kind, old, new, old_topics, new_topics)
    return row_to_event((event_id, memory_id, user_id, *change, *context, int(at)))


def _history_memory_id(tail: bytes) -> str | None:
    """The memory id of a history key from its ``<n>:<user_id>:<memory_id>`` (see
    store.py); None for a key not of that form."""
    length, _, rest = tail.partition(b":")
    if not length.isdigit() or rest[int(length) : int(length) + 1] != b":":
        return None
    return rest[int(length) + 1 :].decode(errors="replace")


def _deleted_at(history: list[bytes]) -> datetime | None:
    """The time of the latest ``"delete"`` event of one memory's stored history, if any."""
    for raw in reversed(history):
        _, kind, *_, at = json.loads(raw)
        if kind == "delete":
            return from_micros(int(at))
    return None


# Histories read per round trip (see RedisReads.last_deletions).
_HISTORIES_PER_CALL: Final = 1000
_MEMORIES_PER_CALL: Final = 1000  # ids per script call of get_memories: a short block

# Ranks past every sorted set's end: Redis holds at most 2**32 members per key, and takes
# only 64-bit ranks (a page of limit 2**63-1 after an offset would overflow them).
PAST_THE_END: Final = 2**32


def last_rank(offset: int, limit: int | None) -> int:
    """The last rank of a page (ZRANGE's inclusive stop; -1 for "to the end")."""
    if limit is None or offset + limit > PAST_THE_END:
        return -1
    return offset + limit - 1


def appended_to(appended: int, run: RunResult) -> bool:
    """Whether an append script wrote the run (1), or dropped it with the session it was
    to continue (-2: deleted, or deleted and begun again); what else its answer says went
    wrong, raised."""
    if appended == 0:
        raise foreign_session(run.session_id)
    if appended == -1:
        raise run_id_taken(run.run_id)
    return appended == 1


def scope(user_id: str | None) -> tuple[str, str]:
    """A read script's ARGV[2..3]: one user's memories, or everyone's."""
    return ("all", "") if user_id is None else ("user", user_id)


class RedisReads(PageRules):
    """The read methods of :class:`~noted.db.base.MemoryStore` for RedisDb, and the
    plumbing of every memory script call."""

    cache: SnapshotCache
    _pending: PendingCounts  # the users' counts of memories to embed
    memory_table: str
    server: str
    _client: redis.Redis
    _redis_error: type[Exception]
    _auth_error: type[Exception]
    _read: Script
    _after: Script
    _owned: Script
    _load: Script
    _changes: Script
    _to_embed: Script
    _count: Script
    _topics: Script
    _stats: Script

    # -- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        """Redis failures inside the block as StoreError, naming the server."""
        try:
            yield
        except self._auth_error as exc:
            raise StoreError(f"Redis at {self.server}: {self._refused_login(exc)}") from exc
        except self._redis_error as exc:
            raise StoreError(f"Redis at {self.server}: {exc}") from exc

    def _refused_login(self, exc: Exception) -> str:
        """What a server that refused this store's login said, and what was sent: a
        server that wants a password and was given none answers the client's first
        command (HELLO) with words about HELLO."""
        given = self._client.connection_pool.connection_kwargs.get("password") is not None
        if given:
            return f"the server refused the user name and password of the URL ({exc})"
        return (
            "the server requires a password, and the URL gives none "
            f"(redis://[user]:password@host:port/db) ({exc})"
        )

    def _call(self, script: Script, *args: Arg) -> Any:
        """Run a memory script (its prefix first)."""
        with self._mapped_errors():
            return script(args=[self.memory_table, *args])

    def _mkey(self, memory_id: str) -> str:
        return f"{self.memory_table}:m:{memory_id}"

    def _ekey(self, user_id: str, memory_id: str) -> str:
        return f"{self.memory_table}:e:{len(user_id.encode())}:{user_id}:{memory_id}"

    def _gkey(self, user_id: str) -> str:
        return f"{self.memory_table}:gen:{len(user_id.encode())}:{user_id}"

    def _ckey(self, user_id: str) -> str:
        return f"{self.memory_table}:chg:{len(user_id.encode())}:{user_id}"

    # -- MemoryStore: reads -----------------------------------------------------------------

    def get_memory(self, memory_id: str, user_id: str) -> UserMemory | None:
        with self._mapped_errors():
            found = self._client.hmget(self._mkey(memory_id), _MEMORY_FIELDS)
        if not owned_by(found[0], user_id):
            return None
        return script_memories([[memory_id, *map(decoded, found)]])[0]

    def get_memories(self, memory_ids: Sequence[str], user_id: str) -> dict[str, UserMemory]:
        """The memories among ``memory_ids`` that ``user_id`` has, by id: what
        :meth:`get_memory` answers for each, read many at a time."""
        rows: list[Any] = []
        for start in range(0, len(memory_ids), _MEMORIES_PER_CALL):
            chunk = list(memory_ids[start : start + _MEMORIES_PER_CALL])
            rows.extend(json.loads(self._call(self._owned, user_id, to_json(chunk))))
        return {m.memory_id: m for m in script_memories(rows) if m.memory_id is not None}

    def _read_rows(
        self, user_id: str | None, kind: str, by: str, lo: Arg, hi: Arg, rev: bool = False
    ) -> list[Any]:
        """Rows of one user's (or everyone's) memories from their ``kind`` sorted set, by
        rank or by score."""
        raw = self._call(self._read, *scope(user_id), kind, by, lo, hi, "rev" if rev else "")
        rows: list[Any] = json.loads(raw)
        return rows

    @staticmethod
    def _time_bounds(query: MemoryQuery) -> tuple[Arg, Arg]:
        """The query's updated_at bounds as inclusive scores. Inclusive on both sides they
        select a superset also where scores round (see the module's notes): the exact
        filter is :func:`matches`'s."""
        after, before = query.updated_after, query.updated_before
        return (
            "-inf" if after is None else to_micros(after),
            "+inf" if before is None else to_micros(before),
        )

    def _everyones(self, query: MemoryQuery) -> list[UserMemory]:
        """Every user's memories that pass the query's filters, in no particular order."""
        rows = self._read_rows(None, "upd", "score", *self._time_bounds(query))
        return [m for m in script_memories(rows) if matches(query, m)]

    def list_memories(self, query: MemoryQuery) -> list[UserMemory]:
        """One user's with filters from their snapshot (see _snapshot: one GET while it is
        current), which keeps which memories pass each filter it was asked (an agent that
        sees only its own memories asks the same at every turn); one user's without
        filters by rank from the sorted set; everyone's by a script."""
        if query.limit == 0:
            return []
        if query.user_id is None:
            return sort_memories(self._everyones(query), query)
        if query.filtered:
            return self._snapshot(query.user_id).listed(query)
        kind = "upd" if query.sort_by == "updated_at" else "crt"
        rev = query.sort_order == "desc"
        if query.after is not None:
            return script_memories(self._rows_after(query.user_id, kind, query, rev))
        stop = last_rank(query.offset, query.limit)
        return script_memories(
            self._read_rows(query.user_id, kind, "rank", query.offset, stop, rev)
        )

    def _rows_after(self, user_id: str, kind: str, query: MemoryQuery, rev: bool) -> list[Any]:
        """Rows of the user's page past the query's ``after``, found by the server in
        O(log n) (AFTER_LUA): what a deep page costs is the page's own reading."""
        assert query.after is not None
        if query.offset >= PAST_THE_END:
            return []
        limit = query.limit
        count = "" if limit is None or query.offset + limit > PAST_THE_END else limit
        when, memory_id = query.after
        args = (user_id, kind, to_micros(when), memory_id, query.offset, count)
        rows: list[Any] = json.loads(self._call(self._after, *args, "rev" if rev else ""))
        return rows

    def count_memories(self, query: MemoryQuery) -> int:
        if query.filtered and query.user_id is not None:
            return self._snapshot(query.user_id).count(query)
        if query.filtered:
            return len(self._everyones(query))
        return int(self._call(self._count, *scope(query.user_id)))

    def _snapshot(self, user_id: str, shape: Shape | None = None) -> UserSnapshot:
        """The user's memories, and their vectors of ``shape`` when given, as they are now:
        the cached snapshot while its generation is the user's (one GET); after writes
        the user's change log names, the cached one with only those memories read again;
        else everything read again with its generation by one script. What the snapshot
        already holds is not read again unless the generation moved on meanwhile."""
        cached = self.cache.get(user_id)
        if cached is not None:
            current = self._mark(user_id)
            if current == (cached.generation, cached.token) and (
                shape is None or shape in (cached.vectors or {})
            ):
                return cached
        with self.cache.refreshing(user_id):  # one search of the user's reads the change
            return self._refreshed(user_id, shape)

    def _mark(self, user_id: str) -> tuple[int, str]:
        """The user's generation and the token of the write that made it (see
        :func:`.changes.mark_of`), in one round trip: a GET and an LINDEX."""
        with self._mapped_errors():
            pipe: Any = self._client.pipeline(transaction=False)
            pipe.get(self._gkey(user_id))
            pipe.lindex(self._ckey(user_id), -1)
            generation, last = pipe.execute()
        return mark_of(generation, last)

    def _refreshed(self, user_id: str, shape: Shape | None) -> UserSnapshot:
        """_snapshot's answer when its cached one would not do (see there)."""
        cached = self.cache.get(user_id)
        if cached is not None:
            if (cached.generation, cached.token) != self._mark(user_id):
                cached = self._patched(user_id, cached) if cached.patchable else None
            if cached is not None and (shape is None or shape in (cached.vectors or {})):
                return cached
        model, dimensions = shape or ("", 0)

        def load(rows: bool) -> Any:
            return self._call(self._load, user_id, "rows" if rows else "", model, 4 * dimensions)

        reply = load(cached is None)
        if cached is not None and (int(reply[0]), reply[1].decode()) != (
            cached.generation,
            cached.token,
        ):  # a write since the GET
            cached, reply = None, load(True)
        generation = int(reply[0])
        if cached is None:
            memories = script_memories(json.loads(reply[2]))
            token = reply[1].decode()
            cached = UserSnapshot(generation, memories, token=token, ordered_by="updated_at")
        if shape is not None:
            keys = np.array(json.loads(reply[3]), dtype=np.int64)
            found = UserVectors(generation, keys, from_blobs(reply[4:], dimensions))
            cached = cached.with_vectors(shape, found)
        self.cache.put(user_id, cached)
        return cached

    def _patched(self, user_id: str, cached: UserSnapshot) -> UserSnapshot | None:
        """``cached`` brought to the user's generation now by reading only the memories
        written since (see :mod:`.changes`), and kept; None when the change log does not
        name every write since."""
        reply = self._call(self._changes, user_id, cached.generation, cached.token, "rows")
        changes = read_changes(reply, rows=True)
        if changes is None:
            return None
        if changes.generation == cached.generation:
            return cached
        patched = cached.patched(
            changes.generation,
            changes.ids,
            changes.rows,
            changes.vectors,
            upd_order,
            token=changes.token,
        )
        self.cache.put(user_id, patched)
        return patched

    def keyword_search(
        self, query: MemoryQuery, text: str, *, text_only: bool = False
    ) -> list[ScoredMemory]:
        """keyword_rank's ranking over the cached snapshot (see UserSnapshot.keyword)."""
        user_id = keyword_user(query)
        if query.limit == 0:
            return []
        return self._snapshot(user_id).keyword(query, text, text_only)

    def semantic_search(
        self, query: MemoryQuery, vector: QueryVector, model: str, centering: float = 0.0
    ) -> list[ScoredMemory]:
        """semantic_rank's ranking over the cached snapshot, whose memories are in M:upd's
        order: the order equal scores keep."""
        user_id, target = search_target(query.user_id, vector)
        centering = check_centering(centering)
        if query.limit == 0:
            return []
        shape = (model, target.size)  # vectors of other sizes are left out
        return self._snapshot(user_id, shape).semantic(query, target, model, centering)

    def _unembedded(self, user_id: str | None, model: str, limit: int | None) -> list[UserMemory]:
        per_user = "" if limit is None else limit
        raw = self._call(self._to_embed, *scope(user_id), model, per_user, "")
        pending = script_memories(json.loads(raw))
        if user_id is None:  # each user's come oldest first: merge them
            pending.sort(key=lambda m: (m.created_at, m.memory_id))
        return pending[:limit]

    def count_memories_to_embed(self, user_id: str | None, model: str) -> int:
        """How many memories have no embedding by ``model``. Counting reads every memory
        of the user on the server (24 ms at 10,000), and a semantic search asks first, so
        one user's count is kept with the generation it was taken at, and the ids counted
        while they are few (up to 256): while the generation stays, nothing was written or
        embedded, and the count stands; after writes the change log names, only the
        memories written are looked at again."""
        if user_id is None:
            return int(self._call(self._to_embed, *scope(None), model, "", "count"))
        kept = self._pending.entry(user_id, model)
        if kept is not None and (kept.generation, kept.token) == self._mark(user_id):
            return kept.count
        if kept is not None and kept.ids is not None:
            reply = self._call(self._changes, user_id, kept.generation, kept.token, "models")
            changes = read_changes(reply, rows=False)
            if changes is not None:
                waiting = (kept.ids - changes.ids) | {
                    memory_id for memory_id, by in changes.models.items() if by != model
                }
                listing = waiting if len(waiting) <= _LISTED_AT_MOST else None
                self._pending.put(
                    user_id, model, changes.generation, len(waiting), listing, changes.token
                )
                return len(waiting)
        count, listed, now, token = self._call(
            self._to_embed, *scope(user_id), model, "", "ids", _LISTED_AT_MOST
        )
        ids = json.loads(listed)
        listing = frozenset(ids) if len(ids) == int(count) else None
        self._pending.put(user_id, model, int(now), int(count), listing, token.decode())
        return int(count)

    def get_memory_history(self, memory_id: str, user_id: str) -> list[MemoryEvent]:
        with self._mapped_errors():
            raw = self._client.lrange(self._ekey(user_id, memory_id), 0, -1)
        return [_event(memory_id, user_id, event) for event in raw]

    def last_deletions(self, memory_ids: Sequence[str], user_id: str | None) -> dict[str, datetime]:
        """When each of ``user_id``'s memories among ``memory_ids`` was last deleted (None:
        each memory of any user's with that id): the time of its latest ``"delete"``
        event, for those that have one."""
        keys: list[tuple[str, str | bytes]]
        if user_id is None:
            keys = self._history_keys(memory_ids)
        else:
            keys = [(memory_id, self._ekey(user_id, memory_id)) for memory_id in memory_ids]
        found: dict[str, datetime] = {}
        for start in range(0, len(keys), _HISTORIES_PER_CALL):
            chunk = keys[start : start + _HISTORIES_PER_CALL]
            with self._mapped_errors():
                pipe: Any = self._client.pipeline(transaction=False)
                for _, key in chunk:
                    pipe.lrange(key, 0, -1)
                histories = pipe.execute()
            for (memory_id, _), raw in zip(chunk, histories, strict=True):
                at = _deleted_at(raw)
                if at is not None:
                    found[memory_id] = max(at, found.get(memory_id, at))
        return found

    def _history_keys(self, memory_ids: Sequence[str]) -> list[tuple[str, str | bytes]]:
        """Every user's history key of each of ``memory_ids`` (with the id): a history's
        key names its user, so these are found by going through the history keys with
        SCAN, the one read of this store that does (the prefix, an SQL identifier, holds
        no pattern characters)."""
        wanted = set(memory_ids)
        prefix = f"{self.memory_table}:e:".encode()
        keys: list[tuple[str, str | bytes]] = []
        with self._mapped_errors():
            for key in self._client.scan_iter(match=prefix + b"*", count=_HISTORIES_PER_CALL):
                memory_id = _history_memory_id(key[len(prefix) :])
                if memory_id in wanted:
                    keys.append((memory_id, key))
        return keys

    def get_topics(self, user_id: str | None) -> list[str]:
        lists = json.loads(self._call(self._topics, *scope(user_id)))
        sound = (text for text in lists if topics_damage(text) is None)  # damaged: none
        return sorted({topic for text in sound for topic in decode_topics(text)})

    def _user_stats(self, limit: int | None, offset: int) -> list[UserStats]:
        found = json.loads(self._call(self._stats, offset, last_rank(offset, limit)))
        return [
            UserStats(user_id, count, from_micros(int(newest))) for user_id, count, newest in found
        ]
