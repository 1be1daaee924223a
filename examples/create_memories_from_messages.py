"""Create memories from a conversation (a list of messages).

NOTED_MODEL=openai:gpt-4o-mini scripts/uv.sh run python examples/create_memories_from_messages.py
"""

from _model import example_model

from noted import Memory, Message, SqliteDb

memory_db = SqliteDb(memory_table="memory", db_file="tmp/memory.db", create_dirs=True)
memory = Memory(model=example_model("google:gemini-2.0-flash"), db=memory_db)

jane_doe_id = "jane_doe@example.com"
memory.clear(user_id=jane_doe_id)

# Send a history of messages and add memories
memory.create_user_memories(
    messages=[
        Message(role="user", content="My name is Jane Doe"),
        Message(role="assistant", content="That is great!"),
        Message(role="user", content="I like to play chess"),
        Message(role="assistant", content="That is great!"),
    ],
    user_id=jane_doe_id,
)

memories = memory.get_user_memories(user_id=jane_doe_id)
print("Jane Doe's memories:")
for i, m in enumerate(memories):
    print(f"{i}: {m.memory} - {m.topics}")
