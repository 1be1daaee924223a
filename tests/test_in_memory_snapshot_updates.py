"""InMemoryDb brings a user's kept snapshot up to date after writes with only the memories
they changed: after every kind of write the result must equal a snapshot made afresh."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import numpy as np

from noted._time import utc_now
from noted.db._client_search import UserSnapshot
from noted.db.base import MemoryQuery, WriteBatch
from noted.db.memory import InMemoryDb
from noted.retrieval.vectors import UserVectors
from test_redis_snapshot_updates import state
from test_redisdb import stamped, unit

SHAPES = (("model", 8), ("other", 4))


def kept(db: InMemoryDb, user: str) -> UserSnapshot:
    with db._lock:
        snapshot = db._kept(user)
        assert snapshot is not None
        for shape in SHAPES:
            snapshot = db._with_vectors(user, snapshot, shape)
        return snapshot


def afresh(db: InMemoryDb, user: str) -> UserSnapshot:
    with db._lock:
        made = UserSnapshot(db._changes.get(user, 0), list(db._users.get(user, {}).values()))
        for shape in SHAPES:
            model, size = shape
            keys, rows = [], []
            for position, _, vector in db._held(made.memories, model):
                if vector.size == size:
                    keys.append(position)
                    rows.append(vector)
            matrix = np.stack(rows) if rows else np.empty((0, size), dtype=np.float32)
            made = made.with_vectors(shape, UserVectors(made.generation, np.array(keys), matrix))
        return made


def test_random_writes_keep_the_snapshot_equal_to_one_made_afresh() -> None:
    db = InMemoryDb()
    rng = random.Random(11)
    base = utc_now() - timedelta(days=1)
    users = ("ava", "bob")
    next_id = 0
    patches = 0
    for step in range(300):
        user = rng.choice(users)
        held = list(kept(db, user).memories)
        kind = rng.random()
        if kind < 0.35 or not held:
            adds = []
            for _ in range(rng.choice((1, 1, 3))):
                when = base + timedelta(seconds=rng.randrange(100_000))
                adds.append(stamped(f"{user} fact {next_id}", f"i{next_id:04d}", user, when))
                next_id += 1
            db.upsert_memories(adds)
        elif kind < 0.55:
            chosen = rng.sample(held, min(len(held), 2))
            model, size = rng.choice(SHAPES)
            db.set_embeddings(model, [(m, unit(rng.randrange(1000), size)) for m in chosen])
        elif kind < 0.7:
            target = rng.choice(held)
            text = target.memory if rng.random() < 0.3 else f"{user} edited {step}"
            db.update_memory(stamped(text, target.memory_id or "", user))
        elif kind < 0.8:
            target = rng.choice(held)
            db.write_batch(
                WriteBatch(
                    user,
                    deletes=[target.memory_id or ""],
                    adds=[stamped(f"{user} batch {step}", f"w{step}", user)],
                )
            )
        elif kind < 0.97:
            gone = rng.sample(held, min(len(held), 2))
            db.delete_memories([m.memory_id or "" for m in gone], user)
            if rng.random() < 0.3:  # an id deleted comes back: at the end of the order
                db.upsert_memories([stamped(f"{user} back", gone[0].memory_id or "", user)])
        else:
            db.clear_memories(user)
        for looked in users:
            before = db._snapshots.get(looked)
            got = kept(db, looked)
            patches += before is not None and got is not before
            assert state(got) == state(afresh(db, looked)), step
            text = f"{looked} fact edited {step % 9}"
            query: Any = MemoryQuery(looked, limit=4)
            assert got.keyword(query, text) == afresh(db, looked).keyword(query, text)
    assert next_id > 80 and patches > 100
    assert set(db._made) == set(users)  # each user's snapshot was made once, then patched
    assert all(count <= 2 for count in db._made.values())
