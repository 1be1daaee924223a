"""Automatic memory: the memory manager runs after each response.

NOTED_MODEL=openai:gpt-4o-mini scripts/uv.sh run python examples/create_memories_after_each_run.py
"""

from _model import example_model
from rich.pretty import pprint

from noted import Agent, Memory, SqliteDb

memory_db = SqliteDb(memory_table="memory", db_file="tmp/memory.db", create_dirs=True)
# No need to set the model, it gets set to the model of the agent
memory = Memory(db=memory_db, delete_memories=True, clear_memories=True)

# Reset the memory for this example
memory.clear()

# User ID for the memory
john_doe_id = "john_doe@example.com"

agent = Agent(
    model=example_model("openai:gpt-4o-mini"),
    memory=memory,
    # This will trigger the MemoryManager after each user message
    enable_user_memories=True,
)

# Send a message to the agent that would require the memory to be used
agent.print_response(
    "My name is John Doe and I like to hike in the mountains on weekends.",
    stream=True,
    user_id=john_doe_id,
)
# The memory manager works in the background: wait for it before reading
agent.wait_for_memories()

# Send a message to the agent that checks the memory is working
agent.print_response("What are my hobbies?", stream=True, user_id=john_doe_id)

# Print the memories for the user
memories = memory.get_user_memories(user_id=john_doe_id)
print("Memories about John Doe:")
pprint([m.memory for m in memories])

# Send a message to the agent that removes all memories for the user
agent.print_response("Remove all existing memories of me.", stream=True, user_id=john_doe_id)
agent.wait_for_memories()

memories = memory.get_user_memories(user_id=john_doe_id)
print("Memories about John Doe:")
pprint([m.memory for m in memories])
