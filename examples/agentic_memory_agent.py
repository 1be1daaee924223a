"""Agentic memory: the agent manages Ava's memories itself with its memory tools.

NOTED_MODEL=openai:gpt-4o-mini scripts/uv.sh run python examples/agentic_memory_agent.py
"""

from _model import example_model
from rich.pretty import pprint

from noted import Agent, Memory, SqliteDb

# UserId for the memories
user_id = "ava"
# Database file for memory and sessions
db_file = "tmp/agent.db"
model = example_model("openai:gpt-4o-mini")

# A Memory with its own model for memory work, and a table name of our choosing
memory = Memory(
    model=model,
    db=SqliteDb(memory_table="user_memories", db_file=db_file, create_dirs=True),
)

memory_agent = Agent(
    model=model,
    # Store memories in a database
    memory=memory,
    # Give the Agent the ability to update memories
    enable_agentic_memory=True,
    # OR - Run the MemoryManager after each response
    # enable_user_memories=True,
    # Store the chat history in the database
    db=SqliteDb(session_table="agent_sessions", db_file=db_file),
    # Add the chat history to the messages
    add_history_to_context=True,
    # Number of history runs
    num_history_runs=3,
    markdown=True,
)

memory.clear()
memory_agent.print_response("My name is Ava and I like to ski.", user_id=user_id, stream=True)
print("Memories about Ava:")
pprint([m.memory for m in memory.get_user_memories(user_id=user_id)])

memory_agent.print_response(
    "I live in san francisco, where should i move within a 4 hour drive?",
    user_id=user_id,
    stream=True,
)
print("Memories about Ava:")
pprint([m.memory for m in memory.get_user_memories(user_id=user_id)])
