"""MongoDb's documents: memories and their changes as BSON documents and back, the
filters of a query, and embeddings as BSON float32 vectors (sessions: mongodb_sessions)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from noted._time import from_micros, to_micros
from noted.audit import AuditContext, MemoryEvent
from noted.db._client_search import Shape
from noted.db._rows import EVENT_COLUMNS, damaged_memory, stamped_keys, value_damage
from noted.db.base import MemoryQuery
from noted.db.core import Change, StoredSide, clears_embedding, history_rows, upsert_changes
from noted.retrieval.vectors import UserVectors, Vector, from_blobs
from noted.schema import UserMemory

if TYPE_CHECKING:
    from bson.binary import Binary
    from pymongo import InsertOne, UpdateOne

Doc = dict[str, Any]

# An embedding is a BSON binary vector (subtype 9) of float32: a 2-byte header (dtype 0x27,
# no padding bits) before the little-endian floats of to_blob, which Atlas can index.
VECTOR_SUBTYPE: Final = 9
FLOAT32_HEADER: Final = b"\x27\x00"


def memory_docs(memories: Iterable[UserMemory]) -> list[Doc]:
    """Stamped memories (ids, users and times set) as documents, without embeddings."""
    from bson.int64 import Int64

    docs: list[Doc] = []
    for m in memories:
        memory_id, user_id = stamped_keys(m)
        assert m.created_at is not None
        assert m.updated_at is not None
        docs.append(
            {
                "_id": memory_id,
                "user_id": user_id,
                "memory": m.memory,
                "topics": list(m.topics),
                "input": m.input,
                "agent_id": m.agent_id,
                "team_id": m.team_id,
                "session_id": m.session_id,
                "created_at": Int64(to_micros(m.created_at)),
                "updated_at": Int64(to_micros(m.updated_at)),
            }
        )
    return docs


def sound_topics(doc: Mapping[str, Any]) -> list[str]:
    """A stored document's topics as a change's history records them: a copy of the list
    of strings, or none when they are damaged (a hand-edited document: a string, an
    object, numbers), which would not be read back."""
    topics: Any = doc.get("topics")
    return list(topics) if value_damage(topics) is None else []


def memories_of(docs: Iterable[Mapping[str, Any]]) -> list[UserMemory]:
    """Memories from documents the store wrote itself (no re-validation): the hot path of
    every large read, so each object is built directly."""
    new = object.__new__
    memories: list[UserMemory] = []
    for doc in docs:
        m = new(UserMemory)
        m.memory = doc["memory"]
        topics = doc.get("topics")
        m.topics = list(topics) if type(topics) is list else []
        m.damaged = None
        m.input = doc.get("input")
        m.memory_id = doc["_id"]
        m.user_id = doc["user_id"]
        m.agent_id = doc.get("agent_id")
        m.team_id = doc.get("team_id")
        m.session_id = doc.get("session_id")
        m.created_at = from_micros(doc["created_at"])
        m.updated_at = from_micros(doc["updated_at"])
        reason = value_damage(topics)  # not a list of strings (a hand-edited document)
        if reason is not None:
            damaged_memory(m, reason)
        memories.append(m)
    return memories


def _embedding(doc: Mapping[str, Any]) -> tuple[str, bytes] | None:
    """A document's embedding model and float32 bytes, if it has a usable one."""
    embedding, model = doc.get("embedding"), doc.get("embedding_model")
    if not isinstance(embedding, bytes) or not isinstance(model, str):
        return None
    raw = vector_bytes(embedding)
    return (model, raw) if raw and len(raw) % 4 == 0 else None


