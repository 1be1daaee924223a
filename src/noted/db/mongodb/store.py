"""MongoDb: memories, their history and session history in MongoDB (pymongo, synchronous)."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from noted._time import now_micros
from noted.audit import AuditContext, new_event_ids, resolve_audit
from noted.db._client_search import SnapshotCache
from noted.db._rows import check_table_names
from noted.db.base import QueryVector, StoreContext, WriteBatch
from noted.db.core import (
    Capabilities,
    Change,
    DeleteRules,
    additions,
    clears_embedding,
    deletions,
    replaced_fields,
    replacement,
    write_batch,
)
from noted.db.mongodb import sessions, undo
from noted.db.mongodb.docs import (
    event_docs,
    memories_of,
    memory_docs,
    overwrite,
    plan_upsert,
    sound_topics,
    vector_value,
)
from noted.db.mongodb.jobs import MongoJobs
from noted.db.mongodb.reads import MongoReads
from noted.db.mongodb.revocations import MongoRevocations
from noted.db.mongodb.search import batch_written, bump
from noted.db.mongodb.server import (
    EVENT_INDEXES,
    MEMORY_INDEXES,
    RUN_ID_INDEX,
    RUN_INDEXES,
    SESSION_INDEXES,
    Collections,
    SchemaWatch,
    VectorIndex,
    client_seeds,
    create_text_index,
    ensure_indexes,
    schema_lost,
)
from noted.db.mongodb.transactions import bound, deployment, has_transactions, in_transaction
from noted.db.revocations import SUFFIX as REVOKED
from noted.db.sessions_core import SessionsInModule
from noted.db.shown import safe_url, url_secrets
from noted.errors import ConflictError, StoreError, UserError
from noted.models._provider import import_sdk
from noted.retrieval.vectors import check_vector, to_blob
from noted.schema import UserMemory
from noted.sessions import RunResult, SessionSummary

if TYPE_CHECKING:
    from pymongo import InsertOne, MongoClient, UpdateOne
    from pymongo.collection import Collection
    from pymongo.errors import PyMongoError

__all__ = ["MongoDb"]

logger = logging.getLogger("noted.db.mongodb")

Doc = dict[str, Any]

SERVER_SELECTION_TIMEOUT_MS: Final = 5000
_BATCH: Final = 1000  # memories (or users) per bulk write, and ids per "$in" list
_CACHE_BYTES: Final = 256 * 2**20  # the search cache's default budget
_STORED_SIDE: Final = {"user_id": 1, "memory": 1, "topics": 1, "embedding": 1, "embedding_model": 1}
_DELETED_SIDE: Final = {"user_id": 1, "memory": 1, "topics": 1, "created_at": 1, "changed_at": 1}
_CANDIDATE: Final = {"user_id": 1, "created_at": 1}
_CLAIM: Final = "deleting"  # {token, at}: a delete's claim on a memory (see MongoDb._delete)
_CLAIM_AT: Final = _CLAIM + ".at"
_CLAIM_LIFETIME_US: Final = 60_000_000
_CLAIM_WAIT_S = 5.0  # how long a replace waits for a delete that holds a claim to end


def _claimed(doc: Doc, now: int) -> bool:
    """Whether a delete holds a live claim on the memory ``doc`` (see MongoDb._delete)."""
    claim = doc.get(_CLAIM)
    return claim is not None and int(claim["at"]) >= now - _CLAIM_LIFETIME_US


_TRANSACTIONAL: Final = Capabilities(transactions=True, native_fulltext=True, native_vectors=True)
_DATABASE_NAME = re.compile(r'[^/\\. "$*<>:|?\x00]{1,63}')


@dataclass(slots=True)
class _Lent:
    """A client's collections, the calls in flight on them, and whether the store closed
    the client meanwhile (the last of those calls then closes it)."""

    client: MongoClient[Doc]
    collections: Collections
    calls: int = 0
    closing: bool = False


class MongoDb(MongoReads, MongoRevocations, MongoJobs, DeleteRules, SessionsInModule, StoreContext):
    """Memories and sessions in a MongoDB database, one collection each for memories
    (``<memory_table>``), their history (``<memory_table>_events``), each user's generation
    (``<memory_table>_generations``), sessions (``<session_table>``) and runs
    (``<session_table>_runs``), created with their indexes on first use.

    A memory is one document (``_id`` is its id; times are int64 microseconds, exact where
    BSON dates keep milliseconds only; its embedding a BSON float32 vector). Keyword search
    uses the server's ``$text`` index when it built one, else BM25 in Python; semantic
    search is exact cosine in Python, or Atlas ``$vectorSearch`` when a queryable vector
    index is there (docs/backends.md says when each is used).

    Search cache: the searches done in Python keep the most recently searched users'
    memories (oldest first: by ``created_at``, then id, the order in which equal semantic
    scores come out) and, per embedding model, their vectors as one float32 matrix, in
    ``cache``, within about ``cache_bytes`` (10,000 memories with
    384-dimension vectors take about 20 MB); 0 keeps nothing. Each user has a generation,
    ``{_id: user_id, generation: n, logged: n, token: t, log: [...]}`` in
    ``<memory_table>_generations``, that every write of their memories or embeddings moves
    on with ``$inc`` after writing, so writes of other processes count too; the same
    update logs the ids written (see :func:`.search.bump`). A search reads the generation
    first (one ``find_one``) and uses the cached copy while it was loaded at that
    generation; after writes the log names, it reads only those memories into it;
    otherwise it loads the user's memories; either is cached under the generation read
    before reading: a write
    meanwhile can at worst have its data cached under the old generation, and its
    increment makes the next search load again. A process that stops between a write and
    its increment leaves other processes' copies of that user stale until the user's
    next write that finds a copy read whole more than a minute before (copies are
    patched for a minute only: PATCHED_FOR); and the generations collection must stay
    with the memories (dropped alone, it counts again from 1, which a copy may have been
    cached at).

    On a replica set or a sharded cluster (read from the server's ``hello``),
    :meth:`write_batch` runs in one transaction. Without multi-document transactions (a
    standalone server), each memory document is
    written atomically and its history event right after it; a batch is checked whole for
    other users' ids first, then written in bulk writes of 1000 (another process taking one
    of its ids meanwhile stops it part-way, with ConflictError saying how many were
    written); :meth:`write_batch` goes change by change and, when a change fails, puts
    the memories it changed back as they were before raising (:mod:`.undo`); a replace
    is a compare-and-set on the memory's ``version`` whose event is stamped after the
    previous version's, so the last history event describes the memory as it is. A run
    claims its place with one atomic increment (a crash after the claim leaves a gap
    readers skip), is written with its session's ``created_at``, and is taken away by its
    writer when the session was deleted meanwhile; deleting a session deletes its runs
    first, and those written meanwhile after it. docs/backends.md has the details.
    """

    # $text where the server builds the index; Atlas $vectorSearch where one is queryable
    # (transactions on a replica set or sharded cluster: _TRANSACTIONAL, set on connecting)
    capabilities = Capabilities(transactions=False, native_fulltext=True, native_vectors=True)

    def __init__(
        self,
        db_url: str = "mongodb://localhost:27017",
        database: str = "noted",
        *,
        memory_table: str = "noted_memories",
        session_table: str = "noted_sessions",
        client: MongoClient[Doc] | None = None,
        cache_bytes: int = _CACHE_BYTES,
    ) -> None:
        """Connect lazily: nothing is sent before the first call. A client opened from
        ``db_url`` waits at most 5 s for a server (unless the URL sets
        ``serverSelectionTimeoutMS``) and is closed by :meth:`close`; a ``client`` passed
        in is used as it is (``db_url`` is then ignored) and left open. ``cache_bytes``
        bounds the search cache (see the class's notes)."""
        import_sdk("pymongo", "mongo", "MongoDb")
        if type(cache_bytes) is not int or cache_bytes < 0:
            raise UserError(f"cache_bytes must be a non-negative integer, got {cache_bytes!r}")
        if not isinstance(db_url, str) or not db_url:
            raise UserError(f"db_url must be a MongoDB URL, got {db_url!r}")
        if not isinstance(database, str) or not _DATABASE_NAME.fullmatch(database):
            raise UserError(
                "database must be a MongoDB database name (at most 63 characters, none of "
                f'/\\. "$*<>:|?), got {database!r}'
            )
        self.db_url = db_url
        self.database = database
        self.memory_table, self.session_table = check_table_names(
            memory_table, session_table, ("_events", "_generations", REVOKED)
        )
        self._client = client
        self._owns_client = client is None
        self._secrets = url_secrets(db_url) if client is None else ()
        self._where = safe_url(db_url) if client is None else client_seeds(client)
        self._session_names = self._where
        self._lock = threading.Lock()
        self._lent: _Lent | None = None  # the client's collections, and calls in flight
        self._indexed = False
        self.schema_watch = SchemaWatch()  # when the indexes are checked again
        self._text_built = False  # whether the server built the text index
        self._text_search = False  # whether the server's $text answers keyword searches
        self._vector_checked = False
        self._vector_index: VectorIndex | None = None
        self.cache = SnapshotCache(cache_bytes)

    def __repr__(self) -> str:
        return (
            f"MongoDb(db_url={self._where!r}, database={self.database!r}, "
            f"memory_table={self.memory_table!r}, session_table={self.session_table!r})"
        )

    def close(self) -> None:
        """Close the client this object opened (a client passed in stays open) and empty
        the search cache. Calls in flight on other threads (a background job still running
        as the program closes its store) end as they would have: the client is closed when
        the last of them is done. The store connects again when it is used."""
        self.cache.clear()
        with self._lock:
            lent, self._lent = self._lent, None
            if not self._owns_client or self._client is None:
                return
            client, self._client = self._client, None
            if lent is not None and lent.calls:
                lent.closing = True  # the last call in flight closes it
                return
        client.close()

    # -- connection, indexes, errors -----------------------------------------------------

    @contextmanager
    def _db(self) -> Iterator[Collections]:
        """The collections (opened and indexed on first use), with driver faults turned
        into StoreError."""
        from bson.errors import BSONError
        from pymongo.errors import PyMongoError

        lent: _Lent | None = None
        try:
            lent = self._borrow()
            if self.schema_watch.due():
                self._check_schema(lent.collections)
            yield lent.collections
        except PyMongoError as exc:
            raise self._store_error(exc) from exc
        except BSONError as exc:
            raise StoreError(f"MongoDB at {self._where}: cannot encode a document ({exc})") from exc
        finally:
            if lent is not None:
                self._give_back(lent)

    # the sessions' collections (SessionsInModule does the rest)
    _session_functions = sessions
    _session_reader = _db
    _session_writer = _db

    def _store_run(self, run: RunResult, now_us: int, existing: bool | str) -> bool:
        with self._db() as db:  # (a new session is a sign for the indexes: SchemaWatch)
            names, doubt = self._session_names, self.schema_watch.doubt
            return sessions.append_run(db.sessions, db.runs, run, names, None, existing, doubt)

    def _write_summary(self, session_id: str, user_id: str, summary: SessionSummary) -> bool:
        with self._db() as db:
            return sessions.set_summary(
                db, self._session_names, session_id, user_id, summary, self.completing_a_job()
            )

    def _borrow(self) -> _Lent:
        """The collections (opened and indexed on first use) for one call, counted as in
        flight on their client until :meth:`_give_back`."""
        with self._lock:
            lent = self._lent
            if lent is None:
                if self._client is None:
                    self._client = self._connect()
                db = self._client[self.database]
                collections = Collections(
                    db[self.memory_table],
                    db[self.memory_table + "_events"],
                    db[self.memory_table + "_generations"],
                    db[self.session_table],
                    db[self.session_table + "_runs"],
                )
                if not self._indexed:
                    self._create_indexes(collections)
                    self._indexed = True
                    self.schema_watch.checked = time.monotonic()
                    if self._has_transactions(self._client):
                        self.capabilities = _TRANSACTIONAL
                lent = self._lent = _Lent(self._client, collections)
            lent.calls += 1
            return lent

    def _give_back(self, lent: _Lent) -> None:
        with self._lock:
            lent.calls -= 1
            last = lent.closing and not lent.calls
        if last:  # the store was closed while this call ran
            lent.client.close()

    def _connect(self) -> MongoClient[Doc]:
        from pymongo import MongoClient

        options: dict[str, Any] = {"appname": "noted"}
        if "serverselectiontimeoutms" not in self.db_url.partition("?")[2].lower():
            options["serverSelectionTimeoutMS"] = SERVER_SELECTION_TIMEOUT_MS
        client: MongoClient[Doc] = MongoClient(self.db_url, **options)
        return client

    def _store_error(self, exc: PyMongoError) -> StoreError:
        from pymongo.errors import ConnectionFailure, OperationFailure

        if isinstance(exc, ConnectionFailure):
            text = f"cannot reach MongoDB at {self._where}: {exc}"
        elif isinstance(exc, OperationFailure):
            details = exc.details or {}
            first = (details.get("writeErrors") or [details])[0]  # a bulk write's first error
            reason = first.get("errmsg") or str(exc)
            code = first.get("code", exc.code)
            text = f"MongoDB at {self._where} refused the operation: {reason} (code {code})"
        else:
            text = f"MongoDB at {self._where}: {exc}"
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return StoreError(text)

    def _unique_run_ids(self, runs: Collection[Doc]) -> None:
        """A run id is unique across the store's runs, as on every store; runs written
        before that rule may hold an id twice: they are kept, and the rule waits (logged)
        until they go."""
        from pymongo.errors import DuplicateKeyError, OperationFailure

        name, keys, options = RUN_ID_INDEX
        try:
            runs.create_index(keys, name=name, **options)
        except (DuplicateKeyError, OperationFailure) as exc:
            logger.warning(
                "%s: stored runs share a run id, so a run id used twice is not refused (%s)",
                runs.full_name,
                exc,
            )

    def _create_indexes(self, c: Collections) -> None:
        ensure_indexes(c.memories, MEMORY_INDEXES)
        self._text_search = self._text_built = create_text_index(c.memories, self._where)
        ensure_indexes(c.events, EVENT_INDEXES)
        ensure_indexes(c.sessions, SESSION_INDEXES)
        ensure_indexes(c.runs, RUN_INDEXES)
        self._unique_run_ids(c.runs)

    def _check_schema(self, c: Collections) -> None:
        """Create the indexes again where the collections lost them (the database dropped,
        or restored without them, under the running process; see SchemaWatch)."""
        from pymongo.errors import OperationFailure, PyMongoError

        with self._lock:
            if not self.schema_watch.claim():
                return  # another thread checks them
        try:
            lost = schema_lost(c, self._text_built)
        except PyMongoError:
            self.schema_watch.doubt()
            raise
        if not lost:
            return
        logger.warning(
            "MongoDB at %s: the indexes %s are gone (the database dropped, or restored without "
            "them?): creating them again",
            self._where,
            ", ".join(lost),
        )
        try:
            self._create_indexes(c)
        except OperationFailure as exc:  # the data now breaks a unique index: said, kept
            logger.warning("MongoDB at %s: the indexes could not be created: %s", self._where, exc)

    # -- MemoryStore ------------------------------------------------------------------

    def upsert_memories(
        self, memories: Sequence[UserMemory], *, audit: AuditContext | None = None
    ) -> None:
        context = resolve_audit(audit)
        docs = memory_docs(memories)
        if not docs:
            return
        with self._db() as db, self._bumped(db, ((d["user_id"], d["_id"]) for d in docs)):
            # (not in a transaction: a duplicate id there would abort it)
            if len(docs) == 1 and bound() is None and self._insert_new(db, docs[0], context):
                return
            stored = self._stored(db.memories, list(dict.fromkeys(d["_id"] for d in docs)))
            self._write(db, plan_upsert(docs, stored), context)

    @contextmanager
    def _bumped(self, db: Collections, written: Iterable[tuple[str, str | None]]) -> Iterator[None]:
        """Move on the generation of each user of ``written`` (user_id, memory_id pairs;
        memory_id None when not known) after the block, which writes their memories or
        embeddings: also when it fails part-way (it may have written some). Inside a
        batch (:meth:`_moved_once`) the batch moves them once, after all its writes."""
        held = batch_written.get()
        ids: dict[str, list[str] | None] = {} if held is None else held
        for user_id, memory_id in written:
            listed = ids.setdefault(user_id, [])
            if listed is not None:
                if memory_id is None:
                    ids[user_id] = None
                else:
                    listed.append(memory_id)
        if held is not None:
            yield
            return
        try:
            yield
        finally:
            self._move_on(db, ids)

    def _move_on(self, db: Collections, ids: dict[str, list[str] | None]) -> None:
        """One update of each user's generation, in bulk writes of 1000, logging the ids
        written (None: not known; see search.bump)."""
        from pymongo import UpdateOne

        users = list(ids)
        if len(users) == 1:
            update = bump(ids[users[0]])
            one = db.generations.update_one({"_id": users[0]}, update, upsert=True, session=bound())
            if one.upserted_id is not None:  # a new user, or the data was lost
                self.schema_watch.doubt()
            return
        ops = [UpdateOne({"_id": u}, bump(ids[u]), upsert=True) for u in users]
        for start in range(0, len(ops), _BATCH):
            chunk = ops[start : start + _BATCH]
            if db.generations.bulk_write(chunk, ordered=False, session=bound()).upserted_count:
                self.schema_watch.doubt()

    def _moved_once(self, batch: WriteBatch, audit: AuditContext | None) -> list[UserMemory]:
        """The batch's changes, with its user's generation moved once after them all (and
        after those it made when one fails): one write in the change log, one round trip,
        however many memories the batch changes."""
        ids: dict[str, list[str] | None] = {}
        token = batch_written.set(ids)
        try:
            return write_batch(self, batch, audit)
        finally:
            batch_written.reset(token)
            if ids:
                with self._db() as db:
                    self._move_on(db, ids)

    def _insert_new(self, db: Collections, doc: Doc, context: AuditContext) -> bool:
        """Insert one memory if its id is not stored yet (the usual case: one round trip
        where checking first would take two); False when it is, having written nothing."""
        from pymongo.errors import DuplicateKeyError

        try:
            db.memories.insert_one(doc)
        except DuplicateKeyError:
            return False
        changes = additions([(doc["_id"], doc["user_id"], doc["memory"], doc["topics"])])
        self._record(db, changes, context, now_micros())
        return True

    def _stored(self, memories: Collection[Doc], ids: list[str]) -> dict[str, Doc]:
        """What the history and the ownership check need of the stored ones of ``ids``."""
        stored: dict[str, Doc] = {}
        for start in range(0, len(ids), _BATCH):
            query = {"_id": {"$in": ids[start : start + _BATCH]}}
            found = memories.find(query, _STORED_SIDE, session=bound())
            stored.update((doc["_id"], doc) for doc in found)
        return stored

    def _write(
        self,
        db: Collections,
        plan: list[tuple[InsertOne[Doc] | UpdateOne, Change[list[str]]]],
        context: AuditContext,
    ) -> None:
        """Apply planned writes in ordered bulk writes, each followed by its events."""
        from pymongo.errors import BulkWriteError

        stamp = now_micros()
        for start in range(0, len(plan), _BATCH):
            chunk = plan[start : start + _BATCH]
            try:
                db.memories.bulk_write([op for op, _ in chunk], ordered=True, session=bound())
            except BulkWriteError as exc:
                failure = exc.details["writeErrors"][0]
                done = int(failure["index"])
                self._record(db, [change for _, change in chunk[:done]], context, stamp, start)
                if failure.get("code") != 11000:  # not a duplicate id: a server fault
                    raise
                memory_id = chunk[done][1].memory_id
                raise ConflictError(
                    f"memory_id {memory_id!r} was stored by another writer meanwhile; "
                    f"{start + done} of {len(plan)} memories were written"
                ) from exc
            self._record(db, [change for _, change in chunk], context, stamp, start)

    def _record(
        self,
        db: Collections,
        changes: Sequence[Change[list[str]]],
        context: AuditContext,
        stamp: int,
        first: int = 0,
    ) -> None:
        """Insert one event per change; ``seq`` keeps the order of one write's events."""
        if changes:
            docs = event_docs(changes, context, stamp, first)
            db.events.insert_many(docs, session=bound())
            undo.note_events(docs)

    def write_batch(
        self, batch: WriteBatch, *, audit: AuditContext | None = None
    ) -> list[UserMemory]:
        """The batch in one transaction where the deployment has them (a replica set, a
        sharded cluster); else its changes one after another, and if one fails, the
        memories the batch changed are put back as they were, and its events of them
        removed, before the error is raised (see :mod:`noted.db.mongodb.undo`)."""
        with self._db() as db:
            if self.capabilities.transactions:
                client = db.memories.database.client
                return in_transaction(client, lambda: self._moved_once(batch, audit))
            before = undo.prepare(db.memories, batch)
        try:
            with undo.recording(before):
                return self._moved_once(batch, audit)
        except Exception as exc:  # a fault or a refusal; the process lives on to undo it
            self._undo(before, exc)
            raise

    def _has_transactions(self, client: MongoClient[Doc]) -> bool:
        """Whether the deployment runs multi-document transactions (asked once)."""
        return has_transactions(deployment(client))

    def _undo(self, before: undo.Undo, failure: BaseException) -> None:
        """Undo a failed batch; if that fails too (the server is gone), say so on the
        batch's error, which is raised either way."""
        try:
            with self._db() as db, self._bumped(db, [(before.user_id, None)]):
                kept = undo.restore(db.memories, db.events, before)
        except StoreError as exc:
            logger.warning("a failed batch could not be undone: %s", exc)
            failure.add_note(f"the batch could not be undone, part of it may be written: {exc}")
            return
        if kept:
            failure.add_note(
                f"memories changed by another writer meanwhile kept that writer's version: "
                f"{', '.join(map(repr, kept))}"
            )

    def memory_owners(self, memory_ids: Sequence[str]) -> dict[str, str]:
        with self._db() as db:
            stored = self._stored(db.memories, list(dict.fromkeys(memory_ids)))
        return {memory_id: doc["user_id"] for memory_id, doc in stored.items()}

    def memory_times(self, memory_ids: Sequence[str], user_id: str) -> dict[str, int]:
        """Read in the batch's transaction where there is one (another writer's change of
        these memories before it commits fails it, and it is run again); without one, the
        check and the write are two steps, milliseconds apart."""
        with self._db() as db:
            found = db.memories.find(
                {"_id": {"$in": list(dict.fromkeys(memory_ids))}, "user_id": user_id},
                {"updated_at": 1},
                session=bound(),
            )
            return {str(doc["_id"]): int(doc["updated_at"]) for doc in found}

    def update_memory(
        self, memory: UserMemory, *, audit: AuditContext | None = None
    ) -> UserMemory | None:
        """Overwrite the memory if it is still the version read: another writer's change
        in between sends this one back to read again. Each version's event is stamped
        after the one before it (even across machines with skewed clocks), so the last
        event in the history always describes the memory as it is."""
        context = resolve_audit(audit)
        (doc,) = memory_docs([memory])
        key = {"_id": doc["_id"], "user_id": doc["user_id"]}
        given = dict(doc)
        waited_until = time.monotonic() + _CLAIM_WAIT_S
        with self._db() as db:
            while True:
                current = db.memories.find_one(key, session=bound())
                if current is None:
                    return None
                if _claimed(current, now_micros()):
                    # a delete is under way: it comes first, and the memory is gone after it
                    if time.monotonic() > waited_until:
                        raise ConflictError(
                            f"memory {doc['_id']!r} is being deleted by another writer"
                        )
                    time.sleep(0.002)
                    continue
                doc.update(replaced_fields(given, current))
                version = current.get("version")
                stamp = max(now_micros(), int(current.get("changed_at") or 0) + 1)
                doc["version"] = (version or 0) + 1
                doc["changed_at"] = stamp
                stored = (current["memory"], sound_topics(current))
                change = replacement(
                    doc["_id"], doc["user_id"], stored, doc["memory"], doc["topics"]
                )
                update = overwrite(doc, current, clears_embedding(change))
                with self._bumped(db, [(doc["user_id"], doc["_id"])]):
                    written = db.memories.update_one(
                        {**key, "version": version}, update, session=bound()
                    ).matched_count
                if written:
                    break
            self._record(db, [change], context, stamp)
        return memories_of([doc])[0]

    def set_embeddings(self, model: str, items: Sequence[tuple[UserMemory, QueryVector]]) -> int:
        from pymongo import UpdateOne

        ops = [
            UpdateOne(
                {"_id": m.memory_id, "user_id": m.user_id, "memory": m.memory},
                {
                    "$set": {
                        "embedding": vector_value(to_blob(check_vector(vector))),
                        "embedding_model": model,
                    }
                },
            )
            for m, vector in items
        ]
        if not ops:
            return 0
        written = ((m.user_id, m.memory_id) for m, _ in items if m.user_id is not None)
        with self._db() as db, self._bumped(db, written):
            return sum(
                db.memories.bulk_write(ops[i : i + _BATCH], ordered=False).matched_count
                for i in range(0, len(ops), _BATCH)
            )

    # -- deletes ------------------------------------------------------------------------------

    def _delete(self, db: Collections, query: Doc, context: AuditContext) -> int:
        """Delete the memories ``query`` selects, recording a "delete" event for each one
        this call deleted. Each chunk is claimed first (a token set where no live claim
        is, and the version moved on, so a replace that read before reads again), then
        read back by its token and deleted by it: a memory another writer deleted or
        claimed meanwhile is that writer's to record, and an event holds the text that
        was deleted. A claim left by a process that stopped before deleting lapses after
        _CLAIM_LIFETIME_US."""
        found = sorted(
            db.memories.find(query, _CANDIDATE, session=bound()),
            key=lambda d: (d["created_at"], d["_id"]),
        )
        stamp = now_micros()
        unclaimed = [{_CLAIM: {"$exists": False}}, {_CLAIM_AT: {"$lt": stamp - _CLAIM_LIFETIME_US}}]
        deleted = 0
        with self._bumped(db, ((doc["user_id"], doc["_id"]) for doc in found)):
            for start in range(0, len(found), _BATCH):
                ids = [doc["_id"] for doc in found[start : start + _BATCH]]
                token = new_event_ids(1)[0]
                claim = {"$set": {_CLAIM: {"token": token, "at": stamp}}, "$inc": {"version": 1}}
                chosen = {**query, "_id": {"$in": ids}, "$or": unclaimed}
                db.memories.update_many(chosen, claim, session=bound())
                mine = {"_id": {"$in": ids}, f"{_CLAIM}.token": token}
                claimed = sorted(
                    db.memories.find(mine, _DELETED_SIDE, session=bound()),
                    key=lambda d: (d["created_at"], d["_id"]),
                )
                db.memories.delete_many(mine, session=bound())
                changes = deletions(
                    (d["_id"], d["user_id"], d["memory"], sound_topics(d)) for d in claimed
                )
                # after the last change of what it deleted, made even after the delete began
                last = max((int(d.get("changed_at") or 0) for d in claimed), default=0)
                self._record(db, changes, context, max(stamp, last + 1), deleted)
                deleted += len(claimed)
        return deleted

    def _delete_ids(self, ids: list[str], user_id: str, context: AuditContext) -> int:
        deleted = 0
        with self._db() as db:
            for start in range(0, len(ids), _BATCH):
                query = {"user_id": user_id, "_id": {"$in": ids[start : start + _BATCH]}}
                deleted += self._delete(db, query, context)
        return deleted

    def _delete_all(self, user_id: str | None, context: AuditContext) -> int:
        with self._db() as db:
            return self._delete(db, {} if user_id is None else {"user_id": user_id}, context)
