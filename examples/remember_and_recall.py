"""Remember facts about users in one process, recall them in another.

    scripts/uv.sh run python examples/remember_and_recall.py remember  # one process stores
    scripts/uv.sh run python examples/remember_and_recall.py recall    # another reads it back

Both processes open the same SQLite file, so what the first one learned outlives it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from noted import Memory, SqliteDb, UserMemory

DB_FILE = Path("tmp/walkthrough.db")
AVA = "ava"
JOHN = "john_doe@example.com"


def open_memory() -> Memory:
    # by default memories are also searchable by meaning, with a small embedding
    # model that runs on this machine (no API key, no download)
    return Memory(db=SqliteDb(db_file=DB_FILE, create_dirs=True))


def remember() -> None:
    memory = open_memory()
    memory.clear(user_id=AVA)
    memory.clear(user_id=JOHN)
    print(f"[process {os.getpid()}] remembering facts in {DB_FILE}")
    name_id = memory.add_user_memory(
        memory=UserMemory(memory="The user's name is Ava", topics=["personal", "name"]),
        user_id=AVA,
    )
    memory.add_user_memory(
        memory=UserMemory(memory="The user likes to ski", topics=["hobbies", "sport"]),
        user_id=AVA,
    )
    city_id = memory.add_user_memory(
        memory=UserMemory(memory="The user lives in San Francisco", topics=["location"]),
        user_id=AVA,
    )
    # Ava moved: replace the old fact instead of piling up a contradiction.
    memory.replace_user_memory(
        memory_id=city_id,
        memory=UserMemory(memory="The user lives in Seattle", topics=["location"]),
        user_id=AVA,
    )
    memory.add_user_memories(
        [
            UserMemory(memory="The user enjoys hiking in the mountains on weekends"),
            UserMemory(memory="The user enjoys reading science fiction novels before bed"),
        ],
        user_id=JOHN,
    )
    # Another user's id never matches: John cannot touch Ava's memory.
    assert memory.delete_user_memory(memory_id=name_id, user_id=JOHN) is False
    for stats in memory.get_user_stats():
        print(f"  {stats.user_id}: {stats.memory_count} memories")
    memory.db.close()


def recall() -> None:
    memory = open_memory()
    print(f"[process {os.getpid()}] recalling from {DB_FILE}")
    print("Memories about Ava:")
    for i, m in enumerate(memory.get_user_memories(user_id=AVA, sort_order="asc")):
        print(f"  {i}: {m.memory} - {m.topics}")
    newest = memory.search_user_memories(user_id=JOHN, limit=1, retrieval_method="last_n")
    oldest = memory.search_user_memories(user_id=JOHN, limit=1, retrieval_method="first_n")
    print(f"John Doe's newest memory: {newest[0].memory}")
    print(f"John Doe's oldest memory: {oldest[0].memory}")
    print(f"Topics: {', '.join(memory.get_topics())}")
    for user, question in ((AVA, "Which city is her home?"), (JOHN, "What does he do to relax?")):
        # hybrid search (meaning and words): the default for a query with an embedder
        found = memory.search_user_memories(query=question, user_id=user)
        best = found[0]
        by_words = memory.search_user_memories(question, user_id=user, retrieval_method="keyword")
        how = (
            "by meaning and words"
            if any(m.memory_id == best.memory_id for m in by_words)
            else "by meaning alone: it shares no word with the question"
        )
        print(f"{question} -> {best.memory} (the best of {len(found)} memories, found {how})")
    memory.db.close()


if __name__ == "__main__":
    steps = {"remember": remember, "recall": recall}
    if len(sys.argv) != 2 or sys.argv[1] not in steps:
        sys.exit(f"usage: {sys.argv[0]} remember|recall")
    steps[sys.argv[1]]()
