"""Undoing a batch that failed part-way on a MongoDB server without multi-document
transactions.

Before a batch is written, :func:`prepare` reads every memory it can touch as it is (whole
documents: text, times, embedding, version). While it is written, :func:`recording`
collects the history events it records. If a write fails, :func:`restore` puts back, one
document at a time, each memory the batch changed, and removes the batch's events of those
memories, so that the memories and their history are as before the batch.

Another writer's change is never undone: a memory is restored only while it is still as
this batch wrote it (its text and ``updated_at``, on a conditional write) or still deleted
by it; a memory another writer changed meanwhile keeps that writer's version and this
batch's events, so its last history event still describes its current text. A restored
memory's ``version`` moves on, so a compare-and-set replace that read the batch's version
reads again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from noted._time import now_micros, to_micros
from noted.db._rows import stamped_keys
from noted.db.base import WriteBatch
from noted.db.mongodb.docs import vector_bytes, vector_value

if TYPE_CHECKING:
    from pymongo.collection import Collection

__all__ = ["Undo", "prepare", "recording", "restore"]

Doc = dict[str, Any]

_BATCH: Final = 1000  # ids per "$in" list
_SIDE: Final = {"user_id": 1, "memory": 1, "updated_at": 1}
# fields a write adds that a restored document may not have had
_OPTIONAL: Final = ("embedding", "embedding_model", "changed_at")

# (event id, memory id) of each history event recorded by the batch being written
_recorded: ContextVar[list[tuple[str, str]] | None] = ContextVar(
    "noted_mongo_recorded", default=None
)


@dataclass(slots=True)
class Undo:
    """What a batch can change, read before it is written."""

    user_id: str
    before: dict[str, Doc]  # each memory the batch can touch, whole, as it was
    deleted: set[str]  # the ids the batch deletes (its clear, its deletes)
    written: dict[str, set[tuple[str, int]]]  # id -> (text, updated_at) the batch writes
    events: list[tuple[str, str]] = field(default_factory=list)


def prepare(memories: Collection[Doc], batch: WriteBatch) -> Undo:
    """The state the batch's memories are in before it is written (one ``find`` per 1,000
    ids; a clear reads all of the user's memories)."""
    written: dict[str, set[tuple[str, int]]] = {}
    for m in (*batch.updates, *batch.adds):
        memory_id, _ = stamped_keys(m)
        assert m.updated_at is not None
        written.setdefault(memory_id, set()).add((m.memory, to_micros(m.updated_at)))
    before: dict[str, Doc] = {}
    if batch.clear:
        before.update((d["_id"], d) for d in memories.find({"user_id": batch.user_id}))
    ids = [i for i in dict.fromkeys([*batch.deletes, *written]) if i not in before]
    for start in range(0, len(ids), _BATCH):
        query = {"user_id": batch.user_id, "_id": {"$in": ids[start : start + _BATCH]}}
        before.update((d["_id"], d) for d in memories.find(query))
    deleted = set(batch.deletes) | (set(before) if batch.clear else set())
    return Undo(batch.user_id, before, deleted, written)


@contextmanager
def recording(undo: Undo) -> Iterator[None]:
    """Collect into ``undo.events`` the events :func:`note_events` is told of meanwhile (in
    this thread or task only)."""
    token = _recorded.set(undo.events)
    try:
        yield
    finally:
        _recorded.reset(token)


def note_events(docs: list[Doc]) -> None:
    """Tell the batch being written, if any, of the events just inserted."""
    events = _recorded.get()
    if events is not None:
        events.extend((doc["_id"], doc["memory_id"]) for doc in docs)


def restore(memories: Collection[Doc], events: Collection[Doc], undo: Undo) -> list[str]:
    """Put the batch's memories back as :func:`prepare` read them and remove its events of
    them; the ids left as another writer made them meanwhile are returned."""
    from pymongo.errors import DuplicateKeyError

    touched = list(dict.fromkeys([*undo.before, *undo.written]))
    now: dict[str, Doc] = {}
    for start in range(0, len(touched), _BATCH):
        query = {"_id": {"$in": touched[start : start + _BATCH]}}
        now.update((d["_id"], d) for d in memories.find(query, _SIDE))
    kept: list[str] = []
    for memory_id in touched:
        was, current = undo.before.get(memory_id), now.get(memory_id)
        if _same(was, current):
            continue
        if current is None:  # deleted: by this batch, or by another writer meanwhile
            if was is not None and memory_id in undo.deleted:
                try:
                    memories.insert_one(_stored_form(was))
                except DuplicateKeyError:  # written again meanwhile
                    kept.append(memory_id)
            continue
        side = (current.get("memory"), current.get("updated_at"))
        if current.get("user_id") != undo.user_id or side not in undo.written.get(memory_id, ()):
            kept.append(memory_id)  # another writer's version
            continue
        ours = {"_id": memory_id, "user_id": undo.user_id, "memory": side[0], "updated_at": side[1]}
        if was is None:
            done = memories.delete_one(ours).deleted_count
        else:
            done = memories.update_one(ours, _restoring(was)).matched_count
        if not done:  # changed between the read above and this write
            kept.append(memory_id)
    ours_events = [event for event, memory_id in undo.events if memory_id not in kept]
    for start in range(0, len(ours_events), _BATCH):
        events.delete_many({"_id": {"$in": ours_events[start : start + _BATCH]}})
    return kept


def _same(was: Mapping[str, Any] | None, current: Mapping[str, Any] | None) -> bool:
    if was is None or current is None:
        return was is current
    return all(was.get(name) == current.get(name) for name in _SIDE)


def _stored_form(doc: Doc) -> Doc:
    """A document as read, ready to be written again (its embedding a float32 vector)."""
    embedding = doc.get("embedding")
    if isinstance(embedding, bytes):
        return {**doc, "embedding": vector_value(vector_bytes(embedding))}
    return doc


def _restoring(was: Doc) -> Doc:
    """The update that makes a document ``was`` again, its version moved on."""
    fields = {k: v for k, v in _stored_form(was).items() if k not in ("_id", "version")}
    fields["changed_at"] = now_micros()
    update: Doc = {"$set": fields, "$inc": {"version": 1}}
    missing = {name: "" for name in _OPTIONAL if name not in fields}
    if missing:
        update["$unset"] = missing
    return update
