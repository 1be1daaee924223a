"""Create memories from a message with the memory manager (one model call).

NOTED_MODEL=openai:gpt-4o-mini scripts/uv.sh run python examples/create_memories_from_message.py
"""

from _model import example_model

from noted import Memory, SqliteDb

memory_db = SqliteDb(memory_table="memory", db_file="tmp/memory.db", create_dirs=True)
memory = Memory(model=example_model("google:gemini-2.0-flash"), db=memory_db)

john_doe_id = "john_doe@example.com"
memory.clear(user_id=john_doe_id)

memory.create_user_memories(
    message="""
I enjoy hiking in the mountains on weekends,
reading science fiction novels before bed,
cooking new recipes from different cultures,
playing chess with friends,
and attending live music concerts whenever possible.
Photography has become a recent passion of mine, especially capturing landscapes and street scenes.
I also like to meditate in the mornings and practice yoga to stay centered.
""",
    user_id=john_doe_id,
)

memories = memory.get_user_memories(user_id=john_doe_id)
print("John Doe's memories:")
for i, m in enumerate(memories):
    print(f"{i}: {m.memory} - {m.topics}")
