"""MongoDb's searches: the server's ``$text`` and Atlas ``$vectorSearch`` when it has
them, and each user's memories loaded for the searches run in Python (see MongoDb's notes
on the search cache)."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final, Protocol

from noted._time import to_micros
from noted.db._client_search import SnapshotCache, UserSnapshot
from noted.db.base import MemoryQuery, QueryVector, ScoredMemory
from noted.db.mongodb.docs import doc_vector, memories_of, query_filter, user_vectors
from noted.db.mongodb.server import NO_VECTOR, VectorIndex, atlas_pipeline
from noted.schema import UserMemory

if TYPE_CHECKING:
    from pymongo.collection import Collection

__all__ = [
    "SearchedCollections",
    "atlas_search",
    "batch_written",
    "bump",
    "created_order",
    "kept_snapshot",
    "load_snapshot",
    "stamp",
    "text_query",
]

logger = logging.getLogger("noted.db.mongodb")

Doc = dict[str, Any]

# A user's memories as searches cache them: oldest first (the user_created index, reversed)
_LOAD_ORDER: Final = [("created_at", 1), ("_id", 1)]
# the users a batch in progress wrote, and their memory ids: their generations move after
# the batch (see MongoDb._moved_once), so its reads ask the server, not a snapshot
batch_written: ContextVar[dict[str, list[str] | None] | None] = ContextVar(
    "noted_mongo_batch_written", default=None
)


class SearchedCollections(Protocol):
    """Where a store keeps its memories and each user's generation."""

    @property
    def memories(self) -> Collection[Doc]: ...

    @property
    def generations(self) -> Collection[Doc]: ...


def load_snapshot(
    db: SearchedCollections, cache: SnapshotCache, user_id: str, *, vectors: bool
) -> UserSnapshot:
    """The user's memories, with all their vectors when ``vectors``: the cached snapshot
    while it was loaded at the user's generation (one find_one of a small document);
    after writes the user's change log names, the cached one with only those memories
    read again; else loaded now. Either is cached under the generation read before."""
    cached = cache.get(user_id)
    if cached is not None and (cached.vectors is not None or not vectors):
        found = db.generations.find_one({"_id": user_id}, _WITHOUT_LOG)
        if _is_current(cached, found):
            return cached
    with cache.refreshing(user_id):  # one search of the user's reads the change
        return _refreshed(db, cache, user_id, vectors)


def kept_snapshot(
    db: SearchedCollections, cache: SnapshotCache, user_id: str
) -> UserSnapshot | None:
    """The user's cached snapshot at the user's generation now, where that takes no read
    of all their memories as a rule (one find_one of a small document, and the memories
    written since when the change log names them); None when none is cached, or when it
    could only be read whole again (see ``UserSnapshot.patchable``)."""
    cached = cache.get(user_id)
    if cached is None:
        return None
    if not cached.patchable:
        found = db.generations.find_one({"_id": user_id}, _WITHOUT_LOG)
        return cached if _is_current(cached, found) else None
    return load_snapshot(db, cache, user_id, vectors=False)


def _refreshed(
    db: SearchedCollections, cache: SnapshotCache, user_id: str, vectors: bool
) -> UserSnapshot:
    """load_snapshot's answer when its cached one would not do (see there)."""
    found = db.generations.find_one({"_id": user_id}, _WITHOUT_LOG)
    generation = stamp(found)
    cached = cache.get(user_id)
    if cached is not None and (cached.vectors is not None or not vectors):
        if _is_current(cached, found):
            return cached
        patched = _patched(db, cached, user_id) if cached.patchable else None
        if patched is not None:
            cache.put(user_id, patched)
            return patched
    cursor = db.memories.find({"user_id": user_id}, None if vectors else NO_VECTOR)
    docs = list(cursor.sort(_LOAD_ORDER))
    shapes = user_vectors(generation, docs) if vectors else None
    snapshot = UserSnapshot(
        generation, memories_of(docs), shapes, token=_token_of(found), ordered_by="created_at"
    )
    cache.put(user_id, snapshot)
    return snapshot


# -- the change log ------------------------------------------------------------------------
#
# Each write moves its users' generation on and, in the same update, counts it in
# ``logged``, names it by a new ``token`` and appends "<token> <ids>" to ``log`` (the last
# LOG_KEPT; the ids written as JSON, "*" when they are unknown or more than LOG_IDS). A
# store of an older version moves ``generation`` alone; so when both moved by the same n
# since a snapshot was read, and the log still holds the write the snapshot was read at
# (its token: writes the server lost, and new ones that took their generations, have
# others), the log's last n entries name every write since, and only those memories are
# read again.
LOG_KEPT: Final = 64  # a manager's batch of a few dozen changes stays patchable
LOG_IDS: Final = 256
_PACKED: Final = 2**40  # a snapshot's generation is generation * _PACKED + logged
_WITHOUT_LOG: Final = {"log": 0}


