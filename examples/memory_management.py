"""Add, replace and delete memories by hand, on a database file (no model needed).

scripts/uv.sh run python examples/memory_management.py
"""

from noted import Memory, SqliteDb, UserMemory

# Create a memory instance with persistent storage
memory_db = SqliteDb(memory_table="memory", db_file="tmp/memory.db", create_dirs=True)
memory = Memory(db=memory_db)
memory.clear(user_id="jane_doe@example.com")

# Create a user memory manually
memory_id = memory.add_user_memory(
    memory=UserMemory(memory="The user's name is Jane Doe", topics=["personal", "name"]),
    user_id="jane_doe@example.com",
)
added = memory.get_user_memory(memory_id, user_id="jane_doe@example.com")
print(f"Added: {added.memory if added else None}")

# Replace a user memory
previous_memory_id = memory_id
memory_id = memory.replace_user_memory(
    # The id of the memory to replace
    memory_id=previous_memory_id,
    # The new memory to replace it with
    memory=UserMemory(memory="The user's name is Verna Doe", topics=["personal", "name"]),
    user_id="jane_doe@example.com",
)
replaced = memory.get_user_memory(memory_id, user_id="jane_doe@example.com")
print(f"Replaced: {replaced.memory if replaced else None}")

# Delete a user memory
memory.delete_user_memory(user_id="jane_doe@example.com", memory_id=memory_id)
print(f"Left: {memory.get_user_memories(user_id='jane_doe@example.com')}")

# Every change is in the memory's history, the deleted one included
for event in memory.get_memory_history(memory_id, user_id="jane_doe@example.com"):
    print(f"{event.event}: {event.old_memory!r} -> {event.new_memory!r}")
