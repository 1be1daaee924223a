"""What a user's change log says was written since a generation of theirs.

Every script that changes a user's memories or embeddings moves the user's generation on
and appends ``"<generation> <token> <ids>"`` to the user's log (``M:chg:<n>:<user_id>``,
the last 16 writes, for an hour after the user's last write; ``*`` for ids too many to
list; the token is the server's time). A reader holding the user's memories at generation
``g``, made by the write of token ``t``, asks CHANGES_LUA what changed since: when the log
still holds that write, then each generation after ``g`` in turn, only the memories those
writes name are read again, and the held copy is brought up to date with them; when it
does not (a write by an older version of this store, a log trimmed or expired, a lost
generation, or writes the server lost and new ones that took their generations: the
write at ``g`` then has another token), everything is read again, as without the log.
A copy is patched for at most a minute after it was read whole (see PATCHED_FOR).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from noted._time import to_micros
from noted.db._rows import rows_to_memories
from noted.retrieval.vectors import Vector, from_blobs
from noted.schema import UserMemory

__all__ = ["Changes", "mark_of", "read_changes", "script_memories", "upd_order"]


@dataclass(frozen=True, slots=True)
class Changes:
    """What was written to a user's memories up to ``generation``: the ids written
    (``ids``) and, of those, the user's memories now. ``rows`` and ``vectors`` (each
    row's embedding model and vector, or None) when the rows were asked for; else
    ``models``, each such memory's embedding model (None for none)."""

    generation: int
    token: str  # of the write that made ``generation`` ("" when nothing changed)
    ids: frozenset[str]
    rows: list[UserMemory]
    vectors: list[tuple[str, Vector] | None]
    models: dict[str, str | None]


def mark_of(generation: bytes | None, last_entry: bytes | None) -> tuple[int, str]:
    """A user's generation (0 for none) and the token of the write that made it, from
    the generation key and the last entry of the change log ("" when that entry is not
    the write's: a log expired, or a write by an older version of this store).

    The generation alone does not tell a copy read before the server lost writes from
    the user's memories now: a server restarted on an older snapshot (RDB, an AOF synced
    a second ago) or a replica promoted without the last writes goes back to an older
    generation, and the next writes take the generations the lost ones had. The token,
    the server's time at the write, is another then."""
    now = int(generation or 0)
    if last_entry is None:
        return now, ""
    made, _, rest = last_entry.decode().partition(" ")
    return now, (rest.partition(" ")[0] if made == str(now) else "")


def read_changes(reply: Sequence[Any], *, rows: bool) -> Changes | None:
    """CHANGES_LUA's reply (asked for 'rows' or 'models'), or None when the log does not
    name every write since the generation given."""
    generation, status = int(reply[0]), reply[1]
    if status == b"unknown":
        return None
    if status == b"same":
        return Changes(generation, "", frozenset(), [], [], {})
    token = reply[2].decode()
    ids = frozenset(json.loads(reply[3]))
    found = json.loads(reply[4])
    if not rows:
        return Changes(generation, token, ids, [], [], {i: by for i, by in found})
    memories = script_memories(found)
    held = reply[5:]
    vectors = [_vector(held[2 * k], held[2 * k + 1]) for k in range(len(memories))]
    return Changes(generation, token, ids, memories, vectors, {})


def script_memories(rows: Sequence[Sequence[Any]]) -> list[UserMemory]:
    """Memories from a read script's JSON rows: id, then the hash's fields in COLUMNS
    order (and anything after them, ignored here)."""
    return rows_to_memories(
        [(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], int(r[8]), int(r[9])) for r in rows]
    )


def _vector(model: bytes, blob: bytes) -> tuple[str, Vector] | None:
    if not model or not blob or len(blob) % 4:
        return None
    return model.decode(), from_blobs([blob], len(blob) // 4)[0]


def upd_order(memory: UserMemory) -> tuple[int, str]:
    """Where a memory stands in the user's M:upd set: by updated_at, then by id (a
    sorted set orders equal scores by member, bytewise; UTF-8 keeps code point order)."""
    updated = memory.updated_at
    return (0 if updated is None else to_micros(updated), memory.memory_id or "")