def bump(memory_ids: Sequence[str] | None) -> dict[str, Any]:
    """The update that moves a user's generation on after a write of ``memory_ids``
    (None: not known)."""
    unique = None if memory_ids is None else list(dict.fromkeys(memory_ids))
    listed = unique is not None and len(unique) <= LOG_IDS
    token = secrets.token_hex(8)
    entry = f"{token} {json.dumps(unique, ensure_ascii=False) if listed else '*'}"
    return {
        "$inc": {"generation": 1, "logged": 1},
        "$set": {"token": token},
        "$push": {"log": {"$each": [entry], "$slice": -LOG_KEPT}},
    }


def stamp(found: Mapping[str, Any] | None) -> int:
    """The generation a snapshot is kept under: the user's generation with how many of
    its moves were logged (0 when the user has none)."""
    if found is None:
        return 0
    return int(found["generation"]) * _PACKED + int(found.get("logged", 0))


def _token_of(found: Mapping[str, Any] | None) -> str:
    """The token of the write that made a user's generation ("" when none says)."""
    return "" if found is None else str(found.get("token", ""))


def _is_current(cached: UserSnapshot, found: Mapping[str, Any] | None) -> bool:
    """Whether ``cached`` was read at the user's generation now (``found``, the user's
    generation document): the same generation, made by the same write. The generation
    alone can come back after the server lost the user's writes (the database restored
    from a backup, dropped, or a primary's writes rolled back in a failover): generations
    start again from 1, and the next writes take the numbers the lost ones had, but each
    write's token is new."""
    return cached.generation == stamp(found) and cached.token == _token_of(found)


def _patched(db: SearchedCollections, cached: UserSnapshot, user_id: str) -> UserSnapshot | None:
    """``cached`` at the user's generation now, its memories written since read again;
    None when the log does not name every write since that of ``cached.token``."""
    found = db.generations.find_one({"_id": user_id})
    now = stamp(found)
    moves, logged = divmod(now, _PACKED)
    was_moves, was_logged = divmod(cached.generation, _PACKED)
    count = moves - was_moves
    entries = [str(entry).split(" ", 1) for entry in (found or {}).get("log") or ()]
    if not cached.token or count < 1 or count != logged - was_logged:
        return None
    if count + 1 > len(entries) or entries[-count - 1][0] != cached.token:
        return None
    ids: set[str] = set()
    for _, listed in entries[len(entries) - count :]:
        if listed == "*":
            return None
        ids.update(json.loads(listed))
    wanted = {"_id": {"$in": sorted(ids)}, "user_id": user_id}
    docs = list(db.memories.find(wanted, None if cached.vectors is not None else NO_VECTOR))
    return cached.patched(
        now,
        ids,
        memories_of(docs),
        [doc_vector(doc) for doc in docs],
        created_order,
        every_shape=True,
        token=entries[-1][0],
    )


def created_order(memory: UserMemory) -> tuple[int, str]:
    """Where a memory stands in a loaded snapshot: by created_at, then by id (_LOAD_ORDER;
    the server compares strings bytewise, and UTF-8 keeps code point order)."""
    created = memory.created_at
    return (0 if created is None else to_micros(created), memory.memory_id or "")


def text_query(
    memories: Collection[Doc], query: MemoryQuery, words: list[str], where: str
) -> list[ScoredMemory] | None:
    """The server's $text answer, or None if the server refuses $text (said once here;
    the store then searches in Python from now on). The words hold letters and digits
    only: no quote, ``-`` or phrase syntax."""
    from pymongo.errors import OperationFailure

    score = {"$meta": "textScore"}
    try:
        cursor = (
            memories.find(
                {**query_filter(query), "$text": {"$search": " ".join(words)}},
                {**NO_VECTOR, "_score": score},
            )
            .sort([("_score", score), ("_id", 1)])
            .skip(query.offset)
        )
        if query.limit is not None:
            cursor = cursor.limit(query.limit)
        docs = list(cursor)
    except OperationFailure as exc:
        logger.warning(
            "MongoDB at %s refused a $text query (%s): keyword search runs BM25 in Python "
            "from now on",
            where,
            exc,
        )
        return None
    found = memories_of(docs)
    return [ScoredMemory(m, float(doc["_score"])) for m, doc in zip(found, docs, strict=True)]


def atlas_search(
    memories: Collection[Doc],
    index: VectorIndex,
    query: MemoryQuery,
    target: QueryVector,
    model: str,
    where: str,
) -> list[ScoredMemory] | None:
    """The best memories by Atlas $vectorSearch, or None if it fails (said once here; the
    store then searches in Python from now on). Atlas scores cosine and dot product as
    (1 + x) / 2; they are given back as x."""
    from pymongo.errors import OperationFailure

    pipeline = atlas_pipeline(index, query, target, model)
    try:
        docs = list(memories.aggregate(pipeline))[query.offset :]
    except OperationFailure as exc:
        logger.warning(
            "MongoDB at %s refused $vectorSearch (%s): semantic search runs in Python from now on",
            where,
            exc,
        )
        return None
    return [
        ScoredMemory(m, 2.0 * float(doc["_score"]) - 1.0)
        for m, doc in zip(memories_of(docs), docs, strict=True)
    ]
