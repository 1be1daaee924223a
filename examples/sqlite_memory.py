"""Memories in a SQLite file persist across restarts (no model needed).

scripts/uv.sh run python examples/sqlite_memory.py
"""

from noted import Memory, SqliteDb, UserMemory

# Create a SQLite memory database
memory_db = SqliteDb(memory_table="user_memories", db_file="tmp/memory.db", create_dirs=True)

# Initialize Memory with the storage backend
memory = Memory(db=memory_db)

# Add a user memory that will persist across restarts
user_id = "user@example.com"
memory.clear(user_id=user_id)
memory.add_user_memory(
    memory=UserMemory(
        memory="The user prefers dark mode in applications", topics=["preferences", "ui"]
    ),
    user_id=user_id,
)

# Retrieve memories (these will be loaded from the database)
user_memories = memory.get_user_memories(user_id=user_id)
for m in user_memories:
    print(f"Memory: {m.memory}")
    print(f"Topics: {m.topics}")
    print(f"Last Updated: {m.updated_at}")