def doc_vector(doc: Mapping[str, Any]) -> tuple[str, Vector] | None:
    """A document's embedding model and vector, if it has a usable one."""
    found = _embedding(doc)
    if found is None:
        return None
    model, raw = found
    return model, from_blobs([raw], len(raw) // 4)[0]


def user_vectors(generation: int, docs: Sequence[Mapping[str, Any]]) -> dict[Shape, UserVectors]:
    """Per (model, dimensions), the vectors of the embedded ones of ``docs`` as one matrix,
    in the docs' order: ``keys`` are their positions in ``docs``."""
    grouped: dict[Shape, tuple[list[int], list[bytes]]] = {}
    for position, doc in enumerate(docs):
        found = _embedding(doc)
        if found is not None:
            model, raw = found
            keys, blobs = grouped.setdefault((model, len(raw) // 4), ([], []))
            keys.append(position)
            blobs.append(raw)
    return {
        shape: UserVectors(generation, np.array(keys, dtype=np.int64), from_blobs(blobs, shape[1]))
        for shape, (keys, blobs) in grouped.items()
    }


def overwrite(doc: Doc, stored: Mapping[str, Any], clear_embedding: bool) -> Doc:
    """The update that makes a stored memory ``doc``: every field set, and the embedding
    removed when the core says so (:func:`~noted.db.core.clears_embedding`), else the
    stored one kept. One update rather than a replacement (nx-27017 cannot store binary in
    a replacement); the embedding kept is written again as read along with the text the
    decision was made on."""
    fields = {name: value for name, value in doc.items() if name != "_id"}
    embedding = stored.get("embedding")
    if not clear_embedding and isinstance(embedding, bytes):
        fields["embedding"] = vector_value(vector_bytes(embedding))
        fields["embedding_model"] = stored.get("embedding_model")
        return {"$set": fields}
    return {"$set": fields, "$unset": {"embedding": "", "embedding_model": ""}}


def plan_upsert(
    docs: list[Doc], stored: dict[str, Doc]
) -> list[tuple[InsertOne[Doc] | UpdateOne, Change[list[str]]]]:
    """Each document's write and history event, in order: an insert for a new id, else an
    overwrite (the same id twice is an add, then an update). The rules are the core's
    (:func:`~noted.db.core.upsert_changes`): ConflictError, before anything is written,
    if an id belongs to another user, stored or earlier in the batch."""
    from pymongo import InsertOne, UpdateOne

    sides = {
        memory_id: StoredSide(doc["user_id"], doc["memory"], sound_topics(doc))
        for memory_id, doc in stored.items()
    }
    entries = ((doc["_id"], doc["user_id"], doc["memory"], doc["topics"]) for doc in docs)
    current = dict(stored)
    plan: list[tuple[InsertOne[Doc] | UpdateOne, Change[list[str]]]] = []
    for doc, change in zip(docs, upsert_changes(entries, sides), strict=True):
        memory_id, user_id = doc["_id"], doc["user_id"]
        op: InsertOne[Doc] | UpdateOne
        if change.event == "add":
            op = InsertOne(doc)
            current[memory_id] = doc
        else:
            update = overwrite(doc, current[memory_id], clears_embedding(change))
            # a new version: a replace that read the one before reads again
            update["$inc"] = {"version": 1}
            # upsert: a memory deleted meanwhile is written again, as a plain upsert would
            op = UpdateOne({"_id": memory_id, "user_id": user_id}, update, upsert=True)
            current[memory_id] = {"_id": memory_id, **update["$set"]}
        plan.append((op, change))
    return plan


def query_filter(query: MemoryQuery) -> Doc:
    """The query's filters as a MongoDB filter (its sort and page are the caller's)."""
    match: Doc = {}
    if query.user_id is not None:
        match["user_id"] = query.user_id
    if query.agent_id is not None:
        match["agent_id"] = query.agent_id
    if query.team_id is not None:
        match["team_id"] = query.team_id
    if query.topics:
        # among an array's strings: a plain $in also matches topics damaged into one string
        match["topics"] = {"$elemMatch": {"$in": list(query.topics)}}
    bounds: Doc = {}
    if query.updated_after is not None:
        bounds["$gte"] = to_micros(query.updated_after)
    if query.updated_before is not None:
        bounds["$lt"] = to_micros(query.updated_before)
    if bounds:
        match["updated_at"] = bounds
    return match


def past_cursor(query: MemoryQuery) -> tuple[Doc, Doc]:
    """The query's ``after`` as two filters (with the query's own): the memories of the
    cursor's very time, whose ids the caller compares, and those strictly past that time.
    Both are an equality or a range on the ``(user_id, time, _id)`` index's time, which
    every server reads from its index: a range on ``_id`` or an ``$or`` is not (the test
    server evaluates those document by document, a page of a large user taking seconds)."""
    assert query.after is not None
    when = to_micros(query.after[0])
    field = query.sort_by
    same = query_filter(query)
    beyond = query_filter(query)
    bounds = beyond.setdefault(field, {})  # with updated_at's bounds, when there are any
    if query.sort_order == "desc":
        bounds["$lt"] = min(when, bounds.get("$lt", when))
    else:
        bounds["$gt"] = when
    if field in same:  # updated_at's own bounds: the cursor's time passes them or nothing does
        same["$and"] = [{field: same.pop(field)}, {field: when}]
    else:
        same[field] = when
    return same, beyond


# The lowest time a memory can have (times are int64 microseconds): ``created_at >=`` it
# holds for every memory, and gives a server's planner a range on ``created_at``.
ANY_TIME: Final = -(2**63)


def unembedded(user_id: str | None, model: str) -> Doc:
    """Memories without an embedding by ``model`` ($ne also matches a missing field)."""
    match: Doc = {"embedding_model": {"$ne": model}}
    if user_id is not None:
        match["user_id"] = user_id
    return match


def unembedded_in_order(user_id: str | None, model: str) -> Doc:
    """:func:`unembedded`, to be read oldest first: for every user, with a condition on
    ``created_at`` that every memory meets, so that the server walks the
    ``(created_at, _id)`` index in order (the test server picks an index only for a
    condition on its field, not for the sort) instead of scanning and sorting the
    collection. One user's are found by its ``(user_id, created_at, _id)`` index."""
    match = unembedded(user_id, model)
    if user_id is None:
        match["created_at"] = {"$gte": ANY_TIME}
    return match


def vector_value(raw: bytes) -> Binary:
    """float32 bytes (as to_blob makes them) as a BSON float32 vector."""
    from bson.binary import Binary

    return Binary(FLOAT32_HEADER + raw, VECTOR_SUBTYPE)


def vector_bytes(value: bytes) -> bytes:
    """The float32 bytes of a stored embedding. A server that keeps a binary's bytes but
    not its subtype (nx-27017) hands the vector header back with them; float32 data alone
    is a multiple of 4 bytes long, so the 2-byte header always shows."""
    raw = bytes(value)
    return raw[len(FLOAT32_HEADER) :] if len(raw) % 4 == len(FLOAT32_HEADER) else raw


def event_docs(
    changes: Sequence[Change[list[str]]], context: AuditContext, stamp: int, first: int = 0
) -> list[Doc]:
    """One history document per change (the core's event rows, ``_id`` the event id), all
    written at ``stamp`` (microseconds); ``seq`` keeps their order from ``first`` on."""
    from bson.int64 import Int64

    return [
        {"_id": row[0], **dict(zip(EVENT_COLUMNS[1:], row[1:], strict=True)), "seq": first + i}
        for i, row in enumerate(history_rows(changes, context, Int64(stamp)))
    ]


def event_of(doc: Mapping[str, Any]) -> MemoryEvent:
    return MemoryEvent(
        doc["_id"],
        doc["memory_id"],
        doc["user_id"],
        doc["event"],
        doc["old_memory"],
        doc["new_memory"],
        doc["old_topics"],
        doc["new_topics"],
        doc["actor"],
        doc["session_id"],
        doc["run_id"],
        from_micros(doc["created_at"]),
    )
