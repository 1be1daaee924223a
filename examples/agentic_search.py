"""Agentic search: the model picks the memories that answer a question, by meaning.

NOTED_MODEL=openai:gpt-4o-mini scripts/uv.sh run python examples/agentic_search.py
"""

from _model import example_model

from noted import Memory, UserMemory

# Initialize memory with a model for agentic search
memory = Memory(model=example_model("google:gemini-2.0-flash"))

john_doe_id = "john_doe@example.com"

memory.add_user_memory(
    memory=UserMemory(memory="The user enjoys hiking in the mountains on weekends"),
    user_id=john_doe_id,
)
memory.add_user_memory(
    memory=UserMemory(memory="The user enjoys reading science fiction novels before bed"),
    user_id=john_doe_id,
)

# Search for memories related to the query
memories = memory.search_user_memories(
    user_id=john_doe_id,
    query="What does the user like to do on weekends?",
    retrieval_method="agentic",
)
print("John Doe's found memories:")
for i, m in enumerate(memories):
    print(f"{i}: {m.memory}")
