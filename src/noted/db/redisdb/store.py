"""RedisDb: memories, their history and sessions in Redis (redis-py, sync client).

Behaves like :class:`~noted.db.sqlite.SqliteDb` in everything the store protocols promise.
Filters beyond the user, keyword ranking (BM25) and vector similarity run in Python over
the user's memories (see :mod:`noted.db._client_search`); Redis holds the data and makes
each write atomic. Searches keep each user's memories and vectors in this process between
calls while the user's generation stays the same (see "Search cache" below).

Key layout, with ``M`` the memory prefix (``memory_table``) and ``S`` the session prefix
(``session_table``); ids are used as they are (keys are binary-safe)::

    M:m:<memory_id>       hash    user_id, memory, topics (JSON list), input, agent_id,
                                  team_id, session_id, created_at, updated_at (integer
                                  microseconds, UTC), embedding (little-endian float32
                                  bytes), embedding_model; an absent field is None
    M:upd:<user_id>       zset    the user's memory ids, score = updated_at
    M:crt:<user_id>       zset    the user's memory ids, score = created_at
    M:users               zset    users with memories, score = -(their newest updated_at)
    M:e:<n>:<user_id>:<memory_id>
                          list    the memory's history, oldest first, one JSON array per
                                  event. <n> is the user id's length in UTF-8 bytes, so a
                                  key names one (user, memory) pair however the ids are
                                  spelled, and an id reused by another user after a delete
                                  has a history of its own. Deletes keep it.
    M:gen:<n>:<user_id>   string  the user's generation (<n> as above): every script that
                                  changes their memories or embeddings moves it on. Kept
                                  when their memories are gone, so it never repeats.
    M:chg:<n>:<user_id>   list    the user's change log: per write, "<generation> <the
                                  memory ids it wrote, JSON>" (see :mod:`.changes`)
    M:clr:<token>         zset    a clear's users still to clear; and per user, when
    M:clr:<token>:<n>:<user_id>   their turn comes, a copy of their M:upd: the ids still
                          zset    to clear (see "Clearing"). Gone when the clear ends, or
                                  an hour after its last batch
    S:s:<session_id>      hash    user_id, agent_id, created_at, updated_at, summary (JSON)
    S:r:<session_id>      list    the session's runs in order, each ``run.to_dict()`` as
                                  JSON; its length is the run count
    S:d:<session_id>      list    positions in S:r of the completed runs, so the last
                                  completed runs are read without reading the others
    S:u:<user_id>         zset    the user's sessions, score = -updated_at
    S:all                 zset    every session, score = -updated_at

The memory and session kinds never share a name, so one prefix may serve both, and stores
with other prefixes share a server without seeing each other's keys.

Order: a sorted set orders equal scores by member, bytewise, so score = time and member =
id give the protocol's order (time, then memory_id, both in the query's direction), and an
unfiltered page of one user's memories is read by rank on the server (``ZRANGE ... REV``),
fetching only that page's hashes. Negated scores list users and sessions most recent first
with ties by id ascending, paged on the server too. Scores are doubles: exact for times
within 2**53 microseconds of 1970 (the years 1685 to 2255); the hashes keep every time
exactly, and time filters are applied exactly in Python after a server-side range read.

A user's memories are found through their sorted sets, everyone's through ``M:users``:
nothing here uses KEYS or SCAN, but for one read an import makes of the memories that name
no user in its source: when each id was last deleted by any user (``last_deletions(ids,
None)``), whose histories are found by a SCAN of the ``M:e:`` keys.

Atomicity: each write is one Lua script call, so no other client sees it half done or
writes in between, and a refused write (an id of another user's) is refused before the
script writes anything. Redis does not undo a script that fails midway; these read what
they check before they write, so only a key of theirs that something else overwrote with
another type could stop one halfway.

Clearing: a clear (one user's memories, or every user's) is a script per ``CLEAR_BATCH``
memories, not one script: Redis runs nothing else while a script runs, so one script for
a large user held every client of the server (other users, other programs) until it
ended. Each batch deletes the first ids of its user's copy still theirs, with their
events, and leaves their keys as every other script does; the server answers other
clients between two. Every memory a user had when their turn came is deleted with
exactly one event; one added since is kept; stopped part-way, the batches done stay
deleted and recorded, and clearing again finishes the work. A clear inside a write batch
stays one script of its MULTI/EXEC.

A batch of memories travels as one JSON argument that its script decodes (cjson): redis-py
then encodes one argument instead of a dozen per memory, so 10,000 memories take one round
trip and a fraction of a second. Read scripts answer with one JSON text for the same
reason. Scripts build keys from the prefix they are given, so a Redis Cluster is not
supported (a single server, with or without replicas, is).

Search cache: a search reads the user's generation (one GET) and, when it is the one its
cached copy was read at, ranks that copy without reading a hash. Otherwise, when the
user's change log names every write since, it reads only the memories those wrote (with
the generation, in one script) and brings the copy up to date; else it reads the memories
(and the vectors it needs) and their generation in one script, so a copy never claims a
newer generation than its data. Writes move the generation on inside their own
script, so writes from other processes count too. A new generation key starts at the
server's time in microseconds, not at 1, so one lost to FLUSHDB, a restart or an eviction
does not come back to a value a process cached; one restored older (a restart on an older
snapshot, a replica promoted without the last writes) does, and is told apart by the
token of the write that made it, read with it (see :func:`.changes.mark_of`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from noted._time import from_micros, now_micros
from noted.audit import AuditContext, new_event_ids, resolve_audit
from noted.db._client_search import SnapshotCache
from noted.db._rows import (
    COLUMNS,
    check_table_name,
    foreign_session,
    memory_to_row,
    rows_to_memories,
    stamped_keys,
    summary_from_json,
)
from noted.db.base import QueryVector, StoreContext, WriteBatch
from noted.db.core import (
    Capabilities,
    Change,
    DeleteRules,
    PendingCounts,
    StoredSide,
    batch_changes,
    clears_embedding,
    foreign_memory,
    replaced_fields,
    replacement,
    unchanged_only,
    upsert_changes,
)
from noted.db.redisdb import clear_script as clear_lua
from noted.db.redisdb import read_scripts as read_lua
from noted.db.redisdb import scripts as lua
from noted.db.redisdb import session_scripts as session_lua
from noted.db.redisdb.jobs import RedisJobs
from noted.db.redisdb.reads import (
    PAST_THE_END,
    Arg,
    RedisReads,
    appended_to,
    continued,
    decoded,
    last_rank,
    opt,
    owned_by,
    scope,
    to_json,
)
from noted.db.redisdb.revocations import RedisRevocations
from noted.db.sessions_core import SessionRules, sees_session
from noted.errors import UserError
from noted.models._provider import import_sdk
from noted.retrieval.vectors import check_vector, to_blob
from noted.schema import UserMemory
from noted.sessions import RunResult, Session, SessionSummary

if TYPE_CHECKING:
    import redis
    from redis.commands.core import Script

__all__ = ["RedisDb"]

Row = tuple[Any, ...]

_EMBED_CHUNK: Final = 1000  # embeddings per script call (each is stored on its own)
_SESSIONS_PER_CALL: Final = 1000  # sessions read per MULTI/EXEC by get_sessions
_SESSION_FIELDS: Final = ("user_id", "agent_id", "created_at", "updated_at", "summary")
_SOCKET_TIMEOUT: Final = 30.0  # seconds; a large batch is one script call
_CONNECT_TIMEOUT: Final = 5.0
_CACHE_BYTES: Final = 256 * 2**20  # the search cache's default budget
CLEAR_BATCH = 1_000  # memories a clear deletes per script (see "Clearing")


# -- conversions ---------------------------------------------------------------------------


def _entries(rows: Sequence[Row], clears: Sequence[bool]) -> list[list[Any]]:
    """Rows of stamped memories (:func:`memory_to_row`) as the write scripts take them,
    each with a new event id before it, the times as strings, and after them whether the
    stored embedding goes (the core's :func:`~noted.db.core.clears_embedding`)."""
    return [
        [event_id, *row[:8], str(row[8]), str(row[9]), clear]
        for event_id, row, clear in zip(new_event_ids(len(rows)), rows, clears, strict=True)
    ]


def _stored_row(found: list[Any]) -> Row:
    """A stored memory as STORED_LUA reads it, as a row in COLUMNS order without
    ``updated_at``."""
    return (*found[:8], int(found[8]))


def _sides(stored: dict[str, Row]) -> dict[str, StoredSide[str]]:
    return {i: StoredSide(row[1], row[2], row[3]) for i, row in stored.items()}


def _replaced(row: Row, stored: Row | None) -> Row:
    """The record a replace writes over ``stored`` (the core's replaced_fields)."""
    if stored is None:
        return row
    record = dict(zip(COLUMNS, row, strict=True))
    record.update(replaced_fields(record, dict(zip(COLUMNS, stored, strict=False))))
    return tuple(record[c] for c in COLUMNS)


def _clears(changes: Sequence[Change[str] | None]) -> list[bool]:
    return [change is None or clears_embedding(change) for change in changes]


def _session(session_id: str, fields: Sequence[Any], run_count: int) -> Session:
    """A session from its hash fields (user_id, agent_id, created_at, updated_at, summary)."""
    user_id, agent_id, created, updated, summary = fields
    return Session(
        session_id,
        user_id.decode(),
        decoded(agent_id),
        from_micros(int(created)),
        from_micros(int(updated)),
        summary_from_json(summary),
        run_count,
    )


def _runs(raw: Sequence[bytes]) -> list[RunResult]:
    return [RunResult.from_dict(json.loads(run)) for run in raw]


def _describe(client: redis.Redis) -> str:
    """Where the client connects, as a URL without user name or password."""
    pool = client.connection_pool
    options = pool.connection_kwargs
    db = options.get("db", 0)
    if options.get("path"):
        return f"unix://{options['path']}?db={db}"
    scheme = "rediss" if "SSL" in pool.connection_class.__name__ else "redis"
    return f"{scheme}://{options.get('host', 'localhost')}:{options.get('port', 6379)}/{db}"


def _queue_scripts(pipe: Any, calls: Sequence[tuple[Script, Sequence[Arg]]]) -> int:
    """Queue script calls inside a MULTI: each script's text first (SCRIPT LOAD, which
    changes nothing for a script the server holds), then the calls by EVALSHA. The EXEC
    runs them together, so a server whose script cache was emptied (SCRIPT FLUSH, a
    restart) runs them all as well, none failing with NOSCRIPT while the others apply; and
    no SCRIPT EXISTS round trip is needed before the EXEC. How many replies the loads put
    at the front of the EXEC's."""
    scripts = list(dict.fromkeys(script for script, _ in calls))
    for script in scripts:
        pipe.script_load(script.script)
    for script, args in calls:
        pipe.evalsha(script.sha, 0, *args)
    return len(scripts)


class RedisDb(RedisReads, RedisRevocations, RedisJobs, DeleteRules, SessionRules, StoreContext):
    """Memories and sessions in Redis; see the module's notes for the layout.

    ``db_url`` is a redis-py URL: ``redis://[[user]:password@]host:port/db``, ``rediss://``
    for TLS, or ``unix:///path/to/socket?db=0``; its query options (``socket_timeout=60``)
    go to redis-py. Or pass a ready ``client`` made with ``decode_responses=False`` (the
    embeddings are bytes); it stays the caller's to close. ``memory_table`` and
    ``session_table`` prefix this store's keys. Nothing is sent to the server before the
    first call.

    The client this store makes does not retry a failed command: a write whose answer was
    lost may have been applied, and sending it again would apply and record it twice.

    Searches keep the most recently searched users' memories and vectors in ``cache``,
    within about ``cache_bytes`` (10,000 memories with 384-dimension vectors take about
    20 MB); 0 keeps nothing.
    """

    # a write is one script, a batch one MULTI/EXEC (checked before it is sent)
    capabilities = Capabilities(transactions=True)

    def __init__(
        self,
        db_url: str = "redis://localhost:6379/0",
        *,
        memory_table: str = "noted_memories",
        session_table: str = "noted_sessions",
        client: redis.Redis | None = None,
        cache_bytes: int = _CACHE_BYTES,
    ) -> None:
        module = import_sdk("redis", "redis", "RedisDb")
        if type(cache_bytes) is not int or cache_bytes < 0:
            raise UserError(f"cache_bytes must be a non-negative integer, got {cache_bytes!r}")
        self.cache = SnapshotCache(cache_bytes)
        self._pending = PendingCounts()
        self.memory_table = check_table_name(memory_table, "memory_table")
        self.session_table = check_table_name(session_table, "session_table")
        self._redis_error: type[Exception] = module.exceptions.RedisError
        self._auth_error: type[Exception] = module.exceptions.AuthenticationError
        self._watch_error: type[Exception] = module.exceptions.WatchError
        self._no_script_error: type[Exception] = module.exceptions.NoScriptError
        if client is None:
            self._client = self._connect(module, db_url)
        elif not isinstance(client, module.Redis):
            raise UserError(f"client must be a redis.Redis, got {type(client).__name__}")
        elif client.get_encoder().decode_responses:
            raise UserError(
                "client must be made with decode_responses=False: RedisDb keeps embeddings as bytes"
            )
        else:
            self._client = client
        self._owns_client = client is None
        self.server = _describe(self._client)
        register = self._client.register_script
        self._upsert = register(lua.MEMORY_LUA + lua.WRITE_LUA + lua.UPSERT_LUA)
        self._update = register(lua.MEMORY_LUA + lua.WRITE_LUA + lua.UPDATE_LUA)
        self._delete = register(lua.MEMORY_LUA + lua.WRITE_LUA + lua.DELETE_LUA)
        self._clear = register(lua.MEMORY_LUA + lua.WRITE_LUA + clear_lua.CLEAR_LUA)
        self._set_embeddings = register(lua.MEMORY_LUA + lua.SET_EMBEDDINGS_LUA)
        self._read_stored = register(lua.MEMORY_LUA + read_lua.STORED_LUA)
        self._read = register(lua.MEMORY_LUA + read_lua.READ_LUA)
        self._after = register(lua.MEMORY_LUA + read_lua.AFTER_LUA)
        self._owned = register(lua.MEMORY_LUA + read_lua.OWNED_LUA)
        self._load = register(lua.MEMORY_LUA + read_lua.LOAD_LUA)
        self._changes = register(lua.MEMORY_LUA + read_lua.CHANGES_LUA)
        self._to_embed = register(lua.MEMORY_LUA + read_lua.TO_EMBED_LUA)
        self._count = register(lua.MEMORY_LUA + read_lua.COUNT_LUA)
        self._topics = register(lua.MEMORY_LUA + read_lua.TOPICS_LUA)
        self._stats = register(lua.MEMORY_LUA + read_lua.STATS_LUA)
        self._append_run = register(session_lua.SESSION_LUA + session_lua.APPEND_RUN_LUA)
        self._get_runs = register(session_lua.SESSION_LUA + session_lua.GET_RUNS_LUA)
        self._list_sessions = register(session_lua.SESSION_LUA + session_lua.LIST_SESSIONS_LUA)
        self._delete_session = register(session_lua.SESSION_LUA + session_lua.DELETE_SESSION_LUA)
        self._set_summary = register(session_lua.SESSION_LUA + session_lua.SET_SUMMARY_LUA)

    @staticmethod
    def _connect(module: Any, db_url: object) -> redis.Redis:
        """A client for ``db_url`` that does not retry (see the class notes)."""
        if not isinstance(db_url, str) or not db_url.strip():
            raise UserError(
                f"db_url must be a Redis URL such as redis://localhost:6379/0, got {db_url!r}"
            )
        try:
            client: redis.Redis = module.Redis.from_url(
                db_url,
                socket_timeout=_SOCKET_TIMEOUT,
                socket_connect_timeout=_CONNECT_TIMEOUT,
                retry=module.retry.Retry(module.backoff.NoBackoff(), 0),
            )
        except ValueError as exc:  # the message never holds the URL, so no password
            raise UserError(f"db_url must be a redis://, rediss:// or unix:// URL: {exc}") from None
        return client

    def __repr__(self) -> str:
        return (
            f"RedisDb({self.server!r}, memory_table={self.memory_table!r}, "
            f"session_table={self.session_table!r})"
        )

    def close(self) -> None:
        """Empty the search cache and close the idle connections of the client this store
        made (a client passed in is left open). A call in flight on another thread (a
        background job still running as the program closes its store) ends as it would
        have: closing its connection under it lost the reply, and with it the call's
        outcome. The store connects again when it is used."""
        self.cache.clear()
        self._pending.clear()
        if self._owns_client:
            self._client.connection_pool.disconnect(inuse_connections=False)

    # -- plumbing -------------------------------------------------------------------------

    def _session_call(self, script: Script, *args: Arg) -> Any:
        """Run a session script (its prefix first)."""
        with self._mapped_errors():
            return script(args=[self.session_table, *args])

    @staticmethod
    def _stamp(audit: AuditContext) -> list[Arg]:
        """ARGV[2..5] of every script that writes memories."""
        return [now_micros(), audit.actor, opt(audit.session_id), opt(audit.run_id)]

    # -- MemoryStore: writes ----------------------------------------------------------------

    def upsert_memories(
        self, memories: Sequence[UserMemory], *, audit: AuditContext | None = None
    ) -> None:
        context = resolve_audit(audit)
        if not memories:
            return
        rows = [memory_to_row(m) for m in memories]
        ids = list(dict.fromkeys(row[0] for row in rows))
        if len(ids) == len(rows):  # decided on none being stored, which the script checks
            added: list[Change[str]] = upsert_changes((row[:4] for row in rows), {})
            entries = to_json(_entries(rows, _clears(added)))
            answer = self._call(self._upsert, *self._stamp(context), entries, "new")
            if answer is None:
                return  # else b"stored": read them and decide again

        def send(pipe: Any) -> bool:
            changes = upsert_changes((row[:4] for row in rows), _sides(self._stored(pipe, ids)))
            pipe.multi()
            entries = to_json(_entries(rows, _clears(changes)))
            _queue_scripts(
                pipe, [(self._upsert, [self.memory_table, *self._stamp(context), entries])]
            )
            return True

        results = self._watched([self._mkey(i) for i in ids], send)
        foreign = results[-1] if results else None  # the upsert's reply comes last
        if foreign is not None:
            raise foreign_memory(foreign.decode())

    def _stored(self, pipe: Any, ids: Sequence[str]) -> dict[str, Row]:
        """The stored ones of ``ids`` (read under WATCH) as rows in COLUMNS order, without
        ``updated_at``."""
        raw = self._run_now(pipe, self._read_stored, self.memory_table, to_json(list(ids)))
        return {row[0]: _stored_row(row) for row in json.loads(raw)}

    def _run_now(self, pipe: Any, script: Script, *args: Arg) -> Any:
        """Run ``script`` at once on a pipeline under WATCH, loading it on NOSCRIPT. Not by
        calling the script with the pipeline: that would have the EXEC ask the server
        first (SCRIPT EXISTS, one more round trip) for a script already run."""
        try:
            return pipe.evalsha(script.sha, 0, *args)
        except self._no_script_error:
            pipe.script_load(script.script)
            return pipe.evalsha(script.sha, 0, *args)

    def _watched(self, keys: Sequence[str], send: Callable[[Any], bool]) -> list[Any] | None:
        """``send(pipe)`` with ``keys`` watched: it reads what it decides on, then queues
        its writes after ``pipe.multi()`` and says True (False: nothing to send). Sent
        again when a watched key changed before the EXEC; the EXEC's replies."""
        pipeline: Any = self._client.pipeline(transaction=True)
        with self._mapped_errors(), pipeline as pipe:
            while True:
                try:
                    pipe.watch(*keys)
                    if not send(pipe):
                        return None
                    results: list[Any] = pipe.execute()
                    return results
                except self._watch_error:
                    continue

    def write_batch(
        self, batch: WriteBatch, *, audit: AuditContext | None = None
    ) -> list[UserMemory]:
        """The batch's scripts in one MULTI/EXEC: Redis runs them back to back, nothing in
        between. The memories it updates and adds are read first, under WATCH, for the
        core to decide their changes; a clear needs an event id per memory, so the user's
        generation is watched too, and so are the memories of its ``unchanged``, whose
        times are checked under the same WATCH. The whole batch is sent again if any of it
        moved."""
        context = resolve_audit(audit)
        if not batch:
            return []
        with self._mapped_errors(), self._client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    results, records, sent = self._send_batch(pipe, batch, context)
                    break
                except self._watch_error:
                    continue
        start = int(sent.clear) + int(bool(sent.deletes))
        updated = results[start] if sent.updates else []
        if sent.adds and results[-1] is not None:
            raise foreign_memory(results[-1].decode())
        written = [row for row, done in zip(records, updated, strict=True) if done]
        return [*rows_to_memories(written), *sent.adds]

    def _send_batch(
        self, pipe: Any, batch: WriteBatch, context: AuditContext
    ) -> tuple[list[Any], list[Row], WriteBatch]:
        """Send the batch; the EXEC's replies, the records its updates write, and the
        batch as sent (without the changes of memories changed since they were read)."""
        user = batch.user_id
        stamp = self._stamp(context)
        job = self._completing_job()  # a background job completed in this MULTI (jobs.py)
        if job is not None:
            job.watch(pipe)
        checked = list(dict.fromkeys(memory_id for memory_id, _ in batch.unchanged))
        ids = list(dict.fromkeys(stamped_keys(m)[0] for m in (*batch.updates, *batch.adds)))
        watched = [self._mkey(i) for i in dict.fromkeys([*ids, *checked])]
        if batch.clear:
            watched.append(self._gkey(user))
        if watched:
            pipe.watch(*watched)
        if checked:
            batch = unchanged_only(batch, self._times(pipe, checked, user))
        updates = [memory_to_row(m) for m in batch.updates]
        adds = [memory_to_row(m) for m in batch.adds]
        cleared = int(pipe.zcard(f"{self.memory_table}:upd:{user}")) if batch.clear else 0
        stored = self._stored(pipe, ids) if ids else {}
        # another user's id among the adds fails the batch here, before anything is sent
        updated, added = batch_changes(
            user,
            batch.clear,
            batch.deletes,
            (row[:4] for row in updates),
            (row[:4] for row in adds),
            _sides(stored),
        )
        updates = [
            _replaced(row, None if change is None else stored[row[0]])
            for row, change in zip(updates, updated, strict=True)
        ]
        prefix = [self.memory_table, *stamp]
        calls: list[tuple[Script, list[Arg]]] = []
        if batch.clear:
            cleared_ids = to_json(new_event_ids(cleared))
            calls.append((self._delete, [*prefix, "user", user, cleared_ids, "[]"]))
        if batch.deletes:
            ids = list(dict.fromkeys(batch.deletes))
            event_ids = to_json(new_event_ids(len(ids)))
            calls.append((self._delete, [*prefix, "ids", user, event_ids, to_json(ids)]))
        if updates:
            entries = _entries(updates, _clears(updated))
            calls.append((self._update, [*prefix, to_json(entries)]))
        if adds:
            entries = _entries(adds, _clears(added))
            calls.append((self._upsert, [*prefix, to_json(entries)]))
        pipe.multi()
        loads = _queue_scripts(pipe, calls)
        extra = 0 if job is None else job.queue(pipe)
        results: list[Any] = pipe.execute()
        return results[loads : len(results) - extra], updates, batch

    def _times(self, pipe: Any, memory_ids: list[str], user_id: str) -> dict[str, int]:
        """The ``updated_at`` of the user's memories among ``memory_ids`` (read at once,
        under WATCH)."""
        times: dict[str, int] = {}
        for memory_id in memory_ids:
            owner, updated = pipe.hmget(self._mkey(memory_id), "user_id", "updated_at")
            if owner is not None and owner.decode() == user_id and updated is not None:
                times[memory_id] = int(updated)
        return times

    def update_memory(
        self, memory: UserMemory, *, audit: AuditContext | None = None
    ) -> UserMemory | None:
        """Read the memory, let the core decide the record, and write it by one script
        that first checks the memory is still as read (else read and decide again)."""
        context = resolve_audit(audit)
        row = memory_to_row(memory)
        memory_id, user_id, text, topics = row[:4]
        while True:
            found = json.loads(self._call(self._read_stored, to_json([memory_id])))
            if not found or found[0][1] != user_id:
                return None
            stored = _stored_row(found[0])
            change = replacement(memory_id, user_id, stored[2:4], text, topics)
            record = _replaced(row, stored)
            entries = _entries([record], [clears_embedding(change)])
            answer = self._call(
                self._update, *self._stamp(context), to_json(entries), to_json(found[:1])
            )
            if answer != b"moved":
                return rows_to_memories([record])[0] if answer[0] else None

    def _delete_ids(self, ids: list[str], user_id: str, context: AuditContext) -> int:
        event_ids = to_json(new_event_ids(len(ids)))
        deleted = self._call(
            self._delete, *self._stamp(context), "ids", user_id, event_ids, to_json(ids)
        )
        return int(deleted)

    def _delete_all(self, user_id: str | None, audit: AuditContext) -> int:
        """Delete every memory of one user or of all, ``CLEAR_BATCH`` at a time: each
        batch is one script (see "Clearing" in the module's notes), and the server answers
        other clients between two."""
        token = new_event_ids(1)[0]
        deleted = 0
        while True:
            event_ids = to_json(new_event_ids(CLEAR_BATCH))
            done, left = self._call(
                self._clear, *self._stamp(audit), *scope(user_id), token, event_ids
            )
            deleted += int(done)
            if not int(left):
                return deleted

    def set_embeddings(self, model: str, items: Sequence[tuple[UserMemory, QueryVector]]) -> int:
        args: list[Arg] = []
        for m, vector in items:
            args += (m.memory_id or "", m.user_id or "", m.memory, to_blob(check_vector(vector)))
        width = 4 * _EMBED_CHUNK
        return sum(
            int(self._call(self._set_embeddings, model, *args[i : i + width]))
            for i in range(0, len(args), width)
        )

    # -- sessions (SessionRules does the rest) -----------------------------------------

    def _store_run(self, run: RunResult, now_us: int, existing: bool | str) -> bool:
        appended = self._session_call(
            self._append_run,
            run.session_id,
            run.user_id,
            opt(run.agent_id),
            now_us,
            run.status,
            to_json(run.to_dict()),
            run.run_id,
            continued(existing),
        )
        return appended_to(appended, run)

    def _read_runs(
        self, session_id: str, user_id: str, last_n: int | None, completed_only: bool
    ) -> list[RunResult]:
        status, *runs = self._session_call(
            self._get_runs,
            session_id,
            user_id,
            "" if last_n is None or last_n >= PAST_THE_END else last_n,
            "completed" if completed_only else "",
        )
        if status == b"conflict":
            raise foreign_session(session_id)
        return _runs(runs)

    def _read_session(self, session_id: str, user_id: str | None) -> Session | None:
        return self._read_session_window(session_id, user_id, None, 0)

    def _read_session_window(
        self, session_id: str, user_id: str | None, last_n: int | None, offset: int
    ) -> Session | None:
        """The session's hash, run count and window of runs in one MULTI/EXEC. LRANGE
        counts from the newest with negative indexes, which Redis takes as 64-bit
        integers: an offset or a count past any list's length (PAST_THE_END) is taken as
        that length, so that ``last_n`` and ``offset`` near 2**63 make no index out of
        that range."""
        runs_key = f"{self.session_table}:r:{session_id}"
        stop = -1 - min(offset, PAST_THE_END)
        start = 0 if last_n is None or last_n >= PAST_THE_END else stop - last_n + 1
        with self._mapped_errors(), self._client.pipeline(transaction=True) as pipe:
            pipe.hmget(f"{self.session_table}:s:{session_id}", _SESSION_FIELDS)
            pipe.llen(runs_key)
            pipe.lrange(runs_key, start, stop)
            fields, count, runs = pipe.execute()
        if fields[0] is None or not sees_session(fields[0].decode(), user_id):
            return None
        session = _session(session_id, fields, int(count))
        session.runs = [] if last_n == 0 else _runs(runs)
        return session

    def _read_sessions_by_id(self, session_ids: list[str]) -> dict[str, Session]:
        """Each session's hash and runs, _SESSIONS_PER_CALL sessions per MULTI/EXEC (one
        round trip; no other client writes in between)."""
        found: dict[str, Session] = {}
        for start in range(0, len(session_ids), _SESSIONS_PER_CALL):
            chunk = session_ids[start : start + _SESSIONS_PER_CALL]
            with self._mapped_errors(), self._client.pipeline(transaction=True) as pipe:
                for session_id in chunk:
                    pipe.hmget(f"{self.session_table}:s:{session_id}", _SESSION_FIELDS)
                    pipe.lrange(f"{self.session_table}:r:{session_id}", 0, -1)
                replies = pipe.execute()
            for n, session_id in enumerate(chunk):
                fields, runs = replies[2 * n], replies[2 * n + 1]
                if fields[0] is not None:
                    found[session_id] = _session(session_id, fields, len(runs))
                    found[session_id].runs = _runs(runs)
        return found

    def _read_sessions(self, user_id: str | None, limit: int | None, offset: int) -> list[Session]:
        stop = last_rank(offset, limit)
        found = self._session_call(self._list_sessions, opt(user_id), offset, stop)
        return [_session(row[0].decode(), row[1:6], int(row[6])) for row in found]

    def _remove_session(self, session_id: str, user_id: str | None) -> bool:
        return bool(self._session_call(self._delete_session, session_id, opt(user_id)))

    def _read_summary(self, session_id: str, user_id: str) -> SessionSummary | None:
        with self._mapped_errors():
            owner, summary = self._client.hmget(
                f"{self.session_table}:s:{session_id}", ("user_id", "summary")
            )
        return summary_from_json(summary) if owned_by(owner, user_id) else None

    def _write_summary(self, session_id: str, user_id: str, summary: SessionSummary) -> bool:
        args = (session_id, user_id, to_json(summary.to_dict()), summary.last_run_id or "")
        job = self._completing_job()  # a background job completed with it (jobs.py)
        if job is not None:
            stored = self._summary_completing(job, *args)
        else:
            stored = int(self._session_call(self._set_summary, *args))
        if stored < 0:
            raise foreign_session(session_id)
        return stored == 1
